/**
 * The folders of src/ form layers, never a cycle (issue 15): every relative import
 * (`from '...'`, `import '...'`, `import('...')`, `require('...')`, type-only imports
 * included) of every src/**\/*.ts file is an edge from its top-level folder under src/ to the
 * target's (a file directly in src/, such as errors.ts, is a node of its own), and that graph
 * must have no cycle. src/index.ts is the package entry: it may import anything, so it is no
 * source of edges. src/cli/ is the `lading` command itself, the top layer: nothing imports it.
 * The tests read the TypeScript sources, not the compiled tree.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, test } from 'node:test';

const SRC = join(__dirname, '..', '..', '..', 'src');

/**
 * Folder edges that may close a cycle, each with the reason: empty, and meant to stay so. An
 * entry is `'from/ -> to/'`; add one only for a cycle that cannot be removed yet, with a comment
 * naming the cycle and why.
 */
const ALLOWED_EDGES: ReadonlySet<string> = new Set<string>([]);

type Graph = Map<string, Map<string, string[]>>;

function sourceFiles(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sourceFiles(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** The relative module specifiers a source imports, comment lines left out. */
function relativeImports(text: string): string[] {
  const code = text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('//'))
    .join('\n');
  const specs: string[] = [];
  const re = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}(?:\/[^'"]*)?)\1/gm;
  for (const m of code.matchAll(re)) specs.push(m[2]!);
  return specs;
}

/** The node a path under src/ belongs to: `cli/` for a folder, `errors.ts` for a file of src/ itself. */
function nodeOf(absolute: string): string | undefined {
  const rel = relative(SRC, absolute);
  if (rel.startsWith('..')) return undefined; // outside src/ (package.json)
  if (rel === '') return 'index.ts';
  const parts = rel.split(sep);
  if (parts.length > 1) return `${parts[0]}/`;
  const isDir = (() => {
    try {
      return statSync(absolute).isDirectory();
    } catch {
      return false;
    }
  })();
  return isDir ? `${parts[0]}/` : `${parts[0]!.replace(/\.(js|ts)$/, '')}.ts`;
}

function folderGraph(): Graph {
  const graph: Graph = new Map();
  for (const file of sourceFiles(SRC)) {
    const from = nodeOf(file)!;
    if (from === 'index.ts') continue;
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const to = nodeOf(resolve(dirname(file), spec));
      if (to === undefined || to === from) continue;
      const targets = graph.get(from) ?? new Map<string, string[]>();
      graph.set(from, targets);
      const why = `src/${relative(SRC, file)} imports '${spec}'`;
      targets.set(to, [...new Set([...(targets.get(to) ?? []), why])]);
    }
  }
  return graph;
}

/**
 * The strongly connected components of more than one node (Tarjan): the folders of each, and
 * one cycle through them as a node list a -> ... -> a.
 */
function findCycles(edges: Map<string, Iterable<string>>): { folders: string[]; cycle: string[] }[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const next = (n: string): string[] => [...(edges.get(n) ?? [])].sort();
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of next(v)) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const n of [...edges.keys()].sort()) if (!index.has(n)) visit(n);
  // In each component, the shortest way from its first node back to itself (breadth-first).
  return components.map((component) => {
    const inside = new Set(component);
    const start = component[0]!;
    const previous = new Map<string, string>();
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      for (const w of next(queue[i]!)) {
        if (!inside.has(w)) continue;
        if (w === start) {
          const path = [start];
          for (let n = queue[i]!; n !== start; n = previous.get(n)!) path.splice(1, 0, n);
          return { folders: component, cycle: [...path, start] };
        }
        if (!previous.has(w)) {
          previous.set(w, queue[i]!);
          queue.push(w);
        }
      }
    }
    throw new Error(`no cycle found in the component ${component.join(', ')}`);
  });
}

describe('src/ folder layers', () => {
  const graph = folderGraph();

  test('the import scan sees the edges it should (it does not pass by seeing nothing)', () => {
    assert.ok(graph.get('cli/')?.has('command/'), 'cli/push.ts imports ../command/context');
    assert.ok(graph.get('cli/')?.has('serve/'), "cli/main.ts require('../serve/cli')");
    assert.ok(graph.get('cdk-publish/')?.has('terminal/'), 'cdk-publish/publish.ts imports ../terminal/progress');
    assert.ok(graph.get('archive/')?.has('errors.ts'), 'archive/ imports ../errors');
    assert.ok(!graph.has('index.ts'), 'src/index.ts is no source of edges');
  });

  test('no import cycle between the folders of src/', () => {
    const kept = new Map<string, string[]>();
    for (const [from, targets] of graph)
      kept.set(
        from,
        [...targets.keys()].filter((to) => !ALLOWED_EDGES.has(`${from} -> ${to}`)),
      );
    const cycles = findCycles(kept);
    const shown = cycles.map(({ folders, cycle }) =>
      [
        `${cycle.join(' -> ')}${folders.length > cycle.length - 1 ? ` (the knot holds ${folders.join(', ')})` : ''}`,
        ...cycle.slice(0, -1).map(
          (from, i) =>
            `  ${from} -> ${cycle[i + 1]}: ${graph
              .get(from)!
              .get(cycle[i + 1]!)!
              .join('; ')}`,
        ),
      ].join('\n'),
    );
    assert.deepEqual(shown, [], `folder import cycles in src/:\n${shown.join('\n')}`);
  });

  test('src/cli/ (the lading command) is the top layer: no other folder imports it', () => {
    const importers = [...graph.values()].flatMap((targets) => (targets.has('cli/') ? targets.get('cli/')! : []));
    assert.deepEqual(importers, [], `imports of src/cli/ from outside it:\n${importers.join('\n')}`);
  });
});

describe('the cycle finder', () => {
  test('reports a cycle as a path that returns to its start, and none in a layered graph', () => {
    const g = (o: Record<string, string[]>): Map<string, string[]> => new Map(Object.entries(o));
    assert.deepEqual(findCycles(g({ 'a/': ['b/'], 'b/': ['c/'], 'c/': ['a/', 'd.ts'] })), [
      { folders: ['a/', 'b/', 'c/'], cycle: ['a/', 'b/', 'c/', 'a/'] },
    ]);
    assert.deepEqual(findCycles(g({ 'a/': ['b/', 'c/'], 'b/': ['c/'], 'c/': ['d.ts'] })), []);
    assert.deepEqual(findCycles(g({ 'a/': ['b/'], 'b/': ['a/'], 'c/': ['d/'], 'd/': ['c/'] })), [
      { folders: ['a/', 'b/'], cycle: ['a/', 'b/', 'a/'] },
      { folders: ['c/', 'd/'], cycle: ['c/', 'd/', 'c/'] },
    ]);
    // Two cycles through a/ in one knot: the shortest is shown, every folder of the knot named.
    assert.deepEqual(findCycles(g({ 'a/': ['b/', 'c/'], 'b/': ['a/'], 'c/': ['a/'] })), [
      { folders: ['a/', 'b/', 'c/'], cycle: ['a/', 'b/', 'a/'] },
    ]);
  });

  test('reads static, type-only, side-effect, dynamic and require imports; skips comments and packages', () => {
    const text = [
      "import { a } from '../a/x';",
      "import type { B } from './b';",
      "import '../side';",
      "export { c } from '../c';",
      "const d = require('../d/y') as typeof import('../d/y');",
      "const e = await import('..');",
      "// require('../commented')",
      "/* import { f } from '../f'; */",
      "import { g } from 'node:fs';",
    ].join('\n');
    assert.deepEqual(relativeImports(text), ['../a/x', './b', '../side', '../c', '../d/y', '../d/y', '..']);
  });
});

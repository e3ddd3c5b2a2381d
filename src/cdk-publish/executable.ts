/**
 * Recognises the `executable` of a docker image asset that loads an image archive.
 *
 * aws-cdk-lib's `TarballImageAsset` (and `ecs.ContainerImage.fromTarball`, built on it)
 * writes, depending on its version:
 *
 *   ["sh", "-c", "docker load -i \"$1\" | tail -n 1 | sed \"s/Loaded image[^:]*: //g\"", "cdk-tarball-image-asset", "asset.HASH.tar"]
 *   ["sh", "-c", "docker load -i asset.HASH.tar | tail -n 1 | sed \"s/Loaded image: //g\""]
 *   ["sh", "-c", "docker load -i asset.HASH.tar | sed \"s/Loaded image: //g\""]
 *
 * with `docker` replaced by the value of CDK_DOCKER at synth time (podman, finch, a path...).
 * The archive is the word after `-i` / `--input` of the `load` command, expanded as the
 * shell would expand it when it is a positional parameter (`$1`, `${1}`).
 */

export type ExecutableSource =
  | {
      kind: 'archive';
      /** As written, relative to the assembly directory unless absolute. */ path: string;
      /** The loader command (docker, podman, finch...). */ tool: string;
    }
  | { kind: 'other'; reason: string };

const SHELLS = /^(?:.*\/)?(?:sh|bash|dash|ash|zsh)$/;

/** A shell word: its text with positional parameters expanded, or null when it holds an expansion we cannot resolve. */
interface Word {
  text: string | null;
}

/**
 * Splits the first simple command of a POSIX shell script into words: quotes, backslashes,
 * `$N`, `${N}`, `${NAME:-default}` (default taken; NAME is CDK_DOCKER in practice). Stops
 * at the first unquoted `|`, `;`, `&` or newline.
 */
export function firstCommandWords(script: string, positional: readonly string[], env: NodeJS.ProcessEnv = {}): Word[] {
  const words: Word[] = [];
  let cur: string | null = '';
  let inWord = false;
  let i = 0;
  const push = (): void => {
    if (inWord) words.push({ text: cur });
    cur = '';
    inWord = false;
  };
  const append = (s: string | null): void => {
    inWord = true;
    cur = cur === null || s === null ? null : cur + s;
  };
  /** Reads an expansion starting at script[i] === '$'; returns its value (null: unknown) and advances i. */
  const expansion = (): string | null => {
    const rest = script.slice(i + 1);
    let m = /^(\d)/.exec(rest);
    if (m) {
      i += 2;
      return positional[Number(m[1])] ?? '';
    }
    m = /^\{(\d+)\}/.exec(rest);
    if (m) {
      i += 1 + m[0].length;
      return positional[Number(m[1])] ?? '';
    }
    m = /^\{([A-Za-z_][A-Za-z0-9_]*)(:?-)([^}]*)\}/.exec(rest);
    if (m) {
      i += 1 + m[0].length;
      const v = env[m[1]!];
      return v === undefined || (m[2] === ':-' && v === '') ? m[3]! : v;
    }
    m = /^\{?([A-Za-z_][A-Za-z0-9_]*)\}?/.exec(rest);
    if (m) {
      i += 1 + m[0].length;
      return env[m[1]!] ?? null;
    }
    i += 1;
    return '$';
  };
  while (i < script.length) {
    const c = script[i]!;
    if (c === '\\') {
      if (i + 1 < script.length && script[i + 1] !== '\n') append(script[i + 1]!);
      i += 2;
    } else if (c === "'") {
      const end = script.indexOf("'", i + 1);
      const stop = end < 0 ? script.length : end;
      append(script.slice(i + 1, stop));
      i = stop + 1;
    } else if (c === '"') {
      i++;
      inWord = true;
      while (i < script.length && script[i] !== '"') {
        const d = script[i]!;
        if (d === '\\' && i + 1 < script.length && '$`"\\\n'.includes(script[i + 1]!)) {
          if (script[i + 1] !== '\n') append(script[i + 1]!);
          i += 2;
        } else if (d === '$') {
          append(expansion());
        } else if (d === '`') {
          append(null);
          i++;
        } else {
          append(d);
          i++;
        }
      }
      i++;
    } else if (c === '$') {
      append(expansion());
    } else if (c === '`') {
      append(null);
      i++;
    } else if (c === '|' || c === ';' || c === '&' || c === '\n') {
      break;
    } else if (c === ' ' || c === '\t') {
      push();
      i++;
    } else {
      append(c);
      i++;
    }
  }
  push();
  return words;
}

/** What a docker image asset's `executable` loads, if it is an image-archive load. */
export function parseExecutable(executable: readonly string[], env: NodeJS.ProcessEnv = {}): ExecutableSource {
  if (executable.length === 0) return { kind: 'other', reason: 'empty executable' };
  let words: Word[];
  const shown = JSON.stringify(executable);
  if (SHELLS.test(executable[0]!) && executable[1] === '-c' && typeof executable[2] === 'string') {
    // sh -c SCRIPT $0 $1 ...: positional parameters come after the script.
    words = firstCommandWords(executable[2], executable.slice(3), env);
  } else {
    words = executable.map((text) => ({ text }));
  }
  const load = words.findIndex((w, idx) => idx >= 1 && w.text === 'load');
  if (load < 0)
    return {
      kind: 'other',
      reason: `the executable ${shown} is not an image-archive load (docker load -i FILE); it needs its own tools to run`,
    };
  const tool = words[0]!.text ?? 'docker';
  for (let k = load + 1; k < words.length; k++) {
    const w = words[k]!.text;
    if (w === null) continue;
    let path: string | null | undefined;
    if (w === '--input' || /^-[a-hj-z]*i$/.test(w)) path = words[k + 1]?.text;
    else if (w.startsWith('--input=')) path = w.slice('--input='.length);
    else if (/^-[a-hj-z]*i./.test(w)) path = w.slice(w.indexOf('i') + 1);
    else continue;
    if (path === null)
      return {
        kind: 'other',
        reason: `the executable ${shown} loads an archive whose path uses shell expansions lading does not resolve`,
      };
    if (path === undefined || path === '') break;
    return { kind: 'archive', path, tool: tool.replace(/^.*\//, '') };
  }
  return {
    kind: 'other',
    reason: `the executable ${shown} runs "load" without -i FILE (an archive on standard input); lading cannot tell which file it reads`,
  };
}

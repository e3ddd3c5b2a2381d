/** Results: the Markdown tables printed and written to bench/RESULTS.md, and the JSON document. */
import type { Sample } from './measure';

export interface Row {
  scenario: string;
  tool: string;
  /** Median of each metric over the runs. */
  median: Sample;
  samples: Sample[];
  /** Image bytes the row moved (for MiB/s); 0: no speed column. */
  bytes: number;
  /** "wall 0.83x · CPU 0.61x · RSS 0.72x" against the peer row, when there is one. */
  ratio?: string;
  target?: string;
  /** true: every target met; false: one missed; undefined: no target. */
  pass?: boolean;
  /** Which targets were missed. */
  missed?: string[];
  /** Anything else worth keeping in the JSON (blobs uploaded, temp bytes seen, server CPU...). */
  extra?: Record<string, unknown>;
}

export interface Table {
  id: string;
  title: string;
  rows: Row[];
  notes: string[];
}

const MiB = 1024 * 1024;

export function mibPerS(bytes: number, wallS: number): number {
  return bytes / MiB / wallS;
}

function f(n: number, digits = 2): string {
  return Number.isFinite(n) ? n.toFixed(digits) : 'n/a';
}

export function ratioText(mine: Sample, peer: Sample): string {
  return `wall ${f(mine.wallS / peer.wallS)}x · CPU ${f(mine.cpuS / peer.cpuS)}x · RSS ${f(mine.rssMiB / peer.rssMiB)}x`;
}

export function renderTable(t: Table): string {
  const lines = [
    `### ${t.title}`,
    '',
    '| scenario | tool | wall s | CPU s | peak RSS MiB | MiB/s | ratio vs peer | target | result |',
    '|---|---|--:|--:|--:|--:|---|---|---|',
  ];
  for (const r of t.rows) {
    const result = r.pass === undefined ? '' : r.pass ? 'PASS' : `**FAIL** (${(r.missed ?? []).join(', ')})`;
    lines.push(
      `| ${r.scenario} | ${r.tool} | ${f(r.median.wallS)} | ${f(r.median.cpuS)} | ${f(r.median.rssMiB, 1)} | ${r.bytes > 0 ? f(mibPerS(r.bytes, r.median.wallS), 0) : ''} | ${r.ratio ?? ''} | ${r.target ?? ''} | ${result} |`,
    );
  }
  if (t.notes.length > 0) {
    lines.push('');
    for (const n of t.notes) lines.push(`- ${n}`);
  }
  return lines.join('\n');
}

/** Sets pass/missed from a list of [label, met] checks. */
export function judge(row: Row, target: string, checks: [string, boolean][]): void {
  row.target = target;
  row.missed = checks.filter(([, ok]) => !ok).map(([label]) => label);
  row.pass = row.missed.length === 0;
}

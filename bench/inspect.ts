/**
 * Issue 2: `lading inspect` (reads and verifies every blob) against the cost floor of
 * reading the same bytes once:
 * - uncompressed ~1 GiB archive from warm page cache vs sha256 of the file in one Node
 *   crypto stream (target: lading's speed >= 0.8x, peak RSS <= 100 MiB);
 * - the same archive gzip-compressed as a whole, verified in one pass, vs gunzip + sha256 in
 *   one Node stream; TMPDIR is an empty dir of our own, watched while lading runs, to show
 *   no temp space is used (nothing in this archive is a JSON candidate over 64 MiB).
 */
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { lading, warm, type BenchContext } from './context';
import { BenchError, medianSample, mustSucceed, timed, watchDir, type ChildResult, type Sample } from './measure';
import { judge, ratioText, type Row, type Table } from './report';

interface InspectJson {
  format: string;
  compression: string;
  images: { manifests: { layers: unknown[] }[] }[];
}

function checkInspect(r: ChildResult, compression: string, layers: number): void {
  mustSucceed(r, `lading inspect (${compression})`);
  let doc: InspectJson;
  try {
    doc = JSON.parse(r.stdout) as InspectJson;
  } catch {
    throw new BenchError(`lading inspect: stdout is not JSON: ${r.stdout.slice(0, 2000)}`);
  }
  const n = doc.images?.[0]?.manifests?.[0]?.layers?.length;
  if (doc.format !== 'docker-archive' || doc.compression !== compression || n !== layers) {
    throw new BenchError(
      `lading inspect: unexpected result (format ${doc.format}, compression ${doc.compression}, ${n} layers; expected docker-archive, ${compression}, ${layers})`,
    );
  }
}

const MiB = 1024 * 1024;

async function one(
  ctx: BenchContext,
  file: string,
  compression: 'none' | 'gzip',
): Promise<{ base: Sample[]; mine: Sample[]; temp: { maxBytes: number; maxFiles: number; endFiles: number }[] }> {
  const base: Sample[] = [];
  const mine: Sample[] = [];
  const temp: { maxBytes: number; maxFiles: number; endFiles: number }[] = [];
  const layers = 4; // both inspect archives: 3 random layers + 1 text layer
  for (let i = 0; i < ctx.runs; i++) {
    const runBase = async (): Promise<void> => {
      const r = await timed(
        process.execPath,
        [ctx.baseline, compression === 'none' ? 'sha256' : 'gunzip-sha256', file],
        { scratchDir: ctx.scratchDir },
      );
      mustSucceed(r, 'baseline reader');
      base.push(r);
      ctx.log(
        `inspect ${compression} run ${i + 1}/${ctx.runs}: baseline ${r.wallS.toFixed(2)} s, ${r.rssMiB.toFixed(0)} MiB`,
      );
    };
    const runMine = async (): Promise<void> => {
      const tmp = join(ctx.scratchDir, `tmpdir-inspect-${compression}-${i}`);
      rmSync(tmp, { recursive: true, force: true });
      mkdirSync(tmp, { recursive: true });
      let watcher: ReturnType<typeof watchDir> | undefined;
      const r = await lading(ctx, ['inspect', file, '--json'], { TMPDIR: tmp }, () => {
        watcher = watchDir(tmp);
      });
      const seen = watcher!.stop();
      rmSync(tmp, { recursive: true, force: true });
      checkInspect(r, compression, layers);
      mine.push(r);
      temp.push(seen);
      ctx.log(
        `inspect ${compression} run ${i + 1}/${ctx.runs}: lading ${r.wallS.toFixed(2)} s, ${r.rssMiB.toFixed(0)} MiB, TMPDIR max ${seen.maxBytes} B`,
      );
    };
    // Alternate who goes first, so neither always gets the fresher cache or the quieter machine.
    if (i % 2 === 0) {
      await runBase();
      await runMine();
    } else {
      await runMine();
      await runBase();
    }
  }
  return { base, mine, temp };
}

export async function benchInspect(ctx: BenchContext): Promise<Table[]> {
  const { inspectArchive, inspectGzip, inspectImageBytes } = ctx.inputs;
  const rawSize = statSync(inspectArchive).size;
  const gzSize = statSync(inspectGzip).size;
  ctx.log(`inspect: warming the page cache (${(rawSize / MiB).toFixed(0)} + ${(gzSize / MiB).toFixed(0)} MiB)`);
  warm(inspectArchive);
  warm(inspectGzip);

  const tables: Table[] = [];
  {
    const { base, mine, temp } = await one(ctx, inspectArchive, 'none');
    const b = medianSample(base);
    const m = medianSample(mine);
    const speedRatio = b.wallS / m.wallS;
    const baseRow: Row = {
      scenario: 'inspect, uncompressed',
      tool: 'node crypto sha256, 1 stream',
      median: b,
      samples: base,
      bytes: rawSize,
    };
    const row: Row = {
      scenario: 'inspect, uncompressed',
      tool: 'lading inspect (verify all)',
      median: m,
      samples: mine,
      bytes: rawSize,
      ratio: `speed ${speedRatio.toFixed(2)}x · ${ratioText(m, b)}`,
      extra: { speedRatio, tmpdirMaxBytes: Math.max(...temp.map((t) => t.maxBytes)) },
    };
    judge(row, 'speed >= 0.8x sha256; RSS <= 100 MiB', [
      ['speed', speedRatio >= 0.8],
      ['RSS', m.rssMiB <= 100],
    ]);
    tables.push({
      id: 'inspect-uncompressed',
      title: `Inspect + verify, uncompressed archive (${(rawSize / MiB).toFixed(0)} MiB, warm page cache)`,
      rows: [baseRow, row],
      notes: [
        `MiB/s is archive bytes / wall time (process start to exit, both sides). Speed ratio = sha256 wall / lading wall.`,
        `Image layers: ${(inspectImageBytes / MiB).toFixed(0)} MiB (3 random + 1 text layer).`,
      ],
    });
  }
  {
    const { base, mine, temp } = await one(ctx, inspectGzip, 'gzip');
    const b = medianSample(base);
    const m = medianSample(mine);
    const maxTemp = Math.max(...temp.map((t) => t.maxBytes));
    const maxFiles = Math.max(...temp.map((t) => t.maxFiles));
    const leftover = Math.max(...temp.map((t) => t.endFiles));
    const baseRow: Row = {
      scenario: 'inspect, gzip archive',
      tool: 'node zlib gunzip + sha256, 1 stream',
      median: b,
      samples: base,
      bytes: rawSize,
    };
    const row: Row = {
      scenario: 'inspect, gzip archive',
      tool: 'lading inspect (verify all, one pass)',
      median: m,
      samples: mine,
      bytes: rawSize,
      ratio: `speed ${(b.wallS / m.wallS).toFixed(2)}x · ${ratioText(m, b)}`,
      extra: {
        speedRatio: b.wallS / m.wallS,
        tmpdirMaxBytes: maxTemp,
        tmpdirMaxFiles: maxFiles,
        tmpdirFilesLeft: leftover,
      },
    };
    judge(row, 'no temp files; RSS <= 100 MiB', [
      ['temp', maxTemp === 0 && maxFiles === 0 && leftover === 0],
      ['RSS', m.rssMiB <= 100],
    ]);
    tables.push({
      id: 'inspect-gzip',
      title: `Inspect + verify, gzip-compressed archive (${(gzSize / MiB).toFixed(0)} MiB gzip, ${(rawSize / MiB).toFixed(0)} MiB tar)`,
      rows: [baseRow, row],
      notes: [
        'MiB/s is uncompressed tar bytes / wall time.',
        `TMPDIR (an empty dir of the bench, polled every 20 ms while lading ran): max ${maxTemp} bytes in ${maxFiles} files over all runs, ${leftover} files left after exit.`,
        'The RSS target here is carried over from the uncompressed case (the issue asks only to report it).',
      ],
    });
  }
  return tables;
}

/**
 * Reference readers the inspect benchmark compares lading with, run as their own process
 * (so they are measured exactly like lading):
 *
 *   node baseline.js sha256 FILE          sha256 of the file, Node crypto, one read stream
 *   node baseline.js gunzip-sha256 FILE   gunzip the file (Node zlib) and sha256 the output
 *
 * Both print the hex digest. Reads use 1 MiB chunks (fewer, larger hash updates: the fastest
 * single stream here; the 64 KiB default is a few percent slower).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';

async function main(mode: string | undefined, file: string | undefined): Promise<void> {
  if (file === undefined || (mode !== 'sha256' && mode !== 'gunzip-sha256')) {
    throw new Error('usage: baseline.js sha256|gunzip-sha256 FILE');
  }
  const h = createHash('sha256');
  const sink = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      h.update(chunk);
      cb();
    },
  });
  const src = createReadStream(file, { highWaterMark: 1 << 20 });
  if (mode === 'sha256') await pipeline(src, sink);
  else await pipeline(src, zlib.createGunzip({ chunkSize: 256 * 1024 }), sink);
  process.stdout.write(`${h.digest('hex')}\n`);
}

main(process.argv[2], process.argv[3]).catch((e: unknown) => {
  process.stderr.write(`baseline: ${String(e)}\n`);
  process.exitCode = 1;
});

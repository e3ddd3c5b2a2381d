import { availableParallelism } from 'node:os';
import type { Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { LadingError } from '../errors';
import { AdaptiveGzip, DEFAULT_LEVEL } from './adaptive-gzip';
import type { Compression } from '../image/media-types';

/** Node >= 22.15 has zstd in zlib; Node 20 does not, so lading falls back to zstd-napi. */
type ZlibWithZstd = typeof zlib & {
  createZstdCompress?: (opts?: { params?: Record<number, number> }) => Transform;
  createZstdDecompress?: (opts?: { params?: Record<number, number> }) => Transform;
  constants: typeof zlib.constants & { ZSTD_c_compressionLevel?: number; ZSTD_d_windowLogMax?: number };
};
const z = zlib as ZlibWithZstd;

interface ZstdNapi {
  CompressStream: new (params?: Record<string, unknown>) => Transform;
  DecompressStream: new (params?: Record<string, unknown>) => Transform;
}

let napi: ZstdNapi | null | undefined;
function zstdNapi(): ZstdNapi | null {
  if (napi === undefined) {
    try {
      // Loaded lazily: an optional native dependency, only needed for zstd on Node < 22.15.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      napi = require('zstd-napi') as ZstdNapi;
    } catch {
      napi = null;
    }
  }
  return napi;
}

/**
 * Which zstd implementation is in use, for `--debug` and the README: by default the one that
 * decompresses (Node's own first); `'compress'`: the one that compresses (zstd-napi first).
 */
export function zstdImplementation(use: 'decompress' | 'compress' = 'decompress'): 'node:zlib' | 'zstd-napi' | 'none' {
  const native = typeof z.createZstdDecompress === 'function';
  if (use === 'compress' && zstdNapi()) return 'zstd-napi';
  if (native) return 'node:zlib';
  return zstdNapi() ? 'zstd-napi' : 'none';
}

function noZstd(): LadingError {
  return new LadingError(
    'ZSTD_UNAVAILABLE',
    `zstd needs Node.js >= 22.15 or the optional dependency zstd-napi (npm install zstd-napi); this is Node.js ${process.version}`,
  );
}

/**
 * zstd frames can ask for a window of up to 2 GiB (and more with long mode); refuse beyond
 * 128 MiB (zstd's own default limit, what `zstd -d` accepts without --memory), so a hostile
 * frame cannot make us allocate gigabytes.
 */
const ZSTD_WINDOW_LOG_MAX = 27;

export function createDecompressor(c: Exclude<Compression, 'none'>): Transform {
  if (c === 'gzip') return zlib.createGunzip({ chunkSize: 256 * 1024 });
  if (typeof z.createZstdDecompress === 'function') {
    const key = z.constants.ZSTD_d_windowLogMax;
    return z.createZstdDecompress(key === undefined ? {} : { params: { [key]: ZSTD_WINDOW_LOG_MAX } });
  }
  const n = zstdNapi();
  if (!n) throw noZstd();
  const d = new n.DecompressStream({ windowLogMax: ZSTD_WINDOW_LOG_MAX });
  // zstd-napi's errors carry neither a code nor the word zstd ("Unsupported frame parameter" for a
  // window over the limit): tag them, so callers report DECOMPRESSION_FAILED rather than IO.
  const transform = d._transform.bind(d);
  d._transform = (chunk, enc, done) => transform(chunk, enc, (e, data) => done(e ? tagZstdError(e) : null, data));
  const flush = d._flush?.bind(d);
  if (flush) d._flush = (done) => flush((e, data) => done(e ? tagZstdError(e) : null, data));
  return d;
}

function tagZstdError(e: Error): Error {
  const err = e as NodeJS.ErrnoException;
  if (err.code === undefined) err.code = 'ERR_ZSTD_DECOMPRESS';
  if (!/zstd/i.test(err.message))
    err.message = `zstd: ${err.message}${/frame parameter|memory|window/i.test(err.message) ? ` (frames may use a window of at most ${2 ** (ZSTD_WINDOW_LOG_MAX - 20)} MiB)` : ''}`;
  return err;
}

/**
 * Input per zstd job. Measured on the bench's real-files layer (495 MiB, level 3, 2 workers):
 * zstd's default for level 3 (8 MiB) peaked at 193 MiB RSS, 4 MiB at 172 MiB (+0.7% size),
 * 2 MiB at 159 MiB (+1.9%), 1 MiB at 146 MiB (+3.4%); single-threaded zstd: 138 MiB.
 * Part of what determines the bytes.
 */
export const ZSTD_JOB_SIZE = 2 * 1024 * 1024;

/** zstd's level when none is given (zstd's own default). */
export const ZSTD_DEFAULT_LEVEL = 3;

/**
 * zstd compresses one stream on several cores itself (its multithreaded mode, built into
 * zstd-napi's libzstd): the input is cut into jobs of ZSTD_JOB_SIZE, compressed by
 * zstd's worker threads, each job's window overlapping the input before it. The output is the
 * same for any number of workers >= 1 and however the input is written (it differs with 0
 * workers, zstd's single-threaded mode, so lading never uses 0): the same input, level and job
 * size make the same bytes on any machine with the same zstd. Workers: the cores, at most 4.
 */
export function zstdWorkers(): number {
  return Math.min(4, Math.max(1, availableParallelism()));
}

export function createCompressor(c: Exclude<Compression, 'none'>, level?: number): Transform {
  if (c === 'gzip') return new AdaptiveGzip(level ?? DEFAULT_LEVEL);
  // zstd-napi first when installed, on any Node.js: it runs zstd's workers, and the same
  // binding gives the same bytes on Node 20, 22 and 24. Node's own zstd fails on a stream
  // with workers (nodejs/node#59899: "stream.push() after EOF" at the end), so it compresses
  // on one core, as before.
  const n = zstdNapi();
  if (n)
    return new n.CompressStream({
      compressionLevel: level ?? ZSTD_DEFAULT_LEVEL,
      nbWorkers: zstdWorkers(),
      jobSize: ZSTD_JOB_SIZE,
    });
  if (typeof z.createZstdCompress === 'function') {
    const key = z.constants.ZSTD_c_compressionLevel;
    return z.createZstdCompress(key === undefined || level === undefined ? {} : { params: { [key]: level } });
  }
  throw noZstd();
}

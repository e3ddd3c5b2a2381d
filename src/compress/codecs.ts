import { availableParallelism } from 'node:os';
import { addAbortSignal, type Transform } from 'node:stream';
import * as zlib from 'node:zlib';
import { LadingError } from '../errors';
import { AdaptiveGzip, defaultGzipEngine, defaultGzipLevel } from './adaptive-gzip';
import { nativeBinding } from '../native/binding';
import { BoundedZstdDecompress, isWindowError, windowMessage, type ZstdBinding } from './bounded-zstd';
import type { Compression } from '../image/media-types';

/** Node >= 22.15 has zstd in zlib; Node 20 does not. lading prefers zstd-napi when installed (see createDecompressor). */
type ZlibWithZstd = typeof zlib & {
  createZstdCompress?: (opts?: { params?: Record<number, number> }) => Transform;
  createZstdDecompress?: (opts?: { params?: Record<number, number> }) => Transform;
  constants: typeof zlib.constants & { ZSTD_c_compressionLevel?: number; ZSTD_d_windowLogMax?: number };
};
const z = zlib as ZlibWithZstd;

interface ZstdNapi {
  CompressStream: new (params?: Record<string, unknown>) => Transform;
}

let napi: ZstdNapi | null | undefined;
function zstdNapi(): ZstdNapi | null {
  if (napi === undefined) {
    try {
      // Loaded lazily: an optional native dependency (Node >= 22.15 has a zstd of its own).
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      napi = require('zstd-napi') as ZstdNapi;
    } catch {
      napi = null;
    }
  }
  return napi;
}

let binding: ZstdBinding | null | undefined;
/** zstd-napi's low-level binding (ZSTD_decompressStream itself), for BoundedZstdDecompress. */
function zstdBinding(): ZstdBinding | null {
  if (binding === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      binding = zstdNapi() ? (require('zstd-napi/binding') as ZstdBinding) : null;
    } catch {
      binding = null;
    }
  }
  return binding;
}

/**
 * Which zstd implementation is in use, for `--debug` and the README: zstd-napi when it is
 * installed, for compressing and (see createDecompressor) for decompressing; otherwise Node's own.
 * `use`: which of the two (the same answer today).
 */
export function zstdImplementation(use: 'decompress' | 'compress' = 'decompress'): 'node:zlib' | 'zstd-napi' | 'none' {
  if (use === 'decompress' ? zstdBinding() : zstdNapi()) return 'zstd-napi';
  return typeof z.createZstdDecompress === 'function' ? 'node:zlib' : 'none';
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
 * frame cannot make us allocate gigabytes. Both implementations refuse such a frame before
 * allocating its window; the error (code ERR_ZSTD_WINDOW, which callers report as
 * DECOMPRESSION_FAILED with the blob or archive it came from) names the window the frame asked for.
 */
export const ZSTD_WINDOW_LOG_MAX = 27;

/**
 * A decompressor whose memory stays bounded on any input (issue 19: 128 KiB of zstd inflate to
 * 4 GiB, of gzip to 130 MiB): output comes in chunks of at most 256 KiB (gzip) or 128 KiB (zstd),
 * and no more is made while the consumer has not taken what was pushed.
 * - gzip: Node's zlib, which honours backpressure.
 * - zstd: zstd-napi's decoder driven by BoundedZstdDecompress when zstd-napi is installed, on
 *   every Node.js (not zstd-napi's DecompressStream, which pushes all it inflates at once: see
 *   bounded-zstd.ts). Node's own zstd (>= 22.15) honours backpressure too, but (22.23, 24.21)
 *   stops at the end of a frame when more frames follow in the same write, dropping them
 *   (nodejs/node#64741: a multi-frame layer, as pzstd and zstd:chunked write, would hash to
 *   another diff_id than every other zstd reader's), and on 22 ends a cut stream without an
 *   error (nodejs/node#64592). zstd-napi also inflated a 256 MiB layer faster (0.5-0.8 s against
 *   0.7-1.1 s, hashing included). So Node's own zstd is the fallback, held to consuming all its
 *   input (see nodeZstd).
 */
export function createDecompressor(c: Exclude<Compression, 'none'>, signal?: AbortSignal): Transform {
  const d = decompressor(c);
  // Aborted (SIGTERM, SIGINT): the stream fails at once, so a reader waiting for the end of a
  // bomb's output (analyzeBlob after the last input chunk) stops too.
  if (signal) addAbortSignal(signal, d);
  return d;
}

function decompressor(c: Exclude<Compression, 'none'>): Transform {
  if (c === 'gzip') return zlib.createGunzip({ chunkSize: 256 * 1024 });
  const binding = zstdBinding();
  if (binding) return new BoundedZstdDecompress(binding, ZSTD_WINDOW_LOG_MAX);
  const own = nodeZstdDecompressor();
  if (own) return own;
  throw noZstd();
}

/** Node's own zstd decompressor as lading uses it without zstd-napi; undefined before Node 22.15. */
export function nodeZstdDecompressor(): Transform | undefined {
  if (typeof z.createZstdDecompress !== 'function') return undefined;
  const key = z.constants.ZSTD_d_windowLogMax;
  return nodeZstd(z.createZstdDecompress(key === undefined ? {} : { params: { [key]: ZSTD_WINDOW_LOG_MAX } }));
}

/**
 * Node's own zstd decompressor, made to answer as BoundedZstdDecompress does:
 * - its errors carry codes like ZSTD_error_frameParameter_windowTooLarge and messages without
 *   the word zstd ("Frame requires too much memory for decoding"), which callers would report
 *   as IO: they get an ERR_ZSTD code and a message saying what was refused (zlib's own codes,
 *   Z_BUF_ERROR for a cut stream on Node 24, are kept: callers report TRUNCATED);
 * - input it leaves unread (frames after the first in one write, nodejs/node#64741) fails the
 *   stream, rather than ending it with the first frame's bytes as if they were all.
 */
function nodeZstd(t: Transform & { bytesWritten?: number }): Transform {
  let head = Buffer.alloc(0);
  let written = 0;
  const transform = t._transform.bind(t);
  t._transform = (chunk: Buffer, enc, done) => {
    if (head.length < 18) head = Buffer.concat([head, chunk.subarray(0, 18 - head.length)]);
    written += chunk.length;
    transform(chunk, enc, done);
  };
  // Node's zstd ends its output (push(null)) when a frame ends with input left in the write; at
  // the true end it has read everything it was given.
  const push = t.push.bind(t);
  t.push = (chunk: unknown, encoding?: BufferEncoding) => {
    const read = t.bytesWritten;
    if (chunk === null && read !== undefined && read < written) {
      const e: NodeJS.ErrnoException = new Error(
        `zstd: the input goes on after byte ${read}, where Node.js's own zstd stopped (it reads only the first of several frames written at once, nodejs/node#64741); install zstd-napi (npm install zstd-napi) to read it`,
      );
      e.code = 'ERR_ZSTD_FRAMES';
      t.destroy(e);
      return false;
    }
    return push(chunk, encoding);
  };
  const destroy = t._destroy.bind(t);
  t._destroy = (err, done) => {
    const e = err as NodeJS.ErrnoException | null;
    if (e && typeof e.code === 'string' && e.code.startsWith('ZSTD_error')) {
      // Which frame failed is not known here; the first frame's header tells the window it asked for.
      if (isWindowError(e)) {
        e.message = windowMessage(head, undefined, ZSTD_WINDOW_LOG_MAX);
        e.code = 'ERR_ZSTD_WINDOW';
      } else {
        e.message = `zstd: ${e.message}`;
        e.code = 'ERR_ZSTD_DECOMPRESS';
      }
    }
    destroy(err, done);
  };
  return t;
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

/**
 * One line for --debug: how uncompressed layers will be compressed and where digests are
 * computed, so a user can see whether lading's native binding is in use.
 */
export function describeCompression(c: Compression, level: number | undefined): string {
  const b = nativeBinding();
  const hashing = b?.hashCreate ? 'digests on the thread pool (native binding)' : 'digests on the main thread';
  if (c === 'none') return `compression: none; ${hashing}`;
  if (c === 'zstd')
    return `compression: zstd level ${level ?? ZSTD_DEFAULT_LEVEL} (${zstdImplementation('compress')}); ${hashing}`;
  const engine = level === undefined ? defaultGzipEngine() : 'zlib';
  const lvl = level ?? defaultGzipLevel(engine);
  const why =
    engine === 'igzip'
      ? 'ISA-L, native binding'
      : level !== undefined
        ? "an explicit level is zlib's"
        : b
          ? 'LADING_GZIP_ENGINE=zlib'
          : 'no native binding: npm rebuild lading with a C compiler and libisal-dev';
  return `compression: gzip, ${engine} level ${lvl} (${why}); ${hashing}`;
}

export function createCompressor(c: Exclude<Compression, 'none'>, level?: number): Transform {
  // gzip: without a level, the default engine at its default level (igzip 2 where lading's
  // binding is built, else zlib 2); a level is zlib's 0-9, so the bytes it makes do not depend
  // on whether the binding is there.
  if (c === 'gzip') return new AdaptiveGzip(level === undefined ? {} : { engine: 'zlib', level });
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

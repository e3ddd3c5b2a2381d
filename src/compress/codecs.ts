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

/** Which zstd implementation is in use, for `--debug` and the README. */
export function zstdImplementation(): 'node:zlib' | 'zstd-napi' | 'none' {
  if (typeof z.createZstdDecompress === 'function') return 'node:zlib';
  return zstdNapi() ? 'zstd-napi' : 'none';
}

function noZstd(): LadingError {
  return new LadingError('ZSTD_UNAVAILABLE', `zstd needs Node.js >= 22.15 or the optional dependency zstd-napi (npm install zstd-napi); this is Node.js ${process.version}`);
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
  if (!/zstd/i.test(err.message)) err.message = `zstd: ${err.message}${/frame parameter|memory|window/i.test(err.message) ? ` (frames may use a window of at most ${2 ** (ZSTD_WINDOW_LOG_MAX - 20)} MiB)` : ''}`;
  return err;
}

export function createCompressor(c: Exclude<Compression, 'none'>, level?: number): Transform {
  if (c === 'gzip') return new AdaptiveGzip(level ?? DEFAULT_LEVEL);
  if (typeof z.createZstdCompress === 'function') {
    const key = z.constants.ZSTD_c_compressionLevel;
    return z.createZstdCompress(key === undefined || level === undefined ? {} : { params: { [key]: level } });
  }
  const n = zstdNapi();
  if (!n) throw noZstd();
  return new n.CompressStream(level === undefined ? {} : { compressionLevel: level });
}

/**
 * UploadLayerPart request bodies, built as the bytes arrive.
 *
 * The API carries a part as base64 inside JSON (`{"repositoryName":..., "layerPartBlob":"..."}`,
 * ~14 MB for a 10 MiB part). The SDK's serializer would hold the part, its base64 string, the
 * JSON string and that string's bytes at once (~5x the part, ~50 MiB per blob in flight).
 * Here the incoming bytes are encoded straight into one buffer, behind room left for the JSON
 * head (whose byte range is known only when the part is complete), so a part costs 4/3 of its
 * size and no copy; the buffers come from a small pool shared by all blobs of a push.
 */

import { endianness } from 'node:os';

const ALPHABET = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/', 'latin1');
const LITTLE_ENDIAN = endianness() === 'LE';
/** Two base64 characters for every 12-bit value, as the little-endian 16-bit word they make in memory. */
const PAIRS = new Uint32Array(4096);
for (let i = 0; i < 4096; i++) PAIRS[i] = ALPHABET[i >> 6]! | (ALPHABET[i & 63]! << 8);

/**
 * Base64 of `src` (a multiple of 3 bytes) written into `dst` at `at`; returns the end offset.
 *
 * Written by hand because Node can only encode base64 into a new string: a push of 1.25 GiB
 * through the native API made 1.7 GB of such strings, enough young garbage for V8 to double
 * its young generation (+16 MiB of RSS). ~0.7 s per GiB here (Node's own: ~0.25 s, plus the
 * collections of its strings).
 */
export function encodeBase64Into(src: Uint8Array, dst: Buffer, at: number): number {
  const groups = src.length / 3;
  if (LITTLE_ENDIAN && (dst.byteOffset + at) % 4 === 0) {
    // Each 3-byte group makes 4 characters: one 32-bit store.
    const out = new Uint32Array(dst.buffer, dst.byteOffset + at, groups);
    let i = 0;
    let j = 0;
    for (; j + 4 <= groups; j += 4, i += 12) {
      let n = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
      out[j] = PAIRS[n >>> 12]! | (PAIRS[n & 4095]! << 16);
      n = (src[i + 3]! << 16) | (src[i + 4]! << 8) | src[i + 5]!;
      out[j + 1] = PAIRS[n >>> 12]! | (PAIRS[n & 4095]! << 16);
      n = (src[i + 6]! << 16) | (src[i + 7]! << 8) | src[i + 8]!;
      out[j + 2] = PAIRS[n >>> 12]! | (PAIRS[n & 4095]! << 16);
      n = (src[i + 9]! << 16) | (src[i + 10]! << 8) | src[i + 11]!;
      out[j + 3] = PAIRS[n >>> 12]! | (PAIRS[n & 4095]! << 16);
    }
    for (; j < groups; j++, i += 3) {
      const n = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
      out[j] = PAIRS[n >>> 12]! | (PAIRS[n & 4095]! << 16);
    }
    return at + groups * 4;
  }
  let o = at;
  for (let i = 0; i < src.length; i += 3) {
    const n = (src[i]! << 16) | (src[i + 1]! << 8) | src[i + 2]!;
    const p = PAIRS[n >>> 12]!;
    const q = PAIRS[n & 4095]!;
    dst[o++] = p & 255;
    dst[o++] = p >> 8;
    dst[o++] = q & 255;
    dst[o++] = q >> 8;
  }
  return o;
}

/** Room before the base64 text for the JSON head: field names, ids, repository (<= 256 chars). */
const HEAD_ROOM = 1024;
const TAIL = Buffer.from('"}');

export interface PartFields {
  registryId?: string;
  repositoryName: string;
  uploadId: string;
  partFirstByte: number;
  partLastByte: number;
}

/** Bytes a PartBody needs for a part of `partSize` bytes. */
export function partBodyCapacity(partSize: number): number {
  return HEAD_ROOM + 4 * Math.ceil(partSize / 3) + TAIL.length;
}

export class PartBody {
  private at = HEAD_ROOM;
  /** 0-2 bytes waiting for the rest of their base64 group. */
  private readonly carry = Buffer.alloc(3);
  private carried = 0;
  /** Raw bytes appended so far. */
  bytes = 0;

  /** `buf`: at least partBodyCapacity(part size) bytes. */
  constructor(readonly buf: Buffer) {}

  append(data: Buffer): void {
    this.bytes += data.length;
    let off = 0;
    if (this.carried > 0) {
      while (this.carried < 3 && off < data.length) this.carry[this.carried++] = data[off++]!;
      if (this.carried < 3) return;
      this.at = encodeBase64Into(this.carry, this.buf, this.at);
      this.carried = 0;
    }
    const whole = off + Math.floor((data.length - off) / 3) * 3;
    if (whole > off) this.at = encodeBase64Into(data.subarray(off, whole), this.buf, this.at);
    for (let i = whole; i < data.length; i++) this.carry[this.carried++] = data[i]!;
  }

  /** The whole request body (a view of `buf`); the part is complete. */
  finish(fields: PartFields): Buffer {
    if (this.carried > 0) {
      // The part's last 1-2 bytes, with padding.
      this.at += this.buf.write(this.carry.subarray(0, this.carried).toString('base64'), this.at, 'latin1');
      this.carried = 0;
    }
    // The SDK's field order and spelling; the blob last, so the head is known only now.
    const head = Buffer.from(`${JSON.stringify(fields).slice(0, -1)},"layerPartBlob":"`);
    const end = this.at + TAIL.copy(this.buf, this.at);
    if (head.length <= HEAD_ROOM) {
      head.copy(this.buf, HEAD_ROOM - head.length);
      return this.buf.subarray(HEAD_ROOM - head.length, end);
    }
    // Only for ids far longer than the API allows: correct, if not thrifty.
    return Buffer.concat([head, this.buf.subarray(HEAD_ROOM, end)]);
  }
}

/** One part's body in one go (tests, and parts that are already whole). */
export function partRequestBody(fields: PartFields, part: Buffer): Buffer {
  const body = new PartBody(Buffer.allocUnsafe(partBodyCapacity(part.length)));
  body.append(part);
  return body.finish(fields);
}

/**
 * At most `max` body buffers for all blobs of a push: a blob takes one to fill, and waits for
 * one when all are filling or in flight. A request in flight never needs a second buffer to
 * finish, so the waits always end.
 */
export class PartBuffers {
  private readonly free: Buffer[] = [];
  private made = 0;
  private readonly waiting: Array<(b: Buffer) => void> = [];

  constructor(
    readonly size: number,
    readonly max: number,
  ) {}

  async acquire(signal?: AbortSignal): Promise<Buffer> {
    signal?.throwIfAborted();
    const b = this.free.pop();
    if (b) return b;
    if (this.made < this.max) {
      this.made++;
      return Buffer.allocUnsafe(this.size);
    }
    return new Promise<Buffer>((resolve, reject) => {
      const take = (buf: Buffer): void => {
        signal?.removeEventListener('abort', onAbort);
        resolve(buf);
      };
      const onAbort = (): void => {
        const i = this.waiting.indexOf(take);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(take);
    });
  }

  release(b: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(b);
    else this.free.push(b);
  }
}

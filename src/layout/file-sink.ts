import { open, type FileHandle } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { release } from '../util/buffer-pool';

/**
 * A new file written chunk by chunk, each chunk released to its pool once written (see
 * util/buffer-pool): `fs.createWriteStream` gives no hook for that. Several chunks buffered
 * meanwhile go out in one vectored write.
 */
export class FileSink extends Writable {
  private fh: FileHandle | undefined;

  constructor(
    private readonly path: string,
    private readonly mode = 0o644,
  ) {
    super({ highWaterMark: 1024 * 1024 });
  }

  override _construct(cb: (e?: Error | null) => void): void {
    open(this.path, 'wx', this.mode).then(
      (fh) => {
        this.fh = fh;
        cb();
      },
      (e: Error) => cb(e),
    );
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    const bufs = chunks.map((c) => c.chunk);
    writeAll(this.fh!, bufs).then(() => {
      for (const b of bufs) release(b);
      cb();
    }, cb);
  }

  override _final(cb: (e?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    fh!.close().then(() => cb(), cb);
  }

  override _destroy(err: Error | null, cb: (e?: Error | null) => void): void {
    const fh = this.fh;
    this.fh = undefined;
    if (!fh) return cb(err);
    fh.close().then(
      () => cb(err),
      () => cb(err),
    );
  }
}

/** `writev` may write less than asked (a full disk, a signal): go on from where it stopped. */
async function writeAll(fh: FileHandle, bufs: Buffer[]): Promise<void> {
  let rest = bufs;
  while (rest.length > 0) {
    let { bytesWritten } = await fh.writev(rest);
    const next: Buffer[] = [];
    for (const b of rest) {
      if (bytesWritten >= b.length) bytesWritten -= b.length;
      else {
        next.push(bytesWritten > 0 ? b.subarray(bytesWritten) : b);
        bytesWritten = 0;
      }
    }
    rest = next;
  }
}

/** HTTP plumbing shared by the two APIs: bounded body reads, replies that faults can drop. */
import type { IncomingMessage, ServerResponse } from 'node:http';

export class BodyTooLarge extends Error {
  constructor(readonly limit: number) {
    super(`request body larger than ${limit} bytes`);
  }
}

/** Reads a whole request body, refusing more than `limit` bytes (then the socket is not reusable). */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(new BodyTooLarge(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    const onData = (c: Buffer): void => {
      n += c.length;
      if (n > limit) {
        req.off('data', onData);
        req.resume();
        reject(new BodyTooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    req.on('data', onData);
    req.once('end', () => resolve(Buffer.concat(chunks, n)));
    req.once('error', reject);
    req.once('aborted', () => reject(new Error('request aborted')));
  });
}

/** Per-request state: a `drop-response` fault turns the reply into a destroyed socket. */
export interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  /** The call name (counter and fault key). */
  op: string;
  dropResponse: boolean;
  status?: number;
}

export function reply(
  x: Exchange,
  status: number,
  headers: Record<string, string | number>,
  body?: Buffer | string,
): void {
  x.status = status;
  if (x.dropResponse) {
    x.req.socket.destroy();
    return;
  }
  const buf = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  const h: Record<string, string | number> = { ...headers };
  if (buf !== undefined && h['content-length'] === undefined) h['content-length'] = buf.length;
  if (buf === undefined && h['content-length'] === undefined && status !== 204 && status !== 304)
    h['content-length'] = 0;
  x.res.writeHead(status, h);
  if (x.req.method === 'HEAD' || buf === undefined) x.res.end();
  else x.res.end(buf);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

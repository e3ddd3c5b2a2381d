/**
 * A tiny fault-injecting HTTP proxy for retry tests: it forwards to a registry but can
 * answer a request itself (503, 429 + Retry-After), reset its connection (at once or in the
 * middle of its body), delay it, or cut the response short, as decided per request by the
 * test's `fault` function. No side effects at import.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

export type Fault =
  | { status: number; headers?: Record<string, string>; body?: string }
  /** The connection is reset as the request arrives. */
  | 'reset'
  /** The request is forwarded, and its connection reset once `afterBytes` of its body went through. */
  | { resetAfterBytes: number }
  /** The request waits `delayMs`, then is forwarded. */
  | { delayMs: number }
  /** Forwarded; the response declares its full length but is cut after half its body. */
  | 'truncate-response'
  | undefined;

export interface FaultProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Every request seen, as `METHOD /path` (no query). */
  seen: string[];
  stop(): Promise<void>;
}

export async function startFaultProxy(
  target: { port: number },
  fault: (req: IncomingMessage, index: number) => Fault,
): Promise<FaultProxy> {
  const seen: string[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req, res) => {
    const index = seen.length;
    seen.push(`${req.method ?? ''} ${(req.url ?? '').split('?')[0] ?? ''}`);
    const f = fault(req, index);
    if (f === 'reset') {
      req.socket.resetAndDestroy();
      return;
    }
    if (f !== undefined && typeof f === 'object' && 'delayMs' in f) {
      req.pause();
      const t = setTimeout(() => forward(req, res), f.delayMs);
      req.socket.once('close', () => clearTimeout(t));
      return;
    }
    if (f !== undefined && typeof f === 'object' && 'resetAfterBytes' in f) {
      forward(req, res, f.resetAfterBytes);
      return;
    }
    if (f === 'truncate-response') {
      forward(req, res, undefined, true);
      return;
    }
    if (f !== undefined) {
      req.resume();
      res.writeHead(f.status, { 'content-type': 'application/json', ...f.headers });
      res.end(f.body ?? JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
      return;
    }
    forward(req, res);
  });
  function forward(req: IncomingMessage, res: ServerResponse, resetAfterBytes?: number, truncate = false): void {
    const up = request(
      { host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!truncate) {
          upRes.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        upRes.on('data', (c: Buffer) => chunks.push(c));
        upRes.on('end', () => {
          const body = Buffer.concat(chunks);
          if (body.length === 0) {
            // Nothing to cut: lose the whole response instead.
            req.socket.resetAndDestroy();
            return;
          }
          res.write(body.subarray(0, Math.floor(body.length / 2)), () => req.socket.destroy());
        });
      },
    );
    up.on('error', () => res.destroy());
    if (resetAfterBytes === undefined) {
      req.pipe(up);
      return;
    }
    let seenBytes = 0;
    req.on('data', (c: Buffer) => {
      seenBytes += c.length;
      if (seenBytes >= resetAfterBytes) {
        up.destroy();
        req.socket.resetAndDestroy();
        return;
      }
      up.write(c);
    });
    req.on('end', () => up.end());
  }
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    host: `127.0.0.1:${port}`,
    seen,
    stop: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

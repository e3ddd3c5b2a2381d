/**
 * A tiny fault-injecting HTTP proxy for retry tests: it forwards to a registry but can
 * answer a request itself (503, 429 + Retry-After) or reset its connection, as decided per
 * request by the test's `fault` function. No side effects at import.
 */
import { createServer, request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';

export type Fault = { status: number; headers?: Record<string, string>; body?: string } | 'reset' | undefined;

export interface FaultProxy {
  /** `127.0.0.1:PORT`. */
  host: string;
  /** Every request seen, as `METHOD /path` (no query). */
  seen: string[];
  stop(): Promise<void>;
}

export async function startFaultProxy(target: { port: number }, fault: (req: IncomingMessage, index: number) => Fault): Promise<FaultProxy> {
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
    if (f !== undefined) {
      req.resume();
      res.writeHead(f.status, { 'content-type': 'application/json', ...f.headers });
      res.end(f.body ?? JSON.stringify({ errors: [{ code: 'UNAVAILABLE', message: 'injected fault' }] }));
      return;
    }
    const up = request({ host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
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

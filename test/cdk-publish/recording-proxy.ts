/**
 * An HTTP proxy for the ECR API of `lading serve` that records, for every call, the operation,
 * the repository and the access key that signed it: the tests check that each destination is
 * reached with the credentials of its own role.
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedCall {
  op: string;
  repositoryName: string | undefined;
  accessKeyId: string | undefined;
}

export interface RecordingProxy {
  url: string;
  calls: RecordedCall[];
  close(): Promise<void>;
}

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const calls: RecordedCall[] = [];
  const to = new URL(target);
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const target = String(req.headers['x-amz-target'] ?? '');
      if (target) {
        let repositoryName: string | undefined;
        try {
          const doc = JSON.parse(body.toString('utf8')) as { repositoryName?: string; repositoryNames?: string[] };
          repositoryName = doc.repositoryName ?? doc.repositoryNames?.[0];
        } catch {
          repositoryName = undefined;
        }
        calls.push({
          op: target.replace(/^.*\./, ''),
          repositoryName,
          accessKeyId: /Credential=([^/]+)\//.exec(String(req.headers.authorization ?? ''))?.[1],
        });
      }
      const fwd = request(
        { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      fwd.on('error', () => res.destroy());
      fwd.end(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

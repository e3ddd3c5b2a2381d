/**
 * A minimal STS endpoint for the tests: HTTP on 127.0.0.1, the query protocol the SDK
 * speaks (POST /, form-encoded Action=...), GetCallerIdentity and AssumeRole with XML
 * answers. It records every request, so tests can check which role was assumed, with
 * which external ID, session name and tags. Signatures are not checked.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StsRequest {
  action: string;
  params: Record<string, string>;
  /** The access key id of the SigV4 Authorization header. */
  accessKeyId: string | undefined;
}

export interface StsServer {
  url: string;
  requests: StsRequest[];
  /** Role ARNs whose AssumeRole is refused with AccessDenied. */
  deny: Set<string>;
  /** Access keys handed out by AssumeRole, by role ARN. */
  issued: Map<string, string[]>;
  /** The secret of an access key AssumeRole handed out (for lading serve's `credentials`), or undefined. */
  secretOf(accessKeyId: string): string | undefined;
  close(): Promise<void>;
}

const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export async function startStsServer(
  caller = { account: '000000000000', arn: 'arn:aws:iam::000000000000:user/ci' },
): Promise<StsServer> {
  const requests: StsRequest[] = [];
  const deny = new Set<string>();
  const issued = new Map<string, string[]>();
  const secrets = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
      const query = new URL(req.url ?? '/', 'http://x').searchParams;
      const params: Record<string, string> = {};
      for (const [k, v] of [...query, ...body]) params[k] = v;
      const action = params.Action ?? '';
      const auth = String(req.headers.authorization ?? '');
      const accessKeyId = /Credential=([^/]+)\//.exec(auth)?.[1];
      requests.push({ action, params, accessKeyId });
      const requestId = randomBytes(8).toString('hex');
      const send = (status: number, xml: string): void => {
        res.writeHead(status, { 'content-type': 'text/xml', 'x-amzn-requestid': requestId });
        res.end(xml);
      };
      const error = (status: number, code: string, message: string): void =>
        send(
          status,
          `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${xmlEscape(message)}</Message></Error><RequestId>${requestId}</RequestId></ErrorResponse>`,
        );
      if (action === 'GetCallerIdentity') {
        send(
          200,
          `<GetCallerIdentityResponse xmlns="${NS}"><GetCallerIdentityResult><Arn>${caller.arn}</Arn><UserId>AIDALADINGTEST</UserId><Account>${caller.account}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
        );
        return;
      }
      if (action === 'AssumeRole') {
        const roleArn = params.RoleArn ?? '';
        const session = params.RoleSessionName ?? '';
        const m = /^arn:[^:]+:iam::(\d{12}):role\/(.+)$/.exec(roleArn);
        if (!m || !session) return error(400, 'ValidationError', 'RoleArn and RoleSessionName are required');
        if (deny.has(roleArn))
          return error(
            403,
            'AccessDenied',
            `User: ${caller.arn} is not authorized to perform: sts:AssumeRole on resource: ${roleArn}`,
          );
        const key = `ASIA${randomBytes(8).toString('hex').toUpperCase()}`;
        issued.set(roleArn, [...(issued.get(roleArn) ?? []), key]);
        secrets.set(key, `secret-${key}`);
        const expiration = new Date(Date.now() + 3600_000).toISOString();
        send(
          200,
          `<AssumeRoleResponse xmlns="${NS}"><AssumeRoleResult><Credentials><AccessKeyId>${key}</AccessKeyId><SecretAccessKey>secret-${key}</SecretAccessKey><SessionToken>token-${key}</SessionToken><Expiration>${expiration}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROALADING:${xmlEscape(session)}</AssumedRoleId><Arn>arn:aws:sts::${m[1]}:assumed-role/${xmlEscape(m[2]!)}/${xmlEscape(session)}</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>${requestId}</RequestId></ResponseMetadata></AssumeRoleResponse>`,
        );
        return;
      }
      error(400, 'InvalidAction', `Could not find operation ${action}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    deny,
    issued,
    secretOf: (id) => secrets.get(id),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

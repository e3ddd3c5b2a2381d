/**
 * `npm run demo`: lading end to end with nothing but Node.js, no AWS account, no docker.
 *
 *  1. builds a small sample image archive (or takes yours: `npm run demo -- my-image.tar`);
 *  2. starts `lading serve` (a local ECR-compatible endpoint) on a free port, as a child process;
 *  3. pushes the archive with `lading push` through the native ECR API (InitiateLayerUpload,
 *     UploadLayerPart, CompleteLayerUpload, PutImage), exactly as it would to Amazon ECR;
 *  4. reads the image back through the registry API (/v2/, with the token GetAuthorizationToken
 *     issues) and checks the digest of every manifest and blob;
 *  5. prints the pinned image URI, stops the server and removes its data.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ECRClient, GetAuthorizationTokenCommand } from '@aws-sdk/client-ecr';
import { main } from '../src/cli/main';
import type { Digest } from '../src/image/digest';
import { parseManifestDocument } from '../src/image/manifest';
import { RegistryClient } from '../src/registry/client';
import { staticCredentials } from '../src/registry/credentials';
import { sampleDockerArchive } from '../src/sample';
import { DEFAULT_CREDENTIALS } from '../src/serve';

const ACCOUNT = '000000000000';
const REGION = 'us-east-1';
const REPOSITORY = 'lading/demo';
const TAG = 'v1';

// lading serve verifies SigV4 signatures, as ECR does: every call here is signed with the key
// pair it accepts by default (never with keys of your own shell, which it would refuse).
process.env.AWS_ACCESS_KEY_ID = DEFAULT_CREDENTIALS.accessKeyId;
process.env.AWS_SECRET_ACCESS_KEY = DEFAULT_CREDENTIALS.secretAccessKey;
delete process.env.AWS_SESSION_TOKEN;
delete process.env.AWS_PROFILE;
process.env.AWS_EC2_METADATA_DISABLED = 'true';
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/** Starts `lading serve` and resolves to its URL once it listens. */
function startServe(dataDir: string): Promise<{ url: string; child: ChildProcess }> {
  const cli = join(__dirname, '..', 'src', 'cli', 'main.js');
  // LADING_SERVE_* of your shell left out: the server accepts its default key pair.
  const env = { ...process.env, LADING_SERVE_ACCESS_KEY_ID: undefined, LADING_SERVE_SECRET_ACCESS_KEY: undefined };
  const child = spawn(process.execPath, [cli, 'serve', '--port', '0', '--data', dataDir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env,
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('lading serve did not start within 20 s')), 20_000);
    child.on('error', reject);
    child.on('exit', (code) => reject(new Error(`lading serve exited early (code ${code})`)));
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      const m = /listening on (http:\/\/\S+)/.exec(line);
      if (m) resolve({ url: m[1]!, child });
      else reject(new Error(`unexpected first line from lading serve: ${line}`));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/** Reads an image back through /v2/ and checks the digest of every manifest and blob. */
async function readBack(url: string, pinned: Digest): Promise<{ manifests: number; blobs: number; bytes: number }> {
  const ecr = new ECRClient({ endpoint: url, region: REGION });
  const token = (await ecr.send(new GetAuthorizationTokenCommand({}))).authorizationData![0]!;
  ecr.destroy();
  const [username, password] = Buffer.from(token.authorizationToken!, 'base64').toString('utf8').split(/:(.*)/s) as [
    string,
    string,
  ];
  const endpoint = new URL(token.proxyEndpoint!);
  const client = new RegistryClient({
    registry: endpoint.host,
    plainHttp: endpoint.protocol === 'http:',
    credentials: staticCredentials({ username, password }, 'GetAuthorizationToken'),
  });
  const counts = { manifests: 0, blobs: 0, bytes: 0 };
  const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
  try {
    const tagged = await client.getManifest(REPOSITORY, TAG);
    if (tagged.digest !== pinned)
      throw new Error(`${REPOSITORY}:${TAG} is ${tagged.digest}, lading push reported ${pinned}`);
    const visit = async (digest: Digest): Promise<void> => {
      const m = await client.getManifest(REPOSITORY, digest);
      if (sha256(m.bytes) !== digest)
        throw new Error(`manifest ${digest}: the bytes served hash to ${sha256(m.bytes)}`);
      counts.manifests++;
      const doc = parseManifestDocument(m.bytes, `manifest ${digest}`, m.mediaType);
      if (doc.kind === 'index') {
        for (const child of doc.manifests) await visit(child.digest);
        return;
      }
      for (const d of [doc.config, ...doc.layers]) {
        const blob = await client.getBlob(REPOSITORY, d.digest);
        const h = createHash('sha256');
        let size = 0;
        for await (const chunk of blob.stream as AsyncIterable<Buffer>) {
          h.update(chunk);
          size += chunk.length;
        }
        const got = `sha256:${h.digest('hex')}`;
        if (got !== d.digest || size !== d.size)
          throw new Error(`blob ${d.digest} (${d.size} bytes): served ${got} (${size} bytes)`);
        counts.blobs++;
        counts.bytes += size;
      }
    };
    await visit(pinned);
  } finally {
    await client.close();
  }
  return counts;
}

async function run(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-demo-'));
  let server: ChildProcess | undefined;
  try {
    let archive = process.argv[2];
    if (archive === undefined) {
      archive = join(dir, 'sample.tar');
      await writeFile(archive, sampleDockerArchive());
      console.log(`== built a sample image archive: ${archive}`);
    }
    console.log(`\n== lading inspect ${archive}`);
    let code = await main(['inspect', archive]);
    if (code !== 0) return code;

    const started = await startServe(join(dir, 'ecr'));
    server = started.child;
    const url = started.url;
    console.log(`\n== lading serve: a local ECR endpoint at ${url}`);

    const dest = `${ACCOUNT}.dkr.ecr.${REGION}.amazonaws.com/${REPOSITORY}:${TAG}`;
    console.log(`\n== lading push ${archive} ${dest} --endpoint-url ${url} --create-repository`);
    let reference = '';
    code = await main(['push', archive, dest, '--endpoint-url', url, '--create-repository', '--no-cache'], {
      stdout: (s) => {
        reference = s.trim().split('\n').pop() ?? '';
        console.log(s.trimEnd());
      },
      stderr: (s) => console.error(s.trimEnd()),
    });
    if (code !== 0) return code;
    const pinned = reference.slice(reference.lastIndexOf('@') + 1) as Digest;

    console.log(`\n== reading ${REPOSITORY}:${TAG} back through ${url}/v2/ and checking every digest`);
    const got = await readBack(url, pinned);
    console.log(
      `verified: ${got.manifests} manifest(s), ${got.blobs} blobs, ${got.bytes} bytes, all matching their digests`,
    );
    console.log(`\nimage URI: ${reference}`);
    return 0;
  } finally {
    if (server) await stop(server);
    await rm(dir, { recursive: true, force: true });
  }
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`demo failed: ${(e as Error).message}`);
    process.exitCode = 1;
  },
);

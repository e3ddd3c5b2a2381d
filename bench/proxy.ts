/**
 * Issue 12: a push through an HTTP proxy beside a direct one. The images of the push
 * scenarios go to a TLS registry (docker-registry with a certificate for IP:127.0.0.1 from a
 * CA made here with `openssl`), four ways, each `--runs` times:
 *  - lading direct: `lading push ARCHIVE 127.0.0.1:PORT/REPO:latest --cert-dir DIR`;
 *  - lading through Debian's tinyproxy: the same with HTTPS_PROXY (a CONNECT tunnel);
 *  - skopeo direct and skopeo through the same tinyproxy (`--dest-cert-dir DIR`), the peer.
 * A fresh registry per push (so every blob is uploaded and the registry's storage starts
 * empty, as in the push scenario), a fresh repository name per push, and each result checked:
 * the image is in the registry (skopeo inspect), lading uploaded every blob, and a push said
 * to go through the proxy moved its bytes through it (tinyproxy's read count).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { childEnv, lading, pushResult, warm, type BenchContext, type PushJson } from './context';
import {
  BenchError,
  medianSample,
  mustSucceed,
  processCpuSeconds,
  processPeakRssMiB,
  processReadBytes,
  syncDisks,
  timed,
  type ChildResult,
  type Sample,
} from './measure';
import { dropSkopeoCache } from './push';
import { judge, ratioText, type Row, type Table } from './report';
import { startRegistry, startTinyproxy, type Proxy, type RegistryTls, type Server } from './servers';

type Way = 'lading-direct' | 'lading-proxy' | 'skopeo-direct' | 'skopeo-proxy';
const WAYS: Way[] = ['lading-direct', 'lading-proxy', 'skopeo-direct', 'skopeo-proxy'];

/**
 * The registry host as skopeo is given it through the proxy. Go's net/http never proxies a
 * loopback address or "localhost" (x/net/http/httpproxy), so `127.0.0.1:PORT` would go
 * direct whatever HTTPS_PROXY says. `127.1` is the same address to tinyproxy (getaddrinfo
 * reads it as 127.0.0.1) but no IP to Go, so skopeo tunnels it; the registry's certificate
 * carries it as a DNS name. lading proxies loopback addresses (curl's rule) and is given
 * 127.0.0.1 both ways.
 */
const SKOPEO_PROXY_HOST = '127.1';

interface Measured {
  sample: Sample;
  registryCpuS: number;
  /** NaN for direct pushes. */
  proxyCpuS: number;
  proxyReadBytes: number;
  /** Warning and error lines tinyproxy logged while this push ran. */
  proxyLog: string[];
  push?: PushJson;
}

interface Certificates {
  caPem: string;
  /** Holds only ca.crt: what --cert-dir / --dest-cert-dir take (skopeo rejects a *.key without its *.cert). */
  certDir: string;
  tls: RegistryTls;
}

/**
 * A root CA and a server certificate for IP:127.0.0.1 and DNS:127.1 (EC P-256, 2 days), made
 * with the openssl CLI (OpenSSL 3 and 1.1 alike) in `dir`.
 */
function makeCertificates(dir: string): Certificates {
  rmSync(dir, { recursive: true, force: true });
  const certDir = join(dir, 'trust');
  mkdirSync(certDir, { recursive: true });
  const openssl = (args: string[]): void => {
    try {
      execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (e) {
      const stderr = (e as { stderr?: Buffer }).stderr?.toString() ?? String(e);
      throw new BenchError(`openssl ${args[0]} failed: ${stderr.slice(-2000)}`);
    }
  };
  // A config of our own, so neither the system's openssl.cnf nor its absence changes anything.
  const reqConfig = join(dir, 'req.cnf');
  writeFileSync(
    reqConfig,
    '[req]\ndistinguished_name = dn\n[dn]\n[ca_ext]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n',
  );
  const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const caCert = join(certDir, 'ca.crt');
  const caKey = join(dir, 'ca.key');
  openssl([
    'req',
    '-x509',
    ...ecKey,
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-days',
    '2',
    '-subj',
    '/O=lading bench/CN=lading bench CA',
    '-config',
    reqConfig,
    '-extensions',
    'ca_ext',
  ]);
  const key = join(dir, 'registry.key');
  const csr = join(dir, 'registry.csr');
  const certificate = join(dir, 'registry.crt');
  const ext = join(dir, 'registry.ext');
  writeFileSync(
    ext,
    [
      '[ext]',
      'basicConstraints = critical, CA:FALSE',
      'keyUsage = critical, digitalSignature, keyEncipherment',
      'extendedKeyUsage = serverAuth',
      `subjectAltName = IP:127.0.0.1, DNS:${SKOPEO_PROXY_HOST}`,
      'subjectKeyIdentifier = hash',
      'authorityKeyIdentifier = keyid',
      '',
    ].join('\n'),
  );
  openssl(['req', '-new', ...ecKey, '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1', '-config', reqConfig]);
  openssl([
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    caCert,
    '-CAkey',
    caKey,
    '-set_serial',
    '0x10',
    '-days',
    '2',
    '-sha256',
    '-extfile',
    ext,
    '-extensions',
    'ext',
    '-out',
    certificate,
  ]);
  const caPem = readFileSync(caCert, 'utf8');
  return { caPem, certDir, tls: { certificate, key, caPem } };
}

/** `skopeo inspect` of what a push left in the registry (direct, verifying TLS): its manifest digest. */
async function inspectDigest(ctx: BenchContext, certDir: string, ref: string): Promise<string> {
  const r = await timed('skopeo', ['inspect', '--cert-dir', certDir, `docker://${ref}`], {
    env: childEnv(),
    scratchDir: ctx.scratchDir,
    timeoutMs: 60_000,
  });
  mustSucceed(r, `skopeo inspect docker://${ref} after the push`);
  let digest: unknown;
  try {
    digest = (JSON.parse(r.stdout) as { Digest?: unknown }).Digest;
  } catch {
    // reported below
  }
  if (typeof digest !== 'string')
    throw new BenchError(`skopeo inspect docker://${ref} printed no digest: ${r.stdout.slice(0, 2000)}`);
  return digest;
}

export async function benchProxy(ctx: BenchContext): Promise<Table[]> {
  const images = [
    {
      id: 'docker',
      label: 'docker-archive, uncompressed layers -> gzip',
      path: ctx.inputs.dockerArchive,
      skopeoSource: (p: string) => [`docker-archive:${p}`],
    },
    {
      id: 'oci',
      label: 'OCI archive, gzip layers',
      path: ctx.inputs.ociArchive,
      skopeoSource: (p: string) => ['--preserve-digests', `oci-archive:${p}`],
    },
  ];
  ctx.log('proxy: warming the page cache');
  for (const img of images) warm(img.path);
  const certs = makeCertificates(join(ctx.scratchDir, 'proxy-certs'));
  const proxy: Proxy = await startTinyproxy(join(ctx.serverRoot, 'tinyproxy'));
  const results: Record<string, Record<Way, Measured[]>> = {};
  for (const img of images)
    results[img.id] = { 'lading-direct': [], 'lading-proxy': [], 'skopeo-direct': [], 'skopeo-proxy': [] };
  // What lading uploaded per image (its first push comes first): what skopeo's proxied pushes are held to.
  const uploaded: Record<string, number> = {};

  const pushOnce = async (img: (typeof images)[number], way: Way, i: number): Promise<void> => {
    const reg: Server = await startRegistry(join(ctx.serverRoot, `registry-proxy-${img.id}-${way}-${i}`), certs.tls);
    try {
      const viaProxy = way.endsWith('-proxy');
      const repo = `bench/${img.id}-${way}-${i}`;
      const port = new URL(reg.url).port;
      const proxyEnv = viaProxy ? { HTTPS_PROXY: proxy.url } : {};
      let run: () => Promise<ChildResult>;
      if (way.startsWith('lading')) {
        run = () =>
          lading(
            ctx,
            [
              'push',
              img.path,
              `127.0.0.1:${port}/${repo}:latest`,
              '--cert-dir',
              certs.certDir,
              '--json',
              '--quiet',
              '--no-cache',
            ],
            proxyEnv,
          );
      } else {
        const host = viaProxy ? SKOPEO_PROXY_HOST : '127.0.0.1';
        run = () =>
          timed(
            'skopeo',
            [
              'copy',
              '--quiet',
              ...img.skopeoSource(img.path),
              `docker://${host}:${port}/${repo}:latest`,
              '--dest-cert-dir',
              certs.certDir,
            ],
            {
              env: childEnv(proxyEnv),
              scratchDir: ctx.scratchDir,
              timeoutMs: 10 * 60_000,
            },
          );
        dropSkopeoCache();
      }
      syncDisks();
      const regCpu0 = processCpuSeconds(reg.pid);
      const proxyCpu0 = processCpuSeconds(proxy.pid);
      const proxyRead0 = processReadBytes(proxy.pid);
      const log0 = proxy.log().length;
      const r = await run();
      const registryCpuS = processCpuSeconds(reg.pid) - regCpu0;
      const proxyCpuS = processCpuSeconds(proxy.pid) - proxyCpu0;
      const proxyReadBytes = processReadBytes(proxy.pid) - proxyRead0;
      const proxyLog = proxy
        .log()
        .slice(log0)
        .split('\n')
        .filter((l) => /^(WARNING|ERROR|CRITICAL)/.test(l));
      const what = `${way} push (${img.id})`;
      mustSucceed(r, what);
      const m: Measured = {
        sample: r,
        registryCpuS,
        proxyCpuS: viaProxy ? proxyCpuS : NaN,
        proxyReadBytes: viaProxy ? proxyReadBytes : NaN,
        proxyLog,
      };
      const digest = await inspectDigest(ctx, certs.certDir, `127.0.0.1:${port}/${repo}:latest`);
      if (way.startsWith('lading')) {
        m.push = pushResult(r, what);
        if (m.push.blobs.skipped !== 0 || m.push.blobs.uploaded < 6)
          throw new BenchError(`${what} was not cold: ${JSON.stringify(m.push.blobs)}`);
        if (m.push.digest !== digest)
          throw new BenchError(`${what}: lading reported ${m.push.digest}, the registry serves ${digest}`);
        uploaded[img.id] ??= m.push.blobs.bytesUploaded;
      }
      // A push that skipped the proxy (an env var not honoured, a host exempted) must not pass
      // as a proxied one; nor may a direct push have used it. Skopeo compresses (a) at another
      // level than lading, hence only half of lading's bytes are asked of it.
      if (Number.isFinite(proxyReadBytes)) {
        const floor = m.push ? 0.95 * m.push.blobs.bytesUploaded : 0.5 * (uploaded[img.id] ?? statSync(img.path).size);
        if (viaProxy && proxyReadBytes < floor) {
          throw new BenchError(
            `${what}: only ${(proxyReadBytes / 2 ** 20).toFixed(1)} MiB went through tinyproxy (expected >= ${(floor / 2 ** 20).toFixed(0)} MiB): the push did not use the proxy`,
          );
        }
        if (!viaProxy && proxyReadBytes > 2 ** 20)
          throw new BenchError(
            `${what}: ${(proxyReadBytes / 2 ** 20).toFixed(1)} MiB went through tinyproxy during a direct push`,
          );
      }
      results[img.id]![way].push(m);
      const through = viaProxy
        ? `; tinyproxy ${proxyCpuS.toFixed(2)} CPU-s, ${(proxyReadBytes / 2 ** 20).toFixed(0)} MiB relayed, ${proxyLog.length} log line(s)`
        : '';
      ctx.log(
        `proxy run ${i + 1}/${ctx.runs}: ${img.id} ${way} ${r.wallS.toFixed(2)} s wall, ${r.cpuS.toFixed(2)} CPU-s, ${r.rssMiB.toFixed(0)} MiB; registry ${registryCpuS.toFixed(2)} CPU-s${through}`,
      );
    } finally {
      await reg.stop();
    }
  };

  let proxyRssMiB = NaN;
  try {
    for (let i = 0; i < ctx.runs; i++) {
      for (const img of images) {
        // lading direct first in even runs, last in odd ones: drift in the machine's load
        // (other work shares it) then weighs on every way alike.
        for (const way of i % 2 === 0 ? WAYS : [...WAYS].reverse()) await pushOnce(img, way, i);
      }
    }
  } finally {
    proxyRssMiB = processPeakRssMiB(proxy.pid);
    await proxy.stop();
    rmSync(join(ctx.scratchDir, 'proxy-certs'), { recursive: true, force: true });
  }

  const rows: Row[] = [];
  const notes: string[] = [
    'TLS registry (docker-registry, certificate from a CA made by the bench), a fresh one per push. Ratios: through tinyproxy / direct, same tool (lower is better); MiB/s is archive bytes / wall time.',
    `Through the proxy: HTTPS_PROXY=${proxy.url.replace(/:\d+$/, ':PORT')} (tinyproxy, CONNECT tunnels). skopeo is given the registry as ${SKOPEO_PROXY_HOST}:PORT there: Go never proxies a loopback address, so 127.0.0.1 would go direct.`,
  ];
  for (const img of images) {
    const size = statSync(img.path).size;
    const scenario = `${img.label}, ${(size / 2 ** 20).toFixed(0)} MiB`;
    const rec = (w: Way): Measured[] => results[img.id]![w];
    const med = (w: Way): Sample => medianSample(rec(w).map((x) => x.sample));
    const medOf = (w: Way, f: (x: Measured) => number): number =>
      medianSample(rec(w).map((x) => ({ wallS: 0, userS: 0, sysS: 0, cpuS: f(x), rssMiB: 0 }))).cpuS;
    const tool: Record<Way, string> = {
      'lading-direct': 'lading push, direct',
      'lading-proxy': 'lading push, through tinyproxy',
      'skopeo-direct': 'skopeo copy, direct',
      'skopeo-proxy': 'skopeo copy, through tinyproxy',
    };
    for (const w of WAYS) {
      const m = med(w);
      const peer: Way | undefined =
        w === 'lading-proxy' ? 'lading-direct' : w === 'skopeo-proxy' ? 'skopeo-direct' : undefined;
      const row: Row = {
        scenario,
        tool: tool[w],
        median: m,
        samples: rec(w).map((x) => x.sample),
        bytes: size,
        ratio: peer ? ratioText(m, med(peer)) : undefined,
        extra: {
          registryCpuS: medOf(w, (x) => x.registryCpuS),
          ...(w.endsWith('-proxy')
            ? { proxyCpuS: medOf(w, (x) => x.proxyCpuS), proxyReadBytes: medOf(w, (x) => x.proxyReadBytes) }
            : {}),
          blobs: w.startsWith('lading') ? rec(w).map((x) => x.push?.blobs) : undefined,
        },
      };
      // The proxy adds no target of its own: a push through it is held to the push target (issue 3).
      if (w.startsWith('lading')) judge(row, 'RSS <= 128 MiB', [['RSS', m.rssMiB <= 128]]);
      rows.push(row);
    }
    const mib = (b: number): string =>
      Number.isFinite(b) ? `${(b / 2 ** 20).toFixed(0)} MiB` : 'n/a (no /proc/PID/io)';
    notes.push(
      `${img.id}: lading through the proxy vs skopeo through it: ${ratioText(med('lading-proxy'), med('skopeo-proxy'))}. ` +
        `tinyproxy per push: lading ${medOf('lading-proxy', (x) => x.proxyCpuS).toFixed(2)} CPU-s, ${mib(medOf('lading-proxy', (x) => x.proxyReadBytes))} relayed; ` +
        `skopeo ${medOf('skopeo-proxy', (x) => x.proxyCpuS).toFixed(2)} CPU-s, ${mib(medOf('skopeo-proxy', (x) => x.proxyReadBytes))}. ` +
        `Registry CPU-s per push: ${WAYS.map((w) => `${w} ${medOf(w, (x) => x.registryCpuS).toFixed(2)}`).join(', ')}.`,
    );
  }
  // What tinyproxy logged while pushes ran (its start-up lines and the readiness probe's
  // "closed socket before read" are not counted): per way, with the most frequent message.
  const logNotes = WAYS.map((w) => {
    const lines = images.flatMap((img) => results[img.id]![w].flatMap((x) => x.proxyLog));
    if (lines.length === 0) return `${w} 0`;
    const counts = new Map<string, number>();
    for (const l of lines) {
      const msg = l.replace(/^\S+\s+\S+ \S+ \S+ \[\d+\]: /, '').replace(/\d+/g, 'N');
      counts.set(msg, (counts.get(msg) ?? 0) + 1);
    }
    const [top, n] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
    return `${w} ${lines.length} (${n} x "${top}")`;
  });
  notes.push(
    `tinyproxy peak RSS ${Number.isFinite(proxyRssMiB) ? `${proxyRssMiB.toFixed(1)} MiB` : 'n/a'}; warning/error lines it logged during the pushes, all runs: ${logNotes.join(', ')}.`,
  );
  return [
    {
      id: 'proxy',
      title: 'Push through a local HTTP proxy (tinyproxy, CONNECT) beside a direct push, TLS registry',
      rows,
      notes,
    },
  ];
}

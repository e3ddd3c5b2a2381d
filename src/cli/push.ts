import { DigestCache } from '../compress/cache';
import { CopyEngine, type CopyOptions, type CopyResult } from '../copy/engine';
import { LadingError } from '../errors';
import type { Compression } from '../image/media-types';
import { parsePlatform } from '../image/platform';
import { parseCommandArgs, strings, usageError, type CommandContext } from '../command/context';
import { openDestination } from '../destinations/open';
import { ProgressRenderer } from '../terminal/progress';
import { terminalSafe } from '../terminal/format';
import { parseArchiveArg, parseDestinationArg } from './transports';
import { writeFile } from 'node:fs/promises';
import { openArchive } from '../archive';
import type { Destination } from '../copy/destination';
import { describeCompression } from '../compress/codecs';
import { archiveTags } from '../copy/select';
import { parseReference } from '../reference/reference';

export const pushHelp = `Usage: lading push ARCHIVE DESTINATION [options]

Push an image archive to a registry, or write it as an OCI layout directory.
ARCHIVE is a tar file (optionally gzip/zstd compressed), an OCI layout directory, or -
for standard input; skopeo's docker-archive:PATH[:REF], oci-archive:PATH[:REF] and
oci:DIR[:REF] are accepted too (REF picks the image, like --image; @N the Nth).
DESTINATION is [docker://]host[:port]/repository[:tag] or oci:PATH.

Options:
  --tag T                   tag (repeatable). Default: the tag in DESTINATION, else the
                            image's own tags in the archive, else latest
  --image NAME              image to take from a multi-image archive (name, digest, or @N)
  --platform OS/ARCH[/V]    platform to push (repeatable); default: all of them
  --compress gzip|zstd|none what to do with uncompressed layers (default gzip)
  --compression-level N     gzip 0-9 with zlib, zstd 1-19 (default 3); gzip's default is
                            igzip level 2 where lading's native binding is built, else zlib 2
  --concurrency N           blobs in flight at once (default 3)
  --no-cache                do not use or update the compressed-digest cache
  --verify-diff-ids         also inflate compressed layers the archive gives a digest for, to
                            check them against the config's diff_ids (as lading inspect does)
  --push-foreign-layers     push foreign (non-distributable) layers held in the archive as
                            ordinary layers, instead of referencing their URLs
  --dry-run                 show the plan: what would be uploaded, skipped, rewritten
  --plain-http              use http (automatic for localhost and 127.0.0.1)
  --insecure                use TLS without verifying the certificate
  --cert-dir DIR            the registry's CA certificates (*.crt) and client certificate
                            (*.cert + *.key) are in DIR, instead of /etc/docker/certs.d/HOST
                            and /etc/containers/certs.d/HOST
  --username U              registry user name (with --password-stdin)
  --password-stdin          read the registry password or token from standard input
  --mount-from REPO         try to mount blobs from another repository of the registry
  --chunk-size BYTES        upload in chunks of this size instead of one request
  --json                    print one JSON document describing the result
  --all-images              push every image of the archive, each with its own tags from it
                            (untagged when it names none); blobs they share go up once
  --repository-per-image    with --all-images: each image to DESTINATION/NAME, NAME from the
                            image's name in the archive (DESTINATION is then a prefix)
  --digest-file FILE        write the pushed digest to FILE (skopeo's --digestfile)
  --image-refs FILE         write the pinned reference of each tag to FILE, one per line

Amazon ECR (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO[:TAG], FIPS and dual-stack hosts too):
  --transport ecr-api|registry  native ECR API (default) or the registry protocol with a token
                            from GetAuthorizationToken
  --region R                default: from the host name, else AWS_REGION
  --profile P               AWS profile (default: AWS_PROFILE, then the default chain)
  --endpoint-url URL        ECR API endpoint (e.g. lading serve); AWS_ENDPOINT_URL_ECR is honoured
  --ecr                     treat a non-ECR host (lading serve, a proxy) as ECR
  --create-repository       create the repository when it does not exist
  --image-tag-mutability M  MUTABLE (default) or IMMUTABLE, for --create-repository
  -q, --quiet               print only the pinned reference
  --debug                   log requests and decisions (no secrets), stack traces on error

Networks: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY (lower-case forms win) apply to the
registry and to every AWS call; NODE_EXTRA_CA_CERTS and AWS_CA_BUNDLE add trusted CAs.

On success the last line of standard output is the pinned reference host/repo@sha256:...
Exit codes: 0 success, 1 failure, 2 usage error.
`;

export const pushOptions = {
  tag: { type: 'string', multiple: true },
  image: { type: 'string' },
  platform: { type: 'string', multiple: true },
  compress: { type: 'string' },
  'compression-level': { type: 'string' },
  concurrency: { type: 'string' },
  'no-cache': { type: 'boolean' },
  'verify-diff-ids': { type: 'boolean' },
  'push-foreign-layers': { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  'plain-http': { type: 'boolean' },
  insecure: { type: 'boolean' },
  'cert-dir': { type: 'string' },
  username: { type: 'string' },
  'password-stdin': { type: 'boolean' },
  'mount-from': { type: 'string' },
  'chunk-size': { type: 'string' },
  json: { type: 'boolean' },
  'digest-file': { type: 'string' },
  'all-images': { type: 'boolean' },
  'repository-per-image': { type: 'boolean' },
  'image-refs': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
  transport: { type: 'string' },
  ecr: { type: 'boolean' },
  region: { type: 'string' },
  profile: { type: 'string' },
  'endpoint-url': { type: 'string' },
  'create-repository': { type: 'boolean' },
  'image-tag-mutability': { type: 'string' },
} as const;

function intOption(v: unknown, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max)
    throw usageError(`--${name} must be an integer from ${min} to ${max}`, 'push');
  return n;
}

function stringOption(v: unknown): string | undefined {
  return v === undefined ? undefined : String(v);
}

function transportOf(v: unknown): 'ecr-api' | 'registry' {
  if (v === 'ecr-api' || v === 'registry') return v;
  throw usageError(`--transport must be ecr-api or registry, not ${String(v)}`, 'push');
}

function mutabilityOf(v: unknown): 'MUTABLE' | 'IMMUTABLE' {
  const s = String(v).toUpperCase();
  if (s === 'MUTABLE' || s === 'IMMUTABLE') return s;
  throw usageError(`--image-tag-mutability must be MUTABLE or IMMUTABLE, not ${String(v)}`, 'push');
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks)
    .toString('utf8')
    .replace(/\r?\n$/, '');
}

/**
 * --all-images: every image of the archive, each with its own tags (none: pushed by digest
 * only), to DESTINATION's repository or, with --repository-per-image, to DESTINATION/NAME.
 * The archive is opened again for each image; blobs images share are found already there and
 * skipped, so each is uploaded once.
 */
async function pushAllImages(
  ctx: CommandContext,
  archive: string,
  destination: string,
  shared: Destination,
  opts: CopyOptions,
  perRepository: boolean,
  json: boolean,
  open: (arg: string) => Promise<{ destination: Destination }>,
): Promise<CopyResult[]> {
  const listed = await openArchive(archive, { signal: opts.signal });
  const images = listed.images.map((img, i) => ({ index: i, names: img.names, tags: archiveTags(img) }));
  await listed.close();
  // Every repository name first: nothing is pushed when one image cannot be placed.
  const repos = images.map((img) => {
    if (!perRepository) return undefined;
    const name = img.names[0];
    if (name === undefined)
      throw new LadingError(
        'USAGE',
        `image @${img.index} of ${archive} has no name to make a repository of: push it alone with --image @${img.index}`,
      );
    return name.includes('/') || name.includes(':') ? parseReference(name).repository : name;
  });
  const results: (CopyResult & { image: string[] })[] = [];
  try {
    for (const img of images) {
      let target = shared;
      const repo = repos[img.index];
      if (repo !== undefined) target = (await open(`${destination}/${repo}`)).destination;
      try {
        const r = await new CopyEngine(target, { ...opts, image: `@${img.index}`, tags: img.tags }).copy(archive);
        results.push({ ...r, image: img.names });
        if (!json) for (const w of r.warnings ?? []) ctx.stderr(`lading: warning: ${terminalSafe(w)}`);
        if (!json)
          ctx.stderr(
            `image @${img.index} (${img.names.join(', ') || 'unnamed'}): ${r.reference}${r.tags.length > 0 ? ` tagged ${r.tags.join(', ')}` : ' (no tag: the archive names none)'}`,
          );
      } finally {
        if (target !== shared) await target.close();
      }
    }
  } finally {
    await shared.close();
  }
  if (json) ctx.stdout(JSON.stringify({ images: results.map(({ plan: _plan, ...r }) => r) }, null, 2));
  else for (const r of results) if (r.reference !== null) ctx.stdout(r.reference);
  return results;
}

/** skopeo's --digestfile (the digest) and crane's --image-refs (a pinned reference per tag). */
async function writeRefs(results: CopyResult[], digestFile: unknown, refsFile: unknown): Promise<void> {
  const pushed = results.filter((r) => r.reference !== null);
  const write = async (file: unknown, lines: string[], what: string): Promise<void> => {
    if (file === undefined) return;
    try {
      await writeFile(String(file), `${lines.join('\n')}\n`);
    } catch (e) {
      throw new LadingError(
        'IO',
        `cannot write ${what} ${String(file)}: ${(e as { code?: string }).code ?? String(e)} (the push itself succeeded: ${pushed.map((r) => r.reference).join(', ')})`,
        { cause: e },
      );
    }
  };
  await write(
    digestFile,
    pushed.map((r) => r.digest!),
    '--digest-file',
  );
  const refs = pushed.flatMap((r) => {
    const pinned = r.reference!;
    const at = pinned.lastIndexOf('@');
    return r.tags.length > 0 ? r.tags.map((t) => `${pinned.slice(0, at)}:${t}${pinned.slice(at)}`) : [pinned];
  });
  await write(refsFile, refs, '--image-refs');
}

export function renderPlan(r: CopyResult): string {
  const lines = ['dry run: nothing uploaded or written'];
  for (const b of r.plan ?? []) {
    lines.push(
      `  ${b.action.padEnd(16)} ${b.label}${b.digest ? ` ${b.digest}` : ''}${b.reason ? ` (${b.reason})` : ''}`,
    );
  }
  for (const d of r.rewritten) lines.push(`  rewrite          manifest -> ${d}`);
  lines.push(
    `  ${r.tags.length > 0 ? `tag ${r.tags.join(', ')} ->` : 'push'} ${r.digest ?? '(digest known once the layers are compressed)'}`,
  );
  return lines.join('\n');
}

export async function runPush(ctx: CommandContext, args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, pushOptions);
  if (values.help) {
    ctx.stdout(pushHelp);
    return 0;
  }
  if (positionals.length !== 2) throw usageError('push needs ARCHIVE and DESTINATION', 'push');
  const source = parseArchiveArg(positionals[0]!);
  const archive = source.path;
  const destination = parseDestinationArg(positionals[1]!);
  if (source.image !== undefined && values.image !== undefined)
    throw usageError(`ARCHIVE ${positionals[0]} names an image already; drop --image`, 'push');
  const image = source.image ?? (values.image !== undefined ? String(values.image) : undefined);
  const compress = (values.compress ?? 'gzip') as string;
  if (!['gzip', 'zstd', 'none'].includes(compress))
    throw usageError(`--compress must be gzip, zstd or none, not ${compress}`, 'push');
  const level = intOption(
    values['compression-level'],
    'compression-level',
    compress === 'zstd' ? 1 : 0,
    compress === 'zstd' ? 19 : 9,
  );
  const concurrency = intOption(values.concurrency, 'concurrency', 1, 64);
  const chunkSize = intOption(values['chunk-size'], 'chunk-size', 1, 2 ** 40);
  const platforms = strings(values.platform).map((p) => {
    try {
      return parsePlatform(p);
    } catch (e) {
      throw new LadingError('USAGE', (e as Error).message);
    }
  });
  if (values['password-stdin'] && archive === '-')
    throw usageError('--password-stdin and ARCHIVE - both want standard input', 'push');
  if (values['password-stdin'] && values.username === undefined)
    throw usageError('--password-stdin needs --username', 'push');
  const password = values['password-stdin'] ? await readStdin() : undefined;

  const destOptions = {
    plainHttp: values['plain-http'] === true,
    insecure: values.insecure === true,
    certDir: stringOption(values['cert-dir']),
    username: stringOption(values.username),
    password,
    mountFrom: stringOption(values['mount-from']),
    chunkSize,
    ...(values.transport !== undefined ? { transport: transportOf(values.transport) } : {}),
    ecr: values.ecr === true,
    region: stringOption(values.region),
    // An empty AWS_PROFILE names no profile: the destination ignores an empty one.
    profile: stringOption(values.profile) ?? ctx.env.AWS_PROFILE,
    endpointUrl: stringOption(values['endpoint-url']),
    createRepository: values['create-repository'] === true,
    ...(values['image-tag-mutability'] !== undefined
      ? { imageTagMutability: mutabilityOf(values['image-tag-mutability']) }
      : {}),
    env: ctx.env,
    logger: ctx.debug,
  };
  if (values['all-images']) {
    if (image !== undefined)
      throw usageError('--all-images pushes every image: drop --image (or the image in ARCHIVE)', 'push');
    if (archive === '-') throw usageError('--all-images reads the archive once per image: give a file, not -', 'push');
    if (strings(values.tag).length > 0)
      throw usageError('--all-images pushes each image with its own tags from the archive: drop --tag', 'push');
  } else if (values['repository-per-image']) {
    throw usageError('--repository-per-image goes with --all-images', 'push');
  }
  const dest = await openDestination(destination, destOptions);
  const tags = [...new Set([...dest.tags, ...strings(values.tag)])];
  if (values['all-images'] && tags.length > 0) {
    await dest.destination.close();
    throw usageError('--all-images pushes each image with its own tags: DESTINATION takes no tag', 'push');
  }

  const quiet = values.quiet === true || values.json === true;
  // The live display moves the cursor: its writes go out byte for byte, no newline added.
  const tty = !quiet && ctx.isTTY && ctx.stderrRaw !== undefined;
  const progress = new ProgressRenderer(
    tty ? ctx.stderrRaw! : (s) => ctx.stderr(s.endsWith('\n') ? s.slice(0, -1) : s),
    quiet ? 'quiet' : tty ? 'tty' : 'plain',
  );
  const opts: CopyOptions = {
    compress: compress as Compression,
    tags,
    platforms,
    signal: ctx.signal,
    onEvent: progress.onEvent,
    cache: values['no-cache'] ? null : new DigestCache(DigestCache.defaultFile(ctx.env)),
    dryRun: values['dry-run'] === true,
    verifyDiffIds: values['verify-diff-ids'] === true,
    pushForeignLayers: values['push-foreign-layers'] === true,
    image,
    // No tag given: the image's own tags from the archive (latest when it names none).
    tagsFromArchive: !dest.destination.name.startsWith('oci:'),
    compressionLevel: level,
    concurrency,
    logger: ctx.debug,
  };
  ctx.debug?.(describeCompression(compress as Compression, level));
  if (values['all-images']) {
    try {
      const results = await pushAllImages(
        ctx,
        archive,
        destination,
        dest.destination,
        { ...opts, tagsFromArchive: false },
        values['repository-per-image'] === true,
        values.json === true,
        (d) => openDestination(d, destOptions),
      );
      await writeRefs(results, values['digest-file'], values['image-refs']);
      return 0;
    } finally {
      progress.stop();
    }
  }
  let result: CopyResult;
  try {
    result = await new CopyEngine(dest.destination, opts).copy(archive);
  } finally {
    progress.stop();
    await dest.destination.close();
  }
  await writeRefs([result], values['digest-file'], values['image-refs']);
  if (values.json) {
    const { plan, rewritten, ...rest } = result;
    ctx.stdout(JSON.stringify({ ...rest, rewritten, plan }, null, 2));
    return 0;
  }
  for (const w of result.warnings ?? []) ctx.stderr(`lading: warning: ${terminalSafe(w)}`);
  if (opts.dryRun) ctx.stdout(renderPlan(result));
  else if (!values.quiet) {
    const b = result.blobs;
    const tagged =
      result.tagSource === 'archive'
        ? `; tagged ${result.tags.join(', ')} (the image's own tags in the archive)`
        : result.tagSource === 'default'
          ? '; tagged latest (the archive names no tag)'
          : '';
    ctx.stderr(
      `pushed ${result.manifests.length} manifest${result.manifests.length === 1 ? '' : 's'}; blobs: ${b.uploaded} uploaded (${(b.bytesUploaded / 1048576).toFixed(1)} MiB), ${b.mounted > 0 ? `${b.mounted} mounted, ` : ''}${b.skipped} already there${tagged}`,
    );
  }
  if (result.reference !== null) ctx.stdout(result.reference);
  return 0;
}

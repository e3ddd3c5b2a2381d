/**
 * The OCI distribution API under `/v2/`, as ECR's registry endpoint offers it: Basic auth
 * with `AWS:<password from GetAuthorizationToken>`, blobs (HEAD/GET with ranges), uploads
 * (POST, monolithic POST ?digest=, streamed PATCH, PUT ?digest=), manifests by tag or
 * digest with PutImage's rules, tags/list and referrers. Bodies stream to a temp file
 * while hashed; nothing blob-sized is held in memory.
 */
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { digestAlgorithm, isDigest, type Digest } from '../image/digest';
import { MediaType } from '../image/media-types';
import { TOKEN_USER } from './auth';
import { MIN_PART_SIZE, type ServeState } from './ecr-api';
import { ApiError, ociFromApiError } from './errors';
import { BodyTooLarge, readBody, reply, type Exchange } from './http';
import { MAX_MANIFEST, putImage, resolveImage } from './images';
import { isSha256Digest, isTag, REPOSITORY_NAME } from './names';
import type { Repository } from './storage';
import type { Upload } from './uploads';

export interface RegistryOptions {
  /** Honour `?mount=&from=` (ECR's opt-in BLOB_MOUNTING account setting). @default false */
  blobMounting: boolean;
  /** What a push to a missing repository gets: 404 NAME_UNKNOWN, or ECR's abruptly closed connection. */
  missingRepository: 'not-found' | 'close';
}

const COMMON = { 'docker-distribution-api-version': 'registry/2.0' };

type RouteKind = 'base' | 'tags' | 'manifest' | 'upload' | 'blob' | 'referrers' | 'unknown';

export interface RegistryRoute {
  kind: RouteKind;
  /** Counter and fault key: `GET /v2/`, `PATCH upload`, `PUT manifest`... */
  key: string;
  name?: string;
  /** Manifest reference, blob digest, upload id or referrers subject. */
  arg?: string;
}

const ROUTE =
  /^\/v2\/(.+)\/(?:(tags)\/list|(manifests)\/([^/]+)|blobs\/(uploads)\/([^/]*)|(blobs)\/([^/]+)|(referrers)\/([^/]+))$/;

function decode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function registryRoute(method: string, pathname: string): RegistryRoute {
  if (pathname === '/v2/' || pathname === '/v2') return { kind: 'base', key: `${method} /v2/` };
  const m = ROUTE.exec(pathname);
  if (!m) return { kind: 'unknown', key: `${method} unknown` };
  const name = decode(m[1]!);
  const r = (kind: RouteKind, arg?: string): RegistryRoute => ({
    kind,
    key: `${method} ${kind}`,
    name,
    ...(arg !== undefined ? { arg: decode(arg) } : {}),
  });
  if (m[2]) return r('tags');
  if (m[3]) return r('manifest', m[4]);
  if (m[5]) return r('upload', m[6]);
  if (m[7]) return r('blob', m[8]);
  return r('referrers', m[10]);
}

export function ociError(
  x: Exchange,
  status: number,
  code: string,
  message: string,
  detail?: unknown,
  headers: Record<string, string> = {},
): void {
  reply(
    x,
    status,
    { ...COMMON, 'content-type': 'application/json', ...headers },
    JSON.stringify({ errors: [{ code, message, detail: detail ?? {} }] }),
  );
}

function uploadHeaders(name: string, u: Upload): Record<string, string> {
  return {
    ...COMMON,
    location: `/v2/${name}/blobs/uploads/${u.id}`,
    range: `0-${Math.max(0, u.size - 1)}`,
    'docker-upload-uuid': u.id,
    // ECR's rule for chunked uploads: every chunk but the last >= 5 MiB (regclient and lading honour this header).
    'oci-chunk-min-length': String(MIN_PART_SIZE),
  };
}

export class RegistryApi {
  constructor(
    private readonly s: ServeState,
    private readonly opts: RegistryOptions,
  ) {}

  private realm(): string {
    return `Basic realm="http://${this.s.host()}/",service="ecr.amazonaws.com"`;
  }

  async handle(x: Exchange, route: RegistryRoute): Promise<void> {
    try {
      await this.dispatch(x, route);
    } catch (e) {
      if (e instanceof ApiError) {
        const { status, code } = ociFromApiError(e);
        ociError(x, status, code, e.message);
        return;
      }
      if (x.req.socket.destroyed) return; // the client went away mid-request: nothing to answer
      this.s.log(`${route.key}: internal error: ${(e as Error).stack ?? String(e)}`);
      if (x.res.headersSent) x.req.socket.destroy();
      else ociError(x, 500, 'UNKNOWN', `internal error: ${(e as Error).message}`);
    }
  }

  private async dispatch(x: Exchange, route: RegistryRoute): Promise<void> {
    const method = x.req.method ?? 'GET';
    const auth = this.s.tokens.check(x.req.headers.authorization);
    if (auth !== 'ok') {
      x.req.resume();
      const message =
        auth === 'expired'
          ? 'Your authorization token has expired. Reauthenticate and try again.'
          : auth === 'missing'
            ? 'authentication required'
            : `invalid credentials (the user is ${TOKEN_USER}, the password comes from GetAuthorizationToken)`;
      ociError(x, 401, auth === 'missing' ? 'UNAUTHORIZED' : 'DENIED', message, undefined, {
        'www-authenticate': this.realm(),
      });
      return;
    }
    if (route.kind === 'base') {
      x.req.resume();
      if (method !== 'GET' && method !== 'HEAD')
        return ociError(x, 405, 'UNSUPPORTED', `${method} /v2/ is not supported`);
      return reply(x, 200, { ...COMMON, 'content-type': 'application/json' }, '{}');
    }
    if (route.kind === 'unknown' || route.name === undefined) {
      x.req.resume();
      return ociError(x, 404, 'UNSUPPORTED', `no such endpoint: ${method} ${x.url.pathname}`);
    }
    const name = route.name;
    if (!REPOSITORY_NAME.test(name)) {
      x.req.resume();
      return ociError(x, 400, 'NAME_INVALID', `invalid repository name '${name}'`);
    }
    const repo = this.s.storage.get(name);
    if (!repo) {
      if (this.opts.missingRepository === 'close' && method !== 'GET' && method !== 'HEAD') {
        x.req.socket.destroy();
        return;
      }
      x.req.resume();
      return ociError(
        x,
        404,
        'NAME_UNKNOWN',
        `The repository with name '${name}' does not exist in the registry with id '${this.s.registryId}'`,
      );
    }
    switch (`${method} ${route.kind}`) {
      case 'GET blob':
      case 'HEAD blob':
        return this.getBlob(x, repo, route.arg!);
      case 'POST upload':
        return this.startUpload(x, repo);
      case 'PATCH upload':
        return this.patchUpload(x, repo, route.arg!);
      case 'PUT upload':
        return this.finishUpload(x, repo, route.arg!);
      case 'GET upload':
        return this.uploadStatus(x, repo, route.arg!);
      case 'DELETE upload':
        return this.cancelUpload(x, repo, route.arg!);
      case 'GET manifest':
      case 'HEAD manifest':
        return this.getManifest(x, repo, route.arg!);
      case 'PUT manifest':
        return this.putManifest(x, repo, route.arg!);
      case 'GET tags':
        return this.tags(x, repo);
      case 'GET referrers':
        return this.referrers(x, repo, route.arg!);
      default:
        x.req.resume();
        return ociError(x, 405, 'UNSUPPORTED', `${method} is not supported on this endpoint`);
    }
  }

  private async getBlob(x: Exchange, repo: Repository, d: string): Promise<void> {
    x.req.resume();
    if (!isDigest(d)) return ociError(x, 400, 'DIGEST_INVALID', `invalid digest '${d}'`);
    const size = await this.s.storage.blobSize(repo, d);
    if (size === undefined)
      return ociError(x, 404, 'BLOB_UNKNOWN', `blob ${d} is not in repository ${repo.name}`, { digest: d });
    const headers: Record<string, string | number> = {
      ...COMMON,
      'content-type': 'application/octet-stream',
      'docker-content-digest': d,
      etag: `"${d}"`,
      'accept-ranges': 'bytes',
    };
    let start = 0;
    let end = size - 1;
    let status = 200;
    const range = x.req.headers.range;
    if (range !== undefined && x.req.method === 'GET') {
      const m = /^bytes=(\d*)-(\d*)$/.exec(range.trim());
      let ok = m !== null && (m[1] !== '' || m[2] !== '');
      if (m && ok) {
        if (m[1] === '') {
          start = Math.max(0, size - Number(m[2]));
        } else {
          start = Number(m[1]);
          if (m[2] !== '') end = Math.min(end, Number(m[2]));
        }
        ok = start <= end && start < size;
      }
      if (!ok) return reply(x, 416, { ...COMMON, 'content-range': `bytes */${size}` });
      status = 206;
      headers['content-range'] = `bytes ${start}-${end}/${size}`;
    }
    headers['content-length'] = size === 0 ? 0 : end - start + 1;
    if (x.req.method === 'HEAD' || size === 0 || x.dropResponse) return reply(x, status, headers);
    x.status = status;
    x.res.writeHead(status, headers);
    try {
      await pipeline(createReadStream(repo.blobPath(d), { start, end }), x.res);
    } catch {
      x.req.socket.destroy();
    }
  }

  private async startUpload(x: Exchange, repo: Repository): Promise<void> {
    const q = x.url.searchParams;
    const mount = q.get('mount');
    const from = q.get('from');
    if (mount !== null && from !== null && this.opts.blobMounting && isDigest(mount) && REPOSITORY_NAME.test(from)) {
      const src = this.s.storage.get(from);
      if (src && (await this.s.storage.blobSize(src, mount)) !== undefined) {
        x.req.resume();
        await this.s.storage.mountBlob(src, repo, mount);
        return reply(x, 201, {
          ...COMMON,
          location: `/v2/${repo.name}/blobs/${mount}`,
          'docker-content-digest': mount,
        });
      }
    }
    const digest = q.get('digest');
    if (digest !== null) {
      if (!isSha256Digest(digest)) {
        x.req.resume();
        return ociError(x, 400, 'DIGEST_INVALID', `invalid or unsupported digest '${digest}' (sha256 only)`);
      }
      const u = await this.s.uploads.create(repo.name, 'registry');
      return u.exclusive(async () => {
        try {
          await u.appendStream(x.req);
        } catch (e) {
          await this.s.uploads.drop(u);
          throw e;
        }
        return this.commit(x, repo, u, digest, false);
      });
    }
    x.req.resume();
    const u = await this.s.uploads.create(repo.name, 'registry');
    return reply(x, 202, { ...uploadHeaders(repo.name, u), range: '0-0' });
  }

  private session(x: Exchange, repo: Repository, id: string): Upload | undefined {
    const u = this.s.uploads.get(id, repo.name, 'registry');
    if (!u) {
      x.req.resume();
      ociError(x, 404, 'BLOB_UPLOAD_UNKNOWN', `upload ${id} is unknown to repository ${repo.name}`);
    }
    return u;
  }

  /** Checks a Content-Range against the session; false when it answered 416. */
  private checkRange(x: Exchange, repo: Repository, u: Upload): boolean {
    const cr = x.req.headers['content-range'];
    if (cr === undefined) return true;
    const m = /^(?:bytes )?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(cr.trim());
    const len = x.req.headers['content-length'];
    if (
      !m ||
      Number(m[1]) !== u.size ||
      Number(m[2]) < Number(m[1]) ||
      (len !== undefined && Number(len) !== Number(m[2]) - Number(m[1]) + 1)
    ) {
      x.req.resume();
      ociError(
        x,
        416,
        'BLOB_UPLOAD_INVALID',
        `Content-Range ${cr} does not continue the upload (next byte: ${u.size})`,
        undefined,
        uploadHeaders(repo.name, u),
      );
      return false;
    }
    return true;
  }

  private async patchUpload(x: Exchange, repo: Repository, id: string): Promise<void> {
    const u = this.session(x, repo, id);
    if (!u) return;
    return u.exclusive(async () => {
      if (u.closed)
        return ociError(x, 404, 'BLOB_UPLOAD_UNKNOWN', `upload ${id} is unknown to repository ${repo.name}`);
      if (!this.checkRange(x, repo, u)) return;
      await u.appendStream(x.req);
      return reply(x, 202, uploadHeaders(repo.name, u));
    });
  }

  private async finishUpload(x: Exchange, repo: Repository, id: string): Promise<void> {
    const u = this.session(x, repo, id);
    if (!u) return;
    const digest = x.url.searchParams.get('digest');
    return u.exclusive(async () => {
      if (u.closed) {
        x.req.resume();
        return ociError(x, 404, 'BLOB_UPLOAD_UNKNOWN', `upload ${id} is unknown to repository ${repo.name}`);
      }
      if (digest === null || !isSha256Digest(digest)) {
        x.req.resume();
        return ociError(
          x,
          400,
          'DIGEST_INVALID',
          digest === null
            ? 'the closing PUT needs ?digest='
            : `invalid or unsupported digest '${digest}' (sha256 only)`,
        );
      }
      if (!this.checkRange(x, repo, u)) return;
      await u.appendStream(x.req);
      return this.commit(x, repo, u, digest, true);
    });
  }

  /** Verifies and moves a finished upload into place (inside the session's lock). */
  private async commit(x: Exchange, repo: Repository, u: Upload, digest: Digest, chunked: boolean): Promise<void> {
    if (chunked) {
      const small = u.chunks.slice(0, -1).findIndex((n) => n < MIN_PART_SIZE);
      if (small >= 0) {
        await this.s.uploads.drop(u);
        return ociError(
          x,
          400,
          'BLOB_UPLOAD_INVALID',
          `chunk ${small + 1} has ${u.chunks[small]!} bytes: every chunk but the last must have at least ${MIN_PART_SIZE} (ECR)`,
        );
      }
    }
    const computed = u.digest();
    if (computed !== digest) {
      await this.s.uploads.drop(u);
      return ociError(x, 400, 'DIGEST_INVALID', `the uploaded content has digest ${computed}, not ${digest}`, {
        digest,
      });
    }
    this.s.uploads.forget(u);
    try {
      await u.finish();
      await this.s.storage.commitBlob(repo, u.path, computed);
    } catch (e) {
      await u.discard();
      throw e;
    }
    return reply(x, 201, {
      ...COMMON,
      location: `/v2/${repo.name}/blobs/${computed}`,
      'docker-content-digest': computed,
    });
  }

  private uploadStatus(x: Exchange, repo: Repository, id: string): void {
    const u = this.session(x, repo, id);
    if (!u) return;
    x.req.resume();
    reply(x, 204, uploadHeaders(repo.name, u));
  }

  private async cancelUpload(x: Exchange, repo: Repository, id: string): Promise<void> {
    const u = this.session(x, repo, id);
    if (!u) return;
    x.req.resume();
    await u.exclusive(() => this.s.uploads.drop(u));
    reply(x, 204, COMMON);
  }

  private async getManifest(x: Exchange, repo: Repository, ref: string): Promise<void> {
    x.req.resume();
    const d = isDigest(ref)
      ? resolveImage(repo, { imageDigest: ref })
      : isTag(ref)
        ? resolveImage(repo, { imageTag: ref })
        : undefined;
    if (d === undefined)
      return ociError(x, 404, 'MANIFEST_UNKNOWN', `manifest ${ref} is not in repository ${repo.name}`, {
        reference: ref,
      });
    const img = repo.images.get(d)!;
    const bytes = await this.s.storage.readBlob(repo, d);
    reply(x, 200, { ...COMMON, 'content-type': img.mediaType, 'docker-content-digest': d, etag: `"${d}"` }, bytes);
  }

  private async putManifest(x: Exchange, repo: Repository, ref: string): Promise<void> {
    const byDigest = isDigest(ref);
    if (!byDigest && !isTag(ref)) {
      x.req.resume();
      return ociError(x, 400, 'TAG_INVALID', `invalid tag '${ref}'`);
    }
    let bytes: Buffer;
    try {
      bytes = await readBody(x.req, MAX_MANIFEST);
    } catch (e) {
      if (e instanceof BodyTooLarge)
        return ociError(x, 413, 'SIZE_INVALID', `manifest larger than ${MAX_MANIFEST} bytes`);
      throw e;
    }
    const ct = (x.req.headers['content-type'] ?? '').split(';')[0]!.trim();
    const mediaType = ct === '' || ct === 'application/octet-stream' ? undefined : ct;
    if (byDigest && digestAlgorithm(ref) !== 'sha256')
      return ociError(x, 400, 'DIGEST_INVALID', 'only sha256 manifest digests are supported');
    const r = await putImage(
      this.s.storage,
      repo,
      { bytes, mediaType, ...(byDigest ? { digest: ref } : { tag: ref }) },
      this.s.registryId,
    );
    reply(x, 201, {
      ...COMMON,
      location: `/v2/${repo.name}/manifests/${r.digest}`,
      'docker-content-digest': r.digest,
      ...(r.doc.subject ? { 'oci-subject': r.doc.subject.digest } : {}),
    });
  }

  private tags(x: Exchange, repo: Repository): void {
    x.req.resume();
    const q = x.url.searchParams;
    let all = [...repo.tags.keys()].sort();
    const last = q.get('last');
    if (last !== null) all = all.filter((t) => t > last);
    const nRaw = q.get('n');
    let link: string | undefined;
    if (nRaw !== null) {
      const n = Number(nRaw);
      if (!Number.isInteger(n) || n < 0) return ociError(x, 400, 'PAGINATION_NUMBER_INVALID', `invalid n=${nRaw}`);
      if (all.length > n) {
        all = all.slice(0, n);
        if (n > 0)
          link = `</v2/${repo.name}/tags/list?n=${n}&last=${encodeURIComponent(all[all.length - 1]!)}>; rel="next"`;
      }
    }
    reply(
      x,
      200,
      { ...COMMON, 'content-type': 'application/json', ...(link ? { link } : {}) },
      JSON.stringify({ name: repo.name, tags: all }),
    );
  }

  private async referrers(x: Exchange, repo: Repository, d: string): Promise<void> {
    x.req.resume();
    if (!isDigest(d)) return ociError(x, 400, 'DIGEST_INVALID', `invalid digest '${d}'`);
    const filter = x.url.searchParams.get('artifactType');
    const manifests: Record<string, unknown>[] = [];
    for (const img of repo.images.values()) {
      let info;
      try {
        info = await this.s.storage.manifestInfo(repo, img);
      } catch {
        continue;
      }
      if (info.subject?.digest !== d) continue;
      const artifactType = info.artifactType ?? info.config?.mediaType;
      if (filter !== null && artifactType !== filter) continue;
      manifests.push({
        mediaType: img.mediaType,
        digest: img.digest,
        size: img.size,
        ...(artifactType ? { artifactType } : {}),
        annotations: info.annotations,
      });
    }
    reply(
      x,
      200,
      {
        ...COMMON,
        'content-type': MediaType.OciIndex,
        ...(filter !== null ? { 'oci-filters-applied': 'artifactType' } : {}),
      },
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OciIndex, manifests }),
    );
  }
}

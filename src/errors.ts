/**
 * Every failure lading reports is a LadingError with a stable `code`: scripts and the
 * CDK handler branch on the code, people read the one-line message.
 */
export type ErrorCode =
  // usage (exit code 2)
  | 'USAGE'
  // archive structure
  | 'NOT_A_TAR'
  | 'TRUNCATED'
  | 'UNSUPPORTED_COMPRESSION'
  | 'DECOMPRESSION_FAILED'
  | 'NO_MANIFEST'
  | 'BAD_MANIFEST'
  | 'BAD_JSON'
  | 'JSON_TOO_LARGE'
  | 'BLOB_MISSING'
  | 'DIGEST_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'DIFF_ID_MISMATCH'
  | 'UNSAFE_PATH'
  | 'SYMLINK_ESCAPE'
  | 'SYMLINK_LOOP'
  | 'DUPLICATE_ENTRY'
  | 'INDEX_CYCLE'
  | 'UNSUPPORTED_SCHEMA'
  | 'BAD_DIGEST'
  | 'BAD_DESCRIPTOR'
  | 'BAD_PLATFORM'
  | 'BAD_REFERENCE'
  | 'IMAGE_NOT_FOUND'
  | 'AMBIGUOUS_IMAGE'
  | 'PLATFORM_NOT_FOUND'
  | 'LIMIT_EXCEEDED'
  | 'ZSTD_UNAVAILABLE'
  | 'IO'
  // registries and transfers
  | 'REGISTRY'
  | 'AUTH'
  | 'NETWORK'
  | 'PROXY'
  | 'TLS'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'ABORTED'
  | 'INTERNAL';

/**
 * What the user can do about an error, named rather than worded: the library's messages are
 * about the image, and each front end says the remedy in its own terms (the CLI names its
 * flags, the CDK handler the construct's props). See `remedyText` in each.
 */
export type Remedy =
  /** The input holds several images: choose one. */
  | 'choose-image'
  /** Some platforms (or an index's artifacts) cannot be pushed: push the platforms that can be. */
  | 'choose-platforms'
  /** The copy stopped part way; what is in place is kept, and running it again resumes. */
  | 'run-again';

export class LadingError extends Error {
  readonly code: ErrorCode;
  /** Extra facts for `--json` and `--debug` output (never secrets). */
  readonly details: Record<string, unknown> | undefined;
  readonly remedy: Remedy | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; details?: Record<string, unknown>; remedy?: Remedy },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'LadingError';
    this.code = code;
    this.details = options?.details;
    this.remedy = options?.remedy;
  }

  /** Usage errors exit 2, like every well-behaved CLI; everything else exits 1. */
  get exitCode(): number {
    return this.code === 'USAGE' ? 2 : 1;
  }
}

export function isLadingError(e: unknown): e is LadingError {
  return e instanceof LadingError;
}

/** Wraps a foreign error (fs, zlib, network) into a LadingError that says where it happened. */
export function asLadingError(e: unknown, code: ErrorCode, where: string): LadingError {
  if (e instanceof LadingError) return e;
  const msg = e instanceof Error ? e.message : String(e);
  return new LadingError(code, `${where}: ${msg}`, { cause: e });
}

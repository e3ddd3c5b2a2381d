/**
 * An error the emulator answers with. `type` is the ECR error shape name
 * (`LayersNotFoundException`...); the OCI side maps it to a distribution error code.
 */
export class ApiError extends Error {
  constructor(
    readonly type: string,
    message: string,
    /** HTTP status on the ECR API: 400 for client errors, 500 for ServerException. */
    readonly status = 400,
    /** Extra members of the error shape (InvalidLayerPartException.lastValidByteReceived...). */
    readonly fields: Record<string, unknown> = {},
  ) {
    super(message);
    this.name = type;
  }
}

/** ECR error shapes as OCI distribution errors, for rules the two APIs share (PutImage = PUT manifest). */
const OCI: Record<string, [status: number, code: string]> = {
  RepositoryNotFoundException: [404, 'NAME_UNKNOWN'],
  InvalidParameterException: [400, 'MANIFEST_INVALID'],
  ImageDigestDoesNotMatchException: [400, 'DIGEST_INVALID'],
  LayersNotFoundException: [400, 'MANIFEST_BLOB_UNKNOWN'],
  ReferencedImagesNotFoundException: [400, 'MANIFEST_BLOB_UNKNOWN'],
  ImageTagAlreadyExistsException: [400, 'TAG_INVALID'],
  LimitExceededException: [400, 'DENIED'],
  ServerException: [500, 'UNKNOWN'],
};

export function ociFromApiError(e: ApiError): { status: number; code: string } {
  const m = OCI[e.type] ?? [e.status >= 500 ? 500 : 400, 'UNKNOWN'];
  return { status: m[0], code: m[1] };
}

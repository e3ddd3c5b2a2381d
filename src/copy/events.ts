import type { Digest } from '../image/digest';

/** Progress of a copy, emitted by the engine, rendered by the CLI, logged by the CDK handler. */
export type CopyEvent =
  | { type: 'plan'; blobs: number; bytes: number; manifests: number }
  | { type: 'blob-start'; id: string; label: string; size: number | undefined; action: 'upload' | 'compress+upload' }
  | { type: 'blob-progress'; id: string; bytes: number }
  | {
      type: 'blob-skip';
      id: string;
      label: string;
      digest: Digest;
      size: number;
      reason: 'exists' | 'cached' | 'mounted';
    }
  | { type: 'blob-done'; id: string; digest: Digest; size: number }
  | { type: 'manifest'; digest: Digest; mediaType: string; tag: string | undefined };

export type CopyEventListener = (e: CopyEvent) => void;

/**
 * What the TarballImage construct sends to its synth-time archive check (synth-check.ts, run in
 * a child process) and what it reads back. Types only, importing nothing: the construct imports
 * this file, and the jsii package (packages/lading-cdk) compiles the construct without the core.
 */
export interface SynthCheckRequest {
  tarball: string;
  imageName?: string;
  platform?: string;
  verify: boolean;
}

export interface SynthCheckManifest {
  platform: string | null;
  attestation: boolean;
  mediaType: string;
  /** Stored compression of each layer: 'none' | 'gzip' | 'zstd' | 'unknown' (foreign...). */
  layers: string[];
}

export type SynthCheckResponse =
  | {
      ok: {
        format: string;
        compression: string;
        names: string[];
        mediaType: string;
        /** true: the whole stored index is pushed (no platform chosen). */
        all: boolean;
        manifests: SynthCheckManifest[];
      };
    }
  | { error: { code: string; message: string } };

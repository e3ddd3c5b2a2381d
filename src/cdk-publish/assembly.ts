import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import {
  ArtifactType,
  Manifest,
  type AssemblyManifest,
  type AssetManifest,
  type DockerImageAsset,
} from '@aws-cdk/cloud-assembly-schema';
import { LadingError } from '../errors';
import { parseExecutable } from './executable';

/** A stack of the cloud assembly (nested assemblies included). */
export interface StackInfo {
  /** Artifact id. */
  id: string;
  /** Hierarchical id, `Stage/Stack` for a stack in a stage: what `cdk deploy` patterns match. */
  displayName: string;
  /** The CloudFormation stack name. */
  stackName: string;
  /** aws://ACCOUNT/REGION, unknown-account / unknown-region for environment-agnostic stacks. */
  environment: string | undefined;
}

/** One docker image asset of one asset manifest, to one destination. */
export interface ImageAssetEntry {
  /** The asset id (its source hash). */
  assetId: string;
  displayName: string | undefined;
  /** The destination id inside the asset (`current_account-current_region`, `ACCOUNT-REGION-hash`). */
  destinationId: string;
  destination: DockerImageAsset['destinations'][string];
  /** Stacks whose deployment needs this asset (display names). */
  stacks: string[];
  manifestFile: string;
  /** What to publish: an image archive, or the reason lading leaves this asset alone. */
  source: { kind: 'archive'; path: string; tool: string; lookedIn: string[] } | { kind: 'skip'; reason: string };
}

export interface AssemblyPlan {
  directory: string;
  stacks: StackInfo[];
  assets: ImageAssetEntry[];
}

function loadAssembly(dir: string): AssemblyManifest {
  const file = join(dir, 'manifest.json');
  if (!existsSync(file)) {
    throw new LadingError(
      'NOT_FOUND',
      `${dir} is not a cloud assembly (no manifest.json there): run "cdk synth" first, or name the assembly directory (lading cdk publish DIR)`,
    );
  }
  try {
    // A newer CDK may write a newer schema version; what we read (artifacts, asset manifests) is stable.
    return Manifest.loadAssemblyManifest(file, { skipVersionCheck: true, skipEnumCheck: true, topoSort: false });
  } catch (e) {
    throw new LadingError('BAD_MANIFEST', `${file}: cannot read the cloud assembly manifest: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

function loadAssets(file: string, logger?: (line: string) => void): AssetManifest {
  try {
    return Manifest.loadAssetManifest(file);
  } catch (e) {
    // The schema package refuses versions newer than its own: the fields we use have not changed.
    if (/version/i.test((e as Error).message)) {
      logger?.(`${file}: ${(e as Error).message}; reading it without the version check`);
      try {
        return JSON.parse(readFileSync(file, 'utf8')) as AssetManifest;
      } catch {
        // fall through to the original error
      }
    }
    throw new LadingError('BAD_MANIFEST', `${file}: cannot read the asset manifest: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * Candidate locations of an archive named in an asset's executable. The CDK CLI runs the
 * executable in the asset manifest's directory; TarballImageAsset writes the path relative
 * to the root assembly (aws/aws-cdk#24827), so inside a Stage the two differ: both are tried,
 * the manifest's directory first, then each directory up to the root.
 */
function archiveCandidates(path: string, manifestDir: string, root: string): string[] {
  if (isAbsolute(path)) return [path];
  const out = [resolve(manifestDir, path)];
  let d = manifestDir;
  while (d !== root && d.startsWith(root) && dirname(d) !== d) {
    d = dirname(d);
    out.push(resolve(d, path));
  }
  return [...new Set(out)];
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/**
 * Reads a cloud assembly and every nested one: its stacks and, for each asset manifest, the
 * docker image assets with the stacks that depend on them. Nothing is read from the network.
 */
export function readAssembly(
  directory: string,
  opts: { env?: NodeJS.ProcessEnv; logger?: (line: string) => void } = {},
): AssemblyPlan {
  const root = resolve(directory);
  if (!existsSync(root))
    throw new LadingError(
      'NOT_FOUND',
      `${directory}: no such directory; run "cdk synth" first, or name the cloud assembly directory`,
    );
  const stacks: StackInfo[] = [];
  const assets: ImageAssetEntry[] = [];
  const seenDirs = new Set<string>();

  const visit = (dir: string): void => {
    if (seenDirs.has(dir)) return;
    seenDirs.add(dir);
    const manifest = loadAssembly(dir);
    const artifacts = manifest.artifacts ?? {};
    // Which stacks need which asset manifest.
    const users = new Map<string, string[]>();
    for (const [id, a] of Object.entries(artifacts)) {
      if (a.type !== ArtifactType.AWS_CLOUDFORMATION_STACK) continue;
      const props = (a.properties ?? {}) as { stackName?: string };
      const info: StackInfo = {
        id,
        displayName: a.displayName ?? id,
        stackName: props.stackName ?? id,
        environment: a.environment,
      };
      stacks.push(info);
      for (const dep of a.dependencies ?? []) users.set(dep, [...(users.get(dep) ?? []), info.displayName]);
    }
    for (const [id, a] of Object.entries(artifacts)) {
      if (a.type === ArtifactType.NESTED_CLOUD_ASSEMBLY) {
        const props = a.properties as { directoryName?: string } | undefined;
        if (props?.directoryName) visit(resolve(dir, props.directoryName));
        continue;
      }
      if (a.type !== ArtifactType.ASSET_MANIFEST) continue;
      const file = resolve(dir, (a.properties as { file: string }).file);
      const am = loadAssets(file, opts.logger);
      for (const [assetId, asset] of Object.entries(am.dockerImages ?? {})) {
        const source = classify(asset, dirname(file), root, opts.env);
        for (const [destinationId, destination] of Object.entries(asset.destinations ?? {})) {
          assets.push({
            assetId,
            displayName: asset.displayName,
            destinationId,
            destination,
            stacks: users.get(id) ?? [],
            manifestFile: file,
            source,
          });
        }
      }
    }
  };
  visit(root);
  return { directory: root, stacks, assets };
}

function classify(
  asset: DockerImageAsset,
  manifestDir: string,
  root: string,
  env?: NodeJS.ProcessEnv,
): ImageAssetEntry['source'] {
  const s = asset.source ?? {};
  if (s.executable && s.executable.length > 0) {
    // CDK_DOCKER matters at synth time only (its value is already in the script); expand it anyway.
    const parsed = parseExecutable(s.executable, env ?? {});
    if (parsed.kind === 'other') return { kind: 'skip', reason: parsed.reason };
    const lookedIn = archiveCandidates(parsed.path, manifestDir, root);
    const found = lookedIn.find(isFile);
    return { kind: 'archive', path: found ?? lookedIn[0]!, tool: parsed.tool, lookedIn };
  }
  if (s.directory !== undefined) {
    return {
      kind: 'skip',
      reason: `built from the directory ${s.directory}${s.dockerFile ? ` (${s.dockerFile})` : ''}: needs docker; cdk deploy builds it`,
    };
  }
  return { kind: 'skip', reason: 'the asset names neither a directory nor an executable' };
}

/** Glob matching as the CDK CLI does for stack patterns: `*` and `?` stay within a path component, `**` crosses them. */
export function stackPatternMatches(pattern: string, name: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`).test(name);
}

export function stackSelected(stack: StackInfo, patterns: readonly string[]): boolean {
  return patterns.some(
    (p) =>
      stackPatternMatches(p, stack.displayName) ||
      stackPatternMatches(p, stack.stackName) ||
      stackPatternMatches(p, stack.id),
  );
}

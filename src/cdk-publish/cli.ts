import { DigestCache } from '../compress/cache';
import { parseCommandArgs, strings, usageError, type CommandContext } from '../command/context';
import type { AssetResult, PublishReport } from './publish';

export const cdkHelp = `Usage: lading cdk publish [ASSEMBLY_DIR] [options]

Publish the image-archive assets of a synthesized CDK app (cdk.out) to Amazon ECR, natively:
no docker. Then "cdk deploy --app cdk.out" finds every such image already published and runs
no docker either.

  npx cdk synth && npx lading cdk publish && npx cdk deploy --app cdk.out

Reads the cloud assembly (nested stages too) and every asset manifest. Publishes the docker
image assets that load an image archive (aws-cdk-lib TarballImageAsset, ecs.ContainerImage.fromTarball);
lists the others (directory builds, which need docker) as skipped. Each asset goes to its
destination's repositoryName:imageTag, as the CDK CLI would put it: placeholders resolved with
STS GetCallerIdentity and the region, the destination's role assumed (with its external ID and
additional options). A tag already in the repository is left alone.

ASSEMBLY_DIR defaults to cdk.out.

Options:
  --stack PATTERN       only the assets of these stacks (repeatable); globs as in cdk deploy,
                        over hierarchical ids (Stage/Stack), stack names and artifact ids
  --profile P           AWS profile (default: AWS_PROFILE, then the default credential chain)
  --region R            default region, for environment-agnostic stacks (default: AWS_REGION,
                        AWS_DEFAULT_REGION, the profile's, us-east-1)
  --no-assume-role      publish with your own credentials, not the destinations' publishing roles
  --concurrency N       images published at once (default 2; 3 blobs in flight per image)
  --dry-run             resolve and check every destination; publish nothing
  --json                print one JSON document describing every asset
  --no-cache            do not use or update the compressed-digest cache
  --endpoint-url URL    ECR API endpoint (e.g. lading serve); AWS_ENDPOINT_URL_ECR is honoured
  --sts-endpoint-url URL  STS endpoint; AWS_ENDPOINT_URL_STS is honoured
  -q, --quiet           print only failures and the summary
  --debug               log decisions and requests (no secrets), stack traces on error

Exit codes: 0 every asset published, already there or skipped; 1 an asset failed (after
trying them all) or the assembly could not be read; 2 usage error.
`;

const publishOptions = {
  stack: { type: 'string', multiple: true },
  profile: { type: 'string' },
  region: { type: 'string' },
  'no-assume-role': { type: 'boolean' },
  concurrency: { type: 'string' },
  'dry-run': { type: 'boolean' },
  json: { type: 'boolean' },
  'no-cache': { type: 'boolean' },
  'endpoint-url': { type: 'string' },
  'sts-endpoint-url': { type: 'string' },
  quiet: { type: 'boolean', short: 'q' },
} as const;

const LABEL: Record<AssetResult['status'], string> = {
  published: 'published',
  exists: 'exists',
  'would-publish': 'would publish',
  skipped: 'skipped',
  failed: 'failed',
};

function name(r: AssetResult): string {
  const stacks = r.stacks.length > 0 ? r.stacks.join(', ') : '(no stack)';
  return `${stacks}: ${r.displayName ?? r.asset.slice(0, 12)}`;
}

export function renderReport(report: PublishReport, quiet: boolean): string[] {
  const lines: string[] = [];
  for (const r of report.assets) {
    if (quiet && r.status !== 'failed') continue;
    const where = r.imageUri ?? `${r.repositoryName}:${r.imageTag}`;
    switch (r.status) {
      case 'published':
      case 'exists':
      case 'would-publish':
        lines.push(
          `${LABEL[r.status].padEnd(13)} ${name(r)} -> ${where}${r.digest ? ` (${r.digest})` : ''}${r.status === 'exists' && r.reason?.startsWith('another') ? ` [${r.reason}]` : ''}`,
        );
        break;
      case 'skipped':
        lines.push(`${LABEL.skipped.padEnd(13)} ${name(r)}: ${r.reason ?? ''}`);
        break;
      case 'failed':
        lines.push(`${LABEL.failed.padEnd(13)} ${r.error?.message ?? name(r)}`);
        break;
    }
  }
  const s = report.summary;
  const parts = [`${s.published} published`, `${s.exists} already there`];
  if (report.dryRun) parts.push(`${s['would-publish']} to publish`);
  parts.push(`${s.skipped} skipped`, `${s.failed} failed`);
  lines.push(`${report.dryRun ? 'dry run: ' : ''}${parts.join(', ')}`);
  return lines;
}

async function runPublish(ctx: CommandContext, args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, publishOptions);
  if (values.help) {
    ctx.stdout(cdkHelp);
    return 0;
  }
  if (positionals.length > 1) throw usageError('cdk publish takes at most one ASSEMBLY_DIR', 'cdk publish');
  let concurrency: number | undefined;
  if (values.concurrency !== undefined) {
    concurrency = Number(values.concurrency);
    if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 32)
      throw usageError('--concurrency must be an integer from 1 to 32', 'cdk publish');
  }
  const str = (v: unknown): string | undefined => (v === undefined ? undefined : String(v));
  const profile = str(values.profile) ?? (ctx.env.AWS_PROFILE || undefined);
  const region = str(values.region);
  const ecrEndpoint = str(values['endpoint-url']);
  const stsEndpoint = str(values['sts-endpoint-url']);
  const json = values.json === true;
  const quiet = values.quiet === true || json;
  // Loaded on use: the AWS SDK clients and the schema package stay out of other commands' start-up.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { publishAssembly } = require('./publish') as typeof import('./publish');
  const report = await publishAssembly({
    assembly: positionals[0] ?? 'cdk.out',
    stacks: strings(values.stack),
    concurrency,
    dryRun: values['dry-run'] === true,
    aws: {
      assumeRole: values['no-assume-role'] !== true,
      env: ctx.env,
      ...(profile ? { profile } : {}),
      ...(region ? { region } : {}),
      ...(ecrEndpoint ? { ecrEndpoint } : {}),
      ...(stsEndpoint ? { stsEndpoint } : {}),
    },
    cache: values['no-cache'] ? null : new DigestCache(DigestCache.defaultFile(ctx.env)),
    signal: ctx.signal,
    progress: quiet ? undefined : (line: string) => ctx.stderr(line),
    warn: (line: string) => ctx.stderr(`warning: ${line}`),
    logger: ctx.debug,
  });
  if (json) ctx.stdout(JSON.stringify(report, null, 2));
  else for (const line of renderReport(report, values.quiet === true)) ctx.stdout(line);
  return report.summary.failed > 0 ? 1 : 0;
}

/** `lading cdk SUBCOMMAND`: only `publish` for now. */
export async function runCdk(ctx: CommandContext, args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === undefined || sub === '--help' || sub === '-h' || sub === 'help') {
    ctx.stdout(cdkHelp);
    return sub === undefined ? 2 : 0;
  }
  if (sub === 'publish') return runPublish(ctx, rest);
  throw usageError(`unknown cdk command "${sub}" (cdk commands: publish)`, 'cdk');
}

import { userInfo } from 'node:os';
import { ECRClient } from '@aws-sdk/client-ecr';
import {
  AssumeRoleCommand,
  GetCallerIdentityCommand,
  STSClient,
  type AssumeRoleCommandInput,
} from '@aws-sdk/client-sts';
import type { DockerImageDestination } from '@aws-cdk/cloud-assembly-schema';
import { LadingError } from '../errors';
import { Network } from '../net/network';
import { awsTransportFailure } from '../net/tls-errors';

export interface AwsOptions {
  profile?: string;
  /** Default region (--region); else AWS_REGION, AWS_DEFAULT_REGION, the profile's, us-east-1 (as the CDK CLI). */
  region?: string;
  /** ECR API endpoint (lading serve, a VPC endpoint); default AWS_ENDPOINT_URL_ECR, then the SDK's. */
  ecrEndpoint?: string;
  /** STS endpoint; default AWS_ENDPOINT_URL_STS, then the SDK's. */
  stsEndpoint?: string;
  /** false: never AssumeRole; use the base credentials for every destination (--no-assume-role). */
  assumeRole: boolean;
  env: NodeJS.ProcessEnv;
  /** Proxies and CAs for STS and ECR. @default from `env` */
  network?: Network;
  logger?: (line: string) => void;
  warn?: (line: string) => void;
}

export interface Caller {
  account: string;
  arn: string;
  partition: string;
}

/** A destination with every placeholder replaced. */
export interface ResolvedDestination {
  repositoryName: string;
  imageTag: string;
  region: string;
  assumeRoleArn?: string;
  assumeRoleExternalId?: string;
  assumeRoleAdditionalOptions?: Record<string, unknown>;
  /** The account the destination is meant for (from its role ARN), when it names one. */
  account?: string;
}

/** Credentials for a destination and the account they act in. */
export interface Session {
  /** What the credentials are: "assumed role ARN" or "base credentials". */
  identity: string;
  /** The account whose registry receives the image (the role's, else the caller's). */
  account: string;
  partition: string;
  ecr: ECRClient;
}

type Identity = { accessKeyId: string; secretAccessKey: string; sessionToken?: string; expiration?: Date };

/** The session name the CDK CLI uses: `aws-cdk-<user name>`, invalid characters replaced by `@`. */
export function cdkSessionName(): string {
  let name: string;
  try {
    name = userInfo().username.replace(/[^\w+=,.@-]/g, '@');
  } catch {
    name = 'noname';
  }
  return `aws-cdk-${name}`.slice(0, 64);
}

function partitionOfRegion(region: string): string {
  if (region.startsWith('cn-')) return 'aws-cn';
  if (region.startsWith('us-gov-')) return 'aws-us-gov';
  if (region.startsWith('us-iso-')) return 'aws-iso';
  if (region.startsWith('us-isob-')) return 'aws-iso-b';
  return 'aws';
}

/** The registry host of an account and region, for image URIs. */
export function ecrHost(account: string, region: string, partition: string): string {
  return `${account}.dkr.ecr.${region}.${partition === 'aws-cn' ? 'amazonaws.com.cn' : 'amazonaws.com'}`;
}

function awsMessage(e: unknown): string {
  const err = e as { name?: string; message?: string };
  return `${err.name ?? 'Error'}: ${err.message ?? String(e)}`;
}

/**
 * The AWS side of `lading cdk publish`, as the CDK CLI does it: base credentials from the
 * default chain (or a profile); `${AWS::AccountId}`, `${AWS::Partition}` from STS
 * GetCallerIdentity and `${AWS::Region}` from the destination or the default region; the
 * destination's role assumed with its external ID and additional options (session tags
 * transitive), once per role.
 */
export class AwsEnvironment {
  private callerP: Promise<Caller> | undefined;
  private regionP: Promise<string> | undefined;
  private readonly sessions = new Map<string, Promise<Session>>();
  private readonly clients: { destroy(): void }[] = [];
  /** STS calls made, by action: tests and --debug read them. */
  readonly stsCalls: Record<string, number> = {};

  readonly network: Network;

  constructor(private readonly opts: AwsOptions) {
    this.network = opts.network ?? new Network({ env: opts.env });
  }

  private stsEndpoint(): string | undefined {
    return this.opts.stsEndpoint ?? this.opts.env.AWS_ENDPOINT_URL_STS ?? undefined;
  }

  private ecrEndpoint(): string | undefined {
    return this.opts.ecrEndpoint ?? this.opts.env.AWS_ENDPOINT_URL_ECR ?? undefined;
  }

  private sts(region: string): STSClient {
    const endpoint = this.stsEndpoint();
    const c = new STSClient({
      region,
      maxAttempts: 4,
      requestHandler: this.network.awsRequestHandler(),
      ...(this.opts.profile ? { profile: this.opts.profile } : {}),
      ...(endpoint ? { endpoint } : {}),
    });
    this.clients.push(c);
    return c;
  }

  defaultRegion(): Promise<string> {
    this.regionP ??= (async () => {
      const explicit = this.opts.region ?? this.opts.env.AWS_REGION ?? this.opts.env.AWS_DEFAULT_REGION;
      if (explicit) return explicit;
      try {
        // The SDK's own chain: environment, then the profile's region in ~/.aws/config.
        const probe = new STSClient({ ...(this.opts.profile ? { profile: this.opts.profile } : {}) });
        const r = await probe.config.region();
        probe.destroy();
        if (r) return r;
      } catch {
        // no region configured
      }
      this.opts.logger?.('no region configured (--region, AWS_REGION, profile): using us-east-1, as the CDK CLI does');
      return 'us-east-1';
    })();
    return this.regionP;
  }

  /** GetCallerIdentity with the base credentials, once. */
  caller(): Promise<Caller> {
    this.callerP ??= (async () => {
      const region = await this.defaultRegion();
      this.stsCalls.GetCallerIdentity = (this.stsCalls.GetCallerIdentity ?? 0) + 1;
      try {
        const out = await this.sts(region).send(new GetCallerIdentityCommand({}));
        const arn = out.Arn ?? '';
        const account = out.Account ?? '';
        if (!/^\d{12}$/.test(account)) throw new Error(`GetCallerIdentity returned the account "${account}"`);
        const partition = arn.split(':')[1] || partitionOfRegion(region);
        this.opts.logger?.(`caller: ${arn} (account ${account}, partition ${partition})`);
        return { account, arn, partition };
      } catch (e) {
        const transport = awsTransportFailure(e, 'STS GetCallerIdentity', 'the STS endpoint');
        if (transport) throw transport;
        const name = (e as { name?: string }).name;
        const hint =
          name === 'CredentialsProviderError'
            ? 'no AWS credentials found: configure them (aws configure, AWS_PROFILE or --profile, environment variables)'
            : awsMessage(e);
        throw new LadingError('AUTH', `cannot find out the current AWS account (STS GetCallerIdentity): ${hint}`, {
          cause: e,
        });
      }
    })();
    return this.callerP;
  }

  /** Replaces ${AWS::AccountId}, ${AWS::Region}, ${AWS::Partition} in every string of the destination. */
  async resolve(dest: DockerImageDestination): Promise<ResolvedDestination> {
    const region = dest.region !== undefined && !dest.region.includes('${') ? dest.region : await this.defaultRegion();
    const all = JSON.stringify(dest);
    const needsCaller = all.includes('${AWS::AccountId}') || all.includes('${AWS::Partition}');
    const caller = needsCaller ? await this.caller() : undefined;
    const replace = (v: unknown): unknown => {
      if (typeof v === 'string') {
        return v
          .replace(/\$\{AWS::Region\}/g, region)
          .replace(/\$\{AWS::AccountId\}/g, caller?.account ?? '')
          .replace(/\$\{AWS::Partition\}/g, caller?.partition ?? partitionOfRegion(region));
      }
      if (Array.isArray(v)) return v.map(replace);
      if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, replace(x)]));
      return v;
    };
    const r = replace(dest) as DockerImageDestination;
    const account = /^arn:[^:]+:iam::(\d{12}):role\//.exec(r.assumeRoleArn ?? '')?.[1];
    const assume = this.opts.assumeRole;
    return {
      account,
      repositoryName: r.repositoryName,
      imageTag: r.imageTag,
      region,
      assumeRoleArn: assume ? r.assumeRoleArn : undefined,
      assumeRoleExternalId: assume ? r.assumeRoleExternalId : undefined,
      assumeRoleAdditionalOptions: assume
        ? (r.assumeRoleAdditionalOptions as Record<string, unknown> | undefined)
        : undefined,
    };
  }

  /** Credentials and an ECR client for a resolved destination: one per role and region. */
  session(d: ResolvedDestination): Promise<Session> {
    const key = JSON.stringify([
      d.region,
      d.assumeRoleArn ?? null,
      d.assumeRoleExternalId ?? null,
      d.assumeRoleAdditionalOptions ?? null,
    ]);
    let s = this.sessions.get(key);
    if (!s) {
      s = this.open(d);
      this.sessions.set(key, s);
    }
    return s;
  }

  private ecr(region: string, credentials?: () => Promise<Identity>): ECRClient {
    const endpoint = this.ecrEndpoint();
    const c = new ECRClient({
      region,
      maxAttempts: 6,
      requestHandler: this.network.awsRequestHandler(),
      ...(credentials ? { credentials } : this.opts.profile ? { profile: this.opts.profile } : {}),
      ...(endpoint ? { endpoint } : {}),
    });
    this.clients.push(c);
    return c;
  }

  private async open(d: ResolvedDestination): Promise<Session> {
    if (!d.assumeRoleArn) {
      const caller = await this.caller();
      // As the CDK CLI: credentials for another account than the destination's would publish to the wrong registry.
      if (d.account !== undefined && d.account !== caller.account) {
        throw new LadingError(
          'AUTH',
          `the destination is in account ${d.account}, but your credentials (${caller.arn}) are for account ${caller.account}${this.opts.assumeRole ? '' : '; without --no-assume-role, its publishing role would be assumed'}`,
        );
      }
      return {
        identity: `base credentials (${caller.arn})`,
        account: caller.account,
        partition: caller.partition,
        ecr: this.ecr(d.region),
      };
    }
    const roleArn = d.assumeRoleArn;
    const m = /^arn:([^:]+):iam::(\d{12}):role\/.+$/.exec(roleArn);
    if (!m)
      throw new LadingError('BAD_MANIFEST', `the asset names the role "${roleArn}", which is not an IAM role ARN`);
    const [, partition, account] = m as unknown as [string, string, string];
    const sts = this.sts(d.region);
    const extra = { ...(d.assumeRoleAdditionalOptions ?? {}) } as Partial<AssumeRoleCommandInput>;
    const input: AssumeRoleCommandInput = {
      RoleArn: roleArn,
      RoleSessionName: cdkSessionName(),
      ExternalId: d.assumeRoleExternalId,
      ...extra,
      // As the CDK CLI: session tags are transitive.
      ...(extra.Tags ? { TransitiveTagKeys: extra.Tags.map((t) => t.Key!) } : {}),
    };
    let cached: Identity | undefined;
    const assume = async (): Promise<Identity> => {
      // Refresh five minutes before expiry: a long push outlives a one-hour session.
      if (cached && (!cached.expiration || cached.expiration.getTime() - Date.now() > 5 * 60_000)) return cached;
      this.stsCalls.AssumeRole = (this.stsCalls.AssumeRole ?? 0) + 1;
      this.opts.logger?.(
        `assuming role ${roleArn}${d.assumeRoleExternalId !== undefined ? ' (with an external ID)' : ''} in ${d.region}`,
      );
      const out = await sts.send(new AssumeRoleCommand(input));
      const c = out.Credentials;
      if (!c?.AccessKeyId || !c.SecretAccessKey) throw new Error('AssumeRole returned no credentials');
      cached = {
        accessKeyId: c.AccessKeyId,
        secretAccessKey: c.SecretAccessKey,
        ...(c.SessionToken ? { sessionToken: c.SessionToken } : {}),
        ...(c.Expiration ? { expiration: c.Expiration } : {}),
      };
      return cached;
    };
    try {
      await assume();
    } catch (e) {
      const transport = awsTransportFailure(e, `STS AssumeRole ${roleArn}`, 'the STS endpoint');
      if (transport) throw transport;
      const name = (e as { name?: string }).name;
      // The CDK CLI goes on with the base credentials when they are for the right account.
      if (name !== 'ExpiredToken' && name !== 'ExpiredTokenException') {
        const caller = await this.caller().catch(() => undefined);
        if (caller?.account === account) {
          this.opts.warn?.(
            `could not assume ${roleArn} (${awsMessage(e)}); the base credentials (${caller.arn}) are for account ${account}: using them`,
          );
          return {
            identity: `base credentials (${caller.arn})`,
            account,
            partition: caller.partition,
            ecr: this.ecr(d.region),
          };
        }
      }
      throw new LadingError(
        'AUTH',
        `could not assume the role ${roleArn} (${awsMessage(e)}): check that the environment is bootstrapped (cdk bootstrap aws://${account}/${d.region}) and that your credentials may assume the role (its trust policy, --trust); or pass --no-assume-role to publish with your own credentials`,
        { cause: e },
      );
    }
    return { identity: `assumed role ${roleArn}`, account, partition, ecr: this.ecr(d.region, assume) };
  }

  close(): void {
    for (const c of this.clients.splice(0)) c.destroy();
  }
}

import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  Aws,
  CliCredentialsStackSynthesizer,
  CustomResource,
  DefaultStackSynthesizer,
  Duration,
  RemovalPolicy,
  Stack,
  Token,
} from 'aws-cdk-lib';
import type * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, type IConstruct } from 'constructs';
import type { SynthCheckRequest, SynthCheckResponse } from './synth-check-protocol';
import { assetSidePrefix, digestCacheKey } from './digest-cache-key';

/**
 * What to do with uncompressed layers, as `lading push --compress`. An enum (jsii, for the
 * other CDK languages); its values are the strings `lading push --compress` takes.
 */
export enum TarballImageCompression {
  /** Compress uncompressed layers with gzip (what every runtime, Lambda included, pulls). */
  GZIP = 'gzip',
  /** Compress uncompressed layers with zstd (smaller and faster; Lambda cannot run it). */
  ZSTD = 'zstd',
  /** Push uncompressed layers as they are. */
  NONE = 'none',
}

export interface TarballImageProps {
  /**
   * Path of the image archive: any archive lading reads (docker save, podman, buildah,
   * OCI archive, buildx `type=oci`, Jib, ko, rules_oci, nix; gzip or zstd compressed as a
   * whole too). Relative paths are resolved from the working directory of `cdk synth`.
   * An OCI layout directory is not accepted: stage a tar of it.
   */
  readonly tarball: string;

  /**
   * The platform to push, `os/arch[/variant]` (`linux/arm64`). The pushed image is then
   * that image manifest alone.
   *
   * @default - every platform of the image: a multi-platform index is pushed byte for byte
   *   (its digest preserved). A Lambda consumer needs a single platform: set this when the
   *   archive holds an index.
   */
  readonly platform?: string;

  /**
   * The image to take from a multi-image archive (`myapp:1.2`, `docker.io/library/app:1`,
   * or a digest), as `lading push --image`.
   *
   * @default - the archive's only image (synth fails, listing them, when there are several)
   */
  readonly imageName?: string;

  /**
   * The ECR repository to push to. The handler gets push rights on it.
   *
   * @default - the stack's CDK bootstrap container-assets repository
   *   (`cdk-<qualifier>-container-assets-<account>-<region>`), found from the stack's
   *   `DefaultStackSynthesizer` or `CliCredentialsStackSynthesizer`
   */
  readonly repository?: ecr.IRepository;

  /**
   * Tag written once the image is complete.
   *
   * @default - `lading-` followed by 40 hex digits derived from the archive's content hash
   *   and the image, platform and compression options: a new archive gets a new tag, so an
   *   immutable repository is fine
   */
  readonly tag?: string;

  /**
   * What to do with uncompressed layers (`docker save` stores them uncompressed);
   * compressed layers are pushed as they are. Lambda cannot run zstd layers.
   *
   * @default TarballImageCompression.GZIP
   */
  readonly compress?: TarballImageCompression;

  /**
   * The image will run on AWS Lambda (set it when the consumer is an L1 `CfnFunction`;
   * `toLambdaCode()` implies it). Synth then fails for what Lambda cannot run (an index of
   * several platforms or with attestations, zstd layers, a platform other than linux/amd64
   * or linux/arm64), and a repository created in this app lets the Lambda service pull.
   *
   * @default false
   */
  readonly forLambda?: boolean;

  /**
   * Read and verify every blob of the archive at synth (digests, sizes, diff_ids). About
   * one second per GiB; off, synth reads only the archive's JSON documents and headers
   * (the handler verifies everything while it pushes in any case).
   *
   * @default true
   */
  readonly verifyAtSynth?: boolean;

  /**
   * Memory of the handler function, in MiB. Memory buys CPU on Lambda (1,769 MiB = one
   * vCPU): compressing uncompressed layers is the CPU-bound part of a push.
   *
   * @default 2048
   */
  readonly memorySize?: number;

  /**
   * Timeout of the handler function. A push that cannot finish in time stops about 30
   * seconds before it and fails the deployment with a message; deploying again skips the
   * blobs already uploaded.
   *
   * @default Duration.minutes(15)
   */
  readonly timeout?: Duration;

  /**
   * How long a push may take in all. Longer than `timeout`: the custom resource runs on
   * aws-cdk-lib's Provider framework, whose state machine calls the handler again (every 15
   * seconds, each call up to `timeout`) until the push is done, each call going on where the
   * last stopped; a push that fits in one invocation is done in the first, and the framework
   * only confirms it. At most `timeout`: one invocation, no framework (fewer resources, a few
   * seconds faster; a push that does not fit fails and is resumed by deploying again).
   * CloudFormation waits at most one hour for a custom resource.
   *
   * @default `timeout` for an archive up to 2 GiB (one invocation pushes several GiB);
   * Duration.hours(1) for a larger one
   */
  readonly totalTimeout?: Duration;

  /**
   * What deleting the resource (stack deletion, or replacement by a new archive) does to
   * the image: RETAIN leaves it in the repository; DESTROY removes the tag it wrote
   * (ECR deletes an image when its last tag goes; child manifests of an index stay,
   * untagged, for a lifecycle rule to expire).
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;

  /**
   * The VPC to run the handler function in. The handler must then reach S3 (the staged
   * archive, and CloudFormation's pre-signed response URL) and the ECR API, and the ECR
   * registry endpoint for an image with a zero-byte blob: through VPC endpoints or a NAT
   * gateway (README, "TarballImage in a VPC"). Make endpoints created in the same stack
   * dependencies of this construct (`image.node.addDependency(endpoint)`): otherwise the push
   * may start before they are ready, and a stack deletion may remove them before the
   * resource's Delete has answered CloudFormation.
   *
   * @default - not in a VPC: the function reaches AWS through Lambda's own network
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Where to place the handler's network interfaces; only with `vpc`. Public subnets are
   * refused, as `lambda.Function` refuses them: a function there gets no public IP.
   *
   * @default - the VPC's default selection: private subnets with egress, else isolated ones
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Security groups of the handler's network interfaces; only with `vpc`. They must let the
   * handler out on TCP 443 to the endpoints it uses (nothing needs to come in).
   *
   * @default - a security group is created for the handler (see `allowAllOutbound`)
   */
  readonly securityGroups?: ec2.ISecurityGroup[];

  /**
   * Whether the security group created for the handler lets all outbound traffic out; only
   * with `vpc` and without `securityGroups` (configure your own groups directly), as for
   * `lambda.Function`. With `false`, open TCP 443 to the endpoints yourself, e.g.
   * `image.handler.connections.allowTo(ecrApiEndpoint, ec2.Port.tcp(443))`.
   *
   * @default true
   */
  readonly allowAllOutbound?: boolean;

  /**
   * The handler's execution role. What the push needs is still added to it (`s3:GetObject`
   * on the archive, the push actions on the repository, `ecr:GetAuthorizationToken`), as
   * `lambda.Function` adds grants to a role it is given; and, as there, no managed policy is
   * attached: the role must trust `lambda.amazonaws.com` and carry what
   * `AWSLambdaBasicExecutionRole` allows (logs) and, with `vpc`, what
   * `AWSLambdaVPCAccessExecutionRole` allows (network interfaces). An imported role with
   * `mutable: false` is given nothing: it must already allow all of it.
   *
   * @default - a role created for the handler, with those managed policies
   */
  readonly role?: iam.IRole;

  /**
   * The log group the handler writes its progress and failures to. `logRetention`, which
   * `lambda.Function` deprecates in favour of this, is not offered: it adds a custom resource
   * and another function to the stack. For a retention, pass
   * `new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH })`. Lambda
   * delivers logs itself: a function in a VPC needs no CloudWatch Logs endpoint.
   *
   * @default - Lambda's own `/aws/lambda/<function name>`, created on the first run, never expiring
   */
  readonly logGroup?: logs.ILogGroup;

  /**
   * Architecture of the handler function, not of the image (the handler pushes any
   * platform). The handler is plain JavaScript and runs on both: x86_64 is there for
   * accounts or regions where arm64 functions are not allowed or not offered.
   *
   * @default lambda.Architecture.ARM_64
   */
  readonly architecture?: lambda.Architecture;
}

/** What synth learnt about the image that will be pushed. */
export interface TarballImageFacts {
  /** The archive's format (`docker`, `oci`...). */
  readonly format: string;
  /** The image's names in the archive (`myapp:1.2`...), if any. */
  readonly names: string[];
  /** Media type of the pushed manifest or index. */
  readonly mediaType: string;
  /** true: every platform (the stored index) is pushed. */
  readonly all: boolean;
  /** The image manifests pushed: one when a platform is chosen or the image has one. */
  readonly manifests: TarballImageManifestFacts[];
}

/** One image manifest of the pushed image, as synth read it. */
export interface TarballImageManifestFacts {
  /**
   * `os/arch[/variant]`.
   *
   * @default - unknown: the manifest's config names no platform
   */
  readonly platform?: string;
  /** An attestation manifest (buildx provenance or SBOM), not a runnable image. */
  readonly attestation: boolean;
  /** Media type of the manifest. */
  readonly mediaType: string;
  /** Stored compression of each layer: `none`, `gzip`, `zstd` or `unknown`. */
  readonly layers: string[];
}

/**
 * A synth-time failure of a TarballImage: a prop, the archive, the stack's synthesizer, or a
 * consumer that cannot run the image. The message is one line and starts with the construct
 * path (`Stack/Img: ...`), which `constructPath` also holds.
 *
 * Not aws-cdk-lib's `ValidationError`: that class is `@internal` in aws-cdk-lib (exported from
 * the module, but outside its public API: its constructor went from `(message, scope)` to
 * `(name, message, scope)` between 2.232 and 2.276), and the older aws-cdk-lib versions this
 * package's peer range allows (from 2.100) have no such class at all: it came in December 2024
 * (aws/aws-cdk#32569). Its public
 * `Errors.isValidationError` recognises it by a private symbol, which is not forged here.
 * `Annotations.of(this).addError` was the other candidate: it only fails `app.synth()`, later,
 * whereas these failures stop the construct (or the consumer) where it is created, with the
 * bad prop in the stack trace.
 */
export class TarballImageValidationError extends Error {
  /** The path of the TarballImage that failed (`Stack/Img`). */
  readonly constructPath: string;
  /** As aws-cdk-lib's own validation errors. */
  readonly type = 'validation';

  constructor(message: string, scope: IConstruct) {
    super(`${scope.node.path}: ${message}`);
    this.name = 'TarballImageValidationError';
    this.constructPath = scope.node.path;
  }
}

/** Archives above this size default to pushing across invocations (see `totalTimeout`). */
const LARGE_ARCHIVE_BYTES = 2 * 1024 ** 3;

const LAMBDA_ARCHITECTURES: Record<string, string> = {
  'linux/amd64': 'x86_64',
  'linux/arm64': 'arm64',
  'linux/arm64/v8': 'arm64',
};

/**
 * An image archive pushed to Amazon ECR at deploy time by a Lambda-backed custom resource
 * (lading, natively: no docker at synth, publish or deploy). The archive is staged as a
 * plain file asset; the handler reads it from S3 with ranged GETs and pushes it with the
 * ECR API. `imageUri` (`<repositoryUri>@sha256:...`) carries the deploy-order dependency.
 *
 * Each TarballImage has a handler function of its own, not a stack singleton: two images with
 * different networks, roles or architectures never share one function's settings.
 */
export class TarballImage extends Construct {
  /** `<repositoryUri>@sha256:<hex>`, pinned by digest. */
  readonly imageUri: string;
  /** `sha256:<hex>` of the pushed manifest or index. */
  readonly imageDigest: string;
  /** The tag written. */
  readonly imageTag: string;
  readonly repository: ecr.IRepository;
  /** What synth read from the archive. */
  readonly facts: TarballImageFacts;
  /** The staged archive. */
  readonly asset: Asset;
  /** The custom resource's handler (the Provider framework's onEvent handler when `totalTimeout` > `timeout`). */
  readonly handler: lambda.Function;
  /** The Provider framework's isComplete handler (same code and role), when `totalTimeout` > `timeout`. */
  readonly isCompleteHandler?: lambda.Function;
  private readonly resource: CustomResource;
  private lambdaCode?: lambda.DockerImageCode;
  private readonly compress: TarballImageCompression;

  constructor(scope: Construct, id: string, props: TarballImageProps) {
    super(scope, id);
    const fail = (msg: string): never => {
      throw new TarballImageValidationError(msg, this);
    };
    const tarball = resolve(props.tarball);
    if (!existsSync(tarball)) fail(`tarball ${props.tarball} does not exist`);
    if (statSync(tarball).isDirectory())
      fail(`tarball ${props.tarball} is a directory; TarballImage takes an archive file (tar an OCI layout first)`);
    const compress = props.compress ?? TarballImageCompression.GZIP;
    this.compress = compress;
    if (!Object.values(TarballImageCompression).includes(compress))
      fail(`compress must be gzip, zstd or none, not ${String(compress)}`);
    if (
      props.tag !== undefined &&
      !Token.isUnresolved(props.tag) &&
      !/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(props.tag)
    ) {
      fail(
        `tag ${JSON.stringify(props.tag)} is not a valid tag (up to 128 letters, digits, _ . -, not starting with . or -)`,
      );
    }
    if (props.memorySize !== undefined && (props.memorySize < 512 || props.memorySize > 10240))
      fail(`memorySize ${props.memorySize} is outside 512..10240 MiB`);

    this.facts = readArchive(tarball, props, fail);

    this.asset = new Asset(this, 'Archive', { path: tarball });
    this.repository = props.repository ?? bootstrapRepository(this, fail);

    const handlerDir = handlerBundleDir();
    if (handlerDir === undefined)
      fail(
        `the TarballImage handler bundle is missing (${join(__dirname, '..', '..', 'cdk-handler')}): build lading with npm run build`,
      );
    const timeout = props.timeout ?? Duration.minutes(15);
    if (timeout.toSeconds() < 60 || timeout.toSeconds() > 900) fail(`timeout must be between 1 and 15 minutes`);
    const architecture = props.architecture ?? lambda.Architecture.ARM_64;
    if (
      architecture.name !== lambda.Architecture.ARM_64.name &&
      architecture.name !== lambda.Architecture.X86_64.name
    ) {
      fail(`architecture must be lambda.Architecture.ARM_64 or X86_64, not ${architecture.name}`);
    }
    checkNetwork(props, fail);
    // Small archives keep the lean single-invocation path (no framework resources, no extra
    // cold starts); large ones default to the framework so a slow push cannot fail the deploy.
    // Lambda gives one vCPU per 1,769 MB (6 at 10,240): layers are compressed on every core
    // through Node's thread pool, which has 4 threads unless told otherwise.
    const vcpus = Math.round((props.memorySize ?? 2048) / 1769);
    const environment: Record<string, string> = {
      XDG_CACHE_HOME: '/tmp/lading-cache',
      ...(vcpus > 4 ? { UV_THREADPOOL_SIZE: String(vcpus) } : {}),
    };
    const totalTimeout =
      props.totalTimeout ?? (statSync(tarball).size > LARGE_ARCHIVE_BYTES ? Duration.hours(1) : timeout);
    if (totalTimeout.toSeconds() > 3600)
      fail('totalTimeout is at most 1 hour: CloudFormation waits no longer for a custom resource');
    const continued = totalTimeout.toSeconds() > timeout.toSeconds();

    this.handler = new lambda.Function(this, 'Handler', {
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture,
      handler: continued ? 'index.onEvent' : 'index.handler',
      code: lambda.Code.fromAsset(handlerDir!),
      memorySize: props.memorySize ?? 2048,
      timeout,
      description: `lading: pushes ${props.tarball} to ECR (${this.node.path})`,
      environment,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      allowAllOutbound: props.allowAllOutbound,
      role: props.role,
      logGroup: props.logGroup,
    });
    let serviceToken = this.handler.functionArn;
    if (continued) {
      // The same code as isComplete, with the same role, network and log group.
      this.isCompleteHandler = new lambda.Function(this, 'IsComplete', {
        runtime: lambda.Runtime.NODEJS_22_X,
        architecture,
        handler: 'index.isComplete',
        code: lambda.Code.fromAsset(handlerDir!),
        memorySize: props.memorySize ?? 2048,
        timeout,
        description: `lading: goes on pushing ${props.tarball} to ECR (${this.node.path})`,
        environment,
        vpc: props.vpc,
        vpcSubnets: props.vpcSubnets,
        securityGroups: props.vpc ? this.handler.connections.securityGroups : undefined,
        role: this.handler.role,
        logGroup: props.logGroup,
      });
      // The framework's own functions stay out of the VPC: they call Lambda, Step Functions and
      // CloudFormation's response URL, none of which the VPC may route to.
      const provider = new cr.Provider(this, 'Provider', {
        onEventHandler: this.handler,
        isCompleteHandler: this.isCompleteHandler,
        queryInterval: Duration.seconds(15),
        totalTimeout,
      });
      serviceToken = provider.serviceToken;
    }
    // The given role when there is one: it gets the same statements as a created one.
    const role = this.handler.role!;
    // Least privilege: the one object, the one repository.
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [this.asset.bucket.arnForObjects(this.asset.s3ObjectKey)],
      }),
    );
    // The compressed-digest cache beside the asset (see s3-digest-cache.ts): a retry in a fresh
    // container skips the layers it already compressed and uploaded.
    // With the Provider framework, a failure marker too (handler.ts providerIsComplete).
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject', 's3:PutObject'],
        resources: [
          this.asset.bucket.arnForObjects(
            continued ? `${assetSidePrefix(this.asset.s3ObjectKey)}*` : digestCacheKey(this.asset.s3ObjectKey),
          ),
        ],
      }),
    );
    if (this.asset.bucket.encryptionKey) this.asset.bucket.encryptionKey.grantEncryptDecrypt(role);
    this.repository.grant(
      role,
      'ecr:BatchCheckLayerAvailability',
      'ecr:InitiateLayerUpload',
      'ecr:UploadLayerPart',
      'ecr:CompleteLayerUpload',
      'ecr:PutImage',
      'ecr:BatchGetImage',
      'ecr:DescribeRepositories',
      ...(props.removalPolicy === RemovalPolicy.DESTROY ? ['ecr:BatchDeleteImage'] : []),
    );
    // Zero-byte blobs cannot go through the layer API: they take the registry API, which
    // needs a token (the token grants nothing beyond the role's ECR permissions).
    ecr.AuthorizationToken.grantRead(role);

    const options = { imageName: props.imageName ?? null, platform: props.platform ?? null, compress };
    const tag =
      props.tag ??
      `lading-${createHash('sha256')
        .update(JSON.stringify({ asset: this.asset.assetHash, ...options }))
        .digest('hex')
        .slice(0, 40)}`;

    this.resource = new CustomResource(this, 'Resource', {
      serviceToken,
      resourceType: 'Custom::LadingTarballImage',
      properties: {
        Bucket: this.asset.s3BucketName,
        Key: this.asset.s3ObjectKey,
        AssetHash: this.asset.assetHash,
        RepositoryName: this.repository.repositoryName,
        RepositoryUri: this.repository.repositoryUri,
        Tag: tag,
        Compress: compress,
        ...(props.platform ? { Platform: props.platform } : {}),
        ...(props.imageName ? { ImageName: props.imageName } : {}),
        RemoveOnDelete: props.removalPolicy === RemovalPolicy.DESTROY ? 'true' : 'false',
      },
    });
    // The role's policy must exist before the handler runs.
    this.resource.node.addDependency(role);

    this.imageUri = this.resource.getAttString('ImageUri');
    this.imageDigest = this.resource.getAttString('ImageDigest');
    this.imageTag = this.resource.getAttString('ImageTag');

    if (props.forLambda) this.forLambda();
  }

  /**
   * Checks that Lambda can run the image (fails synth otherwise) and lets the Lambda
   * service pull from a repository defined in this app. For an imported repository the
   * policy cannot be changed from here: the repository must already allow
   * `lambda.amazonaws.com` (the CDK bootstrap repository does since bootstrap version 10).
   */
  private forLambda(): void {
    this.lambdaArchitecture();
    this.repository.grantPull(new iam.ServicePrincipal('lambda.amazonaws.com'));
  }

  /** The Lambda architecture of the image, or a synth error saying why Lambda cannot run it. */
  private lambdaArchitecture(): string {
    const f = this.facts;
    const runnable = f.manifests.filter((m) => !m.attestation);
    if (f.manifests.length !== 1 || runnable.length !== 1) {
      const platforms = runnable.map((m) => m.platform ?? 'unknown').join(', ');
      const att = f.manifests.length - runnable.length;
      throw new TarballImageValidationError(
        `Lambda runs a single-platform image, and this image is an index of ${runnable.length} platform(s) (${platforms})${att > 0 ? ` and ${att} attestation manifest(s)` : ''}; set platform (one of ${platforms})`,
        this,
      );
    }
    const m = runnable[0]!;
    const arch = m.platform ? LAMBDA_ARCHITECTURES[m.platform] : undefined;
    if (arch === undefined)
      throw new TarballImageValidationError(
        `Lambda runs linux/amd64 or linux/arm64 images; this one is ${m.platform ?? 'of unknown platform'}`,
        this,
      );
    const zstd =
      m.layers.includes('zstd') || (m.layers.includes('none') && this.compress === TarballImageCompression.ZSTD);
    if (zstd) {
      throw new TarballImageValidationError(
        `Lambda cannot run images with zstd layers; ${m.layers.includes('zstd') ? 'rebuild the archive with gzip layers' : "use compress: 'gzip'"}`,
        this,
      );
    }
    return arch;
  }

  /**
   * The image as Lambda function code (`DockerImageFunction`); checks that Lambda can run it,
   * and, when the app is synthesized, that the architecture of each function given it is the
   * image's.
   */
  toLambdaCode(): lambda.DockerImageCode {
    const arch = this.lambdaArchitecture();
    if (this.lambdaCode === undefined) {
      const repository = new PushedImageRepository(
        this,
        'LambdaCode',
        this.repository,
        this.imageDigest,
        this.imageUri,
      );
      this.lambdaCode = lambda.DockerImageCode.fromEcr(repository, { tagOrDigest: this.imageDigest });
      // The function's architecture: the public way to the function is Code.bind(scope), and
      // fromEcr's code is aws-cdk-lib's own (EcrImageCode), so no code of ours sees the
      // function. The check runs when the app is synthesized (a construct validation): it
      // finds the L2 functions whose code names this image and reads their public
      // `architecture`. It throws this construct's error (one line starting with the image's
      // path, as every other check) rather than return a message, which aws-cdk-lib would
      // wrap into a multi-line error of another class.
      this.node.addValidation({
        validate: () => {
          this.checkLambdaArchitectures(arch);
          return [];
        },
      });
    }
    return this.lambdaCode;
  }

  /** Fails for the first `lambda.Function` in the app that runs this image on another architecture. */
  private checkLambdaArchitectures(arch: string): void {
    for (const c of this.node.root.node.findAll()) {
      if (!(c instanceof lambda.Function)) continue;
      const cfn = c.node.defaultChild;
      if (!(cfn instanceof lambda.CfnFunction)) continue;
      const code = cfn.code as lambda.CfnFunction.CodeProperty;
      if (code.imageUri !== this.imageUri || c.architecture.name === arch) continue;
      throw new TarballImageValidationError(
        `the image is ${this.facts.manifests[0]!.platform} but the function's architecture is ${c.architecture.name} (${c.node.path}); set architecture: lambda.Architecture.${arch === 'arm64' ? 'ARM_64' : 'X86_64'}`,
        this,
      );
    }
  }

  /** The image for an ECS container; the task's execution role gets pull rights. */
  toEcsImage(): ecs.ContainerImage {
    // aws-ecs is loaded only when asked: apps without ECS need not load it.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { ContainerImage } = require('aws-cdk-lib/aws-ecs') as typeof ecs;
    const repository = this.repository;
    const imageName = this.imageUri;
    // ContainerImage.bind is public API (the documented way to supply an image). Not
    // ContainerImage.fromEcrRepository(repository, digest): it names the image with
    // repositoryUriForTagOrDigest, which takes the `@` form only for a literal `sha256:` string
    // and gives `<repository>:<token>` for the digest attribute, an invalid reference.
    class TarballEcsImage extends ContainerImage {
      bind(_scope: Construct, containerDefinition: ecs.ContainerDefinition): ecs.ContainerImageConfig {
        repository.grantPull(containerDefinition.taskDefinition.obtainExecutionRole());
        return { imageName };
      }
    }
    return new TarballEcsImage();
  }

  /** Lets a principal pull the image (an L1 task definition's execution role...). */
  grantPull(grantee: iam.IGrantable): iam.Grant {
    return this.repository.grantPull(grantee);
  }
}

/**
 * TarballImage's repository as `lambda.DockerImageCode.fromEcr` sees it: the URI it gives for
 * the pushed image's digest (the custom resource's `ImageDigest` attribute) is the resource's
 * `ImageUri` attribute, a `Fn::GetAtt`, so CloudFormation creates the function after the push;
 * grants go to the repository itself. Public API only (ecr.RepositoryBase, its public
 * methods). `DockerImageFunction` takes a `DockerImageCode`, whose only member is internal: the
 * public ways to one are `fromEcr` and `fromImageAsset`, and `fromEcr`'s code (EcrImageCode)
 * names the image with `repository.repositoryUriForTagOrDigest(tagOrDigest)`. The real
 * repository's takes the `@` form only for a literal `sha256:` string and gives
 * `<repository>:<token>` for the digest attribute, an invalid reference; a literal
 * `sha256:` + Fn::Select of the digest would pass, but name the image by the repository's ARN
 * parts instead of the URI the push reported.
 */
class PushedImageRepository extends ecr.RepositoryBase {
  readonly repositoryName: string;
  readonly repositoryArn: string;

  constructor(
    scope: Construct,
    id: string,
    private readonly target: ecr.IRepository,
    private readonly imageDigest: string,
    private readonly imageUri: string,
  ) {
    super(scope, id, { account: target.env.account, region: target.env.region });
    this.repositoryName = target.repositoryName;
    this.repositoryArn = target.repositoryArn;
  }

  override repositoryUriForTagOrDigest(tagOrDigest?: string): string {
    return tagOrDigest === this.imageDigest ? this.imageUri : super.repositoryUriForTagOrDigest(tagOrDigest);
  }

  addToResourcePolicy(statement: iam.PolicyStatement): iam.AddToResourcePolicyResult {
    return this.target.addToResourcePolicy(statement);
  }

  override grant(grantee: iam.IGrantable, ...actions: string[]): iam.Grant {
    return this.target.grant(grantee, ...actions);
  }

  override grantPull(grantee: iam.IGrantable): iam.Grant {
    return this.target.grantPull(grantee);
  }
}

/**
 * The network props checked before lambda.Function sees them: its own errors do not name
 * this construct, and some inconsistencies it lets through (an empty securityGroups list).
 */
function checkNetwork(props: TarballImageProps, fail: (m: string) => never): void {
  const { vpc, vpcSubnets, securityGroups, allowAllOutbound } = props;
  if (vpc === undefined) {
    if (securityGroups !== undefined) fail('securityGroups needs vpc: security groups apply to a function in a VPC');
    if (vpcSubnets !== undefined) fail('vpcSubnets needs vpc');
    if (allowAllOutbound !== undefined)
      fail('allowAllOutbound needs vpc: it configures the security group created for the handler in that VPC');
    return;
  }
  if (securityGroups !== undefined && securityGroups.length === 0)
    fail('securityGroups is empty: omit it to have a security group created for the handler');
  if (securityGroups !== undefined && allowAllOutbound !== undefined) {
    fail(
      'allowAllOutbound configures the security group TarballImage creates; with securityGroups, set the outbound rules on those groups instead',
    );
  }
  let subnets: ec2.ISubnet[];
  try {
    subnets = vpc.selectSubnets(vpcSubnets).subnets;
  } catch (e) {
    return fail(`choosing the handler's subnets: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (subnets.length === 0)
    fail(`no subnet of the VPC for the handler${vpcSubnets ? ' in the vpcSubnets selection' : ''}`);
  const publicIds = new Set(vpc.publicSubnets.map((s) => s.subnetId));
  const isPublic = subnets.filter((s) => publicIds.has(s.subnetId));
  if (isPublic.length > 0) {
    // A subnet of a VPC defined in the app has a token for an id: its path says which one.
    const names = isPublic.map((s) => (Token.isUnresolved(s.subnetId) ? s.node.path : s.subnetId));
    fail(
      `the handler's subnets include public subnet(s) (${names.join(', ')}): a Lambda function gets no public IP there; ` +
        'select private subnets with vpcSubnets (PRIVATE_WITH_EGRESS behind a NAT, or PRIVATE_ISOLATED with VPC endpoints)',
    );
  }
}

function handlerBundleDir(): string | undefined {
  const dir = join(__dirname, '..', '..', 'cdk-handler');
  return existsSync(join(dir, 'index.js')) ? dir : undefined;
}

const synthCache = new Map<string, TarballImageFacts>();

function readArchive(tarball: string, props: TarballImageProps, fail: (m: string) => never): TarballImageFacts {
  const st = statSync(tarball);
  const req: SynthCheckRequest = {
    tarball,
    verify: props.verifyAtSynth ?? true,
    ...(props.imageName ? { imageName: props.imageName } : {}),
    ...(props.platform ? { platform: props.platform } : {}),
  };
  const key = JSON.stringify([req, st.size, st.mtimeMs]);
  const cached = synthCache.get(key);
  if (cached) return cached;
  const r = spawnSync(process.execPath, [join(__dirname, 'synth-check.js'), JSON.stringify(req)], {
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    env: process.env,
  });
  let out: SynthCheckResponse | undefined;
  try {
    out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as SynthCheckResponse;
  } catch {
    fail(
      `could not read ${tarball}: the archive check exited with ${r.status ?? r.signal}: ${r.stderr.trim().split('\n').pop() ?? ''}`,
    );
  }
  if ('error' in out!) return fail(`${out.error.message} (${out.error.code})`);
  const { format, names, mediaType, all, manifests } = out!.ok;
  // A plain struct (jsii passes it by value to other languages): no null, no extra fields.
  const facts: TarballImageFacts = {
    format,
    names,
    mediaType,
    all,
    manifests: manifests.map((m) => ({
      platform: m.platform ?? undefined,
      attestation: m.attestation,
      mediaType: m.mediaType,
      layers: m.layers,
    })),
  };
  synthCache.set(key, facts);
  return facts;
}

/** The stack's bootstrap container-assets repository, from its synthesizer. */
function bootstrapRepository(scope: Construct, fail: (m: string) => never): ecr.IRepository {
  const stack = Stack.of(scope);
  const synth = stack.synthesizer;
  if (!(synth instanceof DefaultStackSynthesizer) && !(synth instanceof CliCredentialsStackSynthesizer)) {
    return fail(
      `the stack's synthesizer (${synth.constructor.name}) has no bootstrap container-assets repository; pass repository`,
    );
  }
  // A private field, read on purpose: no public API gives the repository name these
  // synthesizers were configured with. `imageAssetsRepositoryName` is a constructor prop that
  // neither class exposes again (no getter, unlike bootstrapQualifier); the one public method
  // that returns it, addDockerImageAsset, registers a docker image asset in the stack's asset
  // manifest, which is what TarballImage exists to avoid; and the documented default pattern
  // (DEFAULT_IMAGE_ASSETS_REPOSITORY_NAME with the qualifier) would silently push to the wrong
  // repository for a synthesizer given another name. Both classes set `repositoryName` in
  // bind() (the Stack constructor binds a copy of the one it is given: stack.synthesizer), from
  // imageAssetsRepositoryName or that default, with the qualifier filled in. Should aws-cdk-lib rename it, synth fails here, loudly, rather
  // than guessing; test/cdk/construct.test.ts checks the field on the installed aws-cdk-lib.
  const configured: unknown = Reflect.get(synth, 'repositoryName');
  if (typeof configured !== 'string') {
    return fail(
      `cannot read the image assets repository name of the stack's ${synth.constructor.name} (its private field repositoryName, which this aws-cdk-lib does not have); pass repository`,
    );
  }
  const qualifier =
    synth.bootstrapQualifier ??
    (stack.node.tryGetContext('@aws-cdk/core:bootstrapQualifier') as string | undefined) ??
    DefaultStackSynthesizer.DEFAULT_QUALIFIER;
  const name = configured
    .replace(/\$\{Qualifier\}/g, qualifier)
    .replace(/\$\{AWS::AccountId\}/g, stack.account)
    .replace(/\$\{AWS::Region\}/g, stack.region)
    .replace(/\$\{AWS::Partition\}/g, Aws.PARTITION);
  const existing = stack.node.tryFindChild('LadingBootstrapImageRepository') as ecr.IRepository | undefined;
  return existing ?? ecr.Repository.fromRepositoryName(stack, 'LadingBootstrapImageRepository', name);
}

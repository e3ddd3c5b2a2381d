/**
 * TarballImage at synth: template assertions (aws-cdk-lib/assertions) for each prop and
 * for L1 and L2 consumers (DockerImageFunction, CfnFunction, ECS Fargate task definition,
 * CfnTaskDefinition), the staged file asset (no docker image asset), and synth failures
 * naming the construct path (bad archive, unknown platform or image, what Lambda cannot run).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import {
  App,
  CliCredentialsStackSynthesizer,
  DefaultStackSynthesizer,
  Duration,
  LegacyStackSynthesizer,
  RemovalPolicy,
  Stack,
} from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { TarballImage, TarballImageCompression, type TarballImageProps } from '../../src/cdk';
import { TarballImageValidationError } from '../../src/cdk/tarball-image';
import { freshPath, jibTar, notATar, rulesOciLoad, truncatedTar } from '../fixtures';
import { actionsOf, ensureHandlerBundle, multiPlatformArchive, sampleArchive, throwsAt } from './helpers';

const ENV = { account: '123456789012', region: 'eu-west-1' };
const BOOTSTRAP_REPO = 'cdk-hnb659fds-container-assets-123456789012-eu-west-1';
// The actions AWS documents for pushing an image to a repository ("Amazon ECR repository
// policy examples": push), plus the two reads the handler needs: BatchGetImage (an index's
// untagged children) and DescribeRepositories (the repository check). test/cdk/iam-calls.test.ts
// compares the grant with the calls the handler really makes.
const DOCUMENTED_PUSH = [
  'ecr:BatchCheckLayerAvailability',
  'ecr:CompleteLayerUpload',
  'ecr:InitiateLayerUpload',
  'ecr:PutImage',
  'ecr:UploadLayerPart',
];
const PUSH_ACTIONS = [...DOCUMENTED_PUSH, 'ecr:BatchGetImage', 'ecr:DescribeRepositories'];

let sample: string;
let multi: string;
let zstdArm: string;
let gzipAmd: string;

before(async () => {
  ensureHandlerBundle();
  sample = sampleArchive();
  multi = await multiPlatformArchive();
  zstdArm = (await rulesOciLoad()).path;
  gzipAmd = (await jibTar()).path;
});

function stackWith(
  props: Partial<TarballImageProps> & { tarball: string },
  stackProps: ConstructorParameters<typeof Stack>[2] = { env: ENV },
): { app: App; stack: Stack; image: TarballImage } {
  const app = new App();
  const stack = new Stack(app, 'Stack', stackProps);
  const image = new TarballImage(stack, 'Img', props);
  return { app, stack, image };
}

function resourceProps(t: Template): Record<string, unknown> {
  const all = t.findResources('Custom::LadingTarballImage');
  const vals = Object.values(all);
  assert.equal(vals.length, 1);
  return (vals[0] as { Properties: Record<string, unknown> }).Properties;
}

/** Every IAM statement of the template's policies, flattened. */
function statements(
  t: Template,
): { Action: string | string[]; Resource: unknown; Effect: string; Principal?: unknown }[] {
  return Object.values(t.findResources('AWS::IAM::Policy')).flatMap(
    (p) => (p as { Properties: { PolicyDocument: { Statement: never[] } } }).Properties.PolicyDocument.Statement,
  );
}

describe('TarballImage synth: defaults', () => {
  it('pushes to the bootstrap container-assets repository with a content-derived tag, gzip, retained on delete', () => {
    const { stack, image } = stackWith({ tarball: sample });
    const t = Template.fromStack(stack);
    const p = resourceProps(t);
    assert.match(String(p.Tag), /^lading-[0-9a-f]{40}$/);
    assert.equal(p.Compress, 'gzip');
    assert.equal(p.RemoveOnDelete, 'false');
    assert.equal(p.RepositoryName, BOOTSTRAP_REPO);
    assert.equal(p.Platform, undefined);
    assert.equal(p.ImageName, undefined);
    assert.equal(p.Bucket, 'cdk-hnb659fds-assets-123456789012-eu-west-1');
    assert.match(String(p.Key), /^[0-9a-f]{64}\.tar$/);
    assert.equal(p.AssetHash, image.asset.assetHash);
    // The handler: Node.js on arm64, 2 GiB, 15 minutes.
    t.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      MemorySize: 2048,
      Timeout: 900,
      Handler: 'index.handler',
    });
    // Outputs come from the custom resource's attributes.
    assert.deepEqual(stack.resolve(image.imageUri), {
      'Fn::GetAtt': [stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never), 'ImageUri'],
    });
    assert.deepEqual(stack.resolve(image.imageDigest), {
      'Fn::GetAtt': [stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never), 'ImageDigest'],
    });
    assert.deepEqual(stack.resolve(image.imageTag), {
      'Fn::GetAtt': [stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never), 'ImageTag'],
    });
    assert.equal(image.facts.manifests.length, 1);
    assert.equal(image.facts.manifests[0]!.platform, 'linux/amd64');
  });

  it('least privilege: s3:GetObject on the one object, read/write of its digest cache beside it, push actions on the one repository, GetAuthorizationToken; no delete', () => {
    const { stack } = stackWith({ tarball: sample });
    const t = Template.fromStack(stack);
    const st = statements(t);
    const s3 = st.filter((s) => actionsOf(s).some((a) => a.startsWith('s3:')));
    assert.equal(s3.length, 2);
    assert.deepEqual(actionsOf(s3[0]!), ['s3:GetObject']);
    const resource = JSON.stringify(stack.resolve(s3[0]!.Resource));
    assert.match(resource, /cdk-hnb659fds-assets/);
    assert.match(resource, /[0-9a-f]{64}\.tar"/, 'the object key, not the bucket');
    assert.deepEqual(actionsOf(s3[1]!), ['s3:GetObject', 's3:PutObject']);
    assert.match(
      JSON.stringify(stack.resolve(s3[1]!.Resource)),
      /cdk-hnb659fds-assets.*[0-9a-f]{64}\.tar\.lading-digests\.jsonl"/,
      'only the cache object may be written',
    );
    const ecrPush = st.filter((s) => actionsOf(s).includes('ecr:PutImage'));
    assert.equal(ecrPush.length, 1);
    assert.deepEqual(new Set(actionsOf(ecrPush[0]!)), new Set(PUSH_ACTIONS));
    assert.match(JSON.stringify(ecrPush[0]!.Resource), new RegExp(`repository/${BOOTSTRAP_REPO}`));
    const token = st.filter((s) => actionsOf(s).includes('ecr:GetAuthorizationToken'));
    assert.equal(token.length, 1);
    assert.equal(token[0]!.Resource, '*');
    assert.ok(!st.some((s) => actionsOf(s).includes('ecr:BatchDeleteImage')));
    assert.ok(!st.some((s) => actionsOf(s).some((a) => a === '*' || a === 'ecr:*' || a === 's3:*')));
  });

  it('stages the archive as a file asset (no docker image asset), and the handler bundle as another', () => {
    const { app } = stackWith({ tarball: sample });
    const asm = app.synth();
    const manifestFile = 'Stack.assets.json';
    const m = JSON.parse(readFileSync(join(asm.directory, manifestFile), 'utf8')) as {
      files: Record<string, { source: { path: string; packaging: string } }>;
      dockerImages?: Record<string, unknown>;
    };
    assert.deepEqual(m.dockerImages ?? {}, {});
    const files = Object.values(m.files);
    assert.ok(
      files.some((f) => f.source.packaging === 'file' && f.source.path.endsWith('.tar')),
      'the archive, as a file',
    );
    assert.ok(
      files.some((f) => f.source.packaging === 'zip'),
      'the handler code',
    );
    // The staged archive is the archive, byte for byte.
    const staged = files.find((f) => f.source.path.endsWith('.tar'))!;
    assert.ok(readFileSync(join(asm.directory, staged.source.path)).equals(readFileSync(sample)));
  });

  it('the same archive and options give the same tag; another archive or option another tag', () => {
    const tag = (props: Partial<TarballImageProps> & { tarball: string }) =>
      resourceProps(Template.fromStack(stackWith(props).stack)).Tag;
    const other = freshPath('other.tar');
    writeFileSync(other, readFileSync(sampleArchive('other:1')));
    assert.equal(tag({ tarball: sample }), tag({ tarball: sample }));
    assert.notEqual(tag({ tarball: sample }), tag({ tarball: other }));
    assert.notEqual(tag({ tarball: sample }), tag({ tarball: sample, compress: TarballImageCompression.ZSTD }));
  });
});

describe('TarballImage synth: props', () => {
  it('repository, tag, platform, imageName, compress, memorySize, timeout', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const repo = new ecr.Repository(stack, 'Repo', { repositoryName: 'team/app' });
    const image = new TarballImage(stack, 'Img', {
      tarball: multi,
      repository: repo,
      tag: 'v1',
      platform: 'linux/amd64',
      imageName: 'app:multi',
      compress: TarballImageCompression.ZSTD,
      memorySize: 4096,
      timeout: Duration.minutes(5),
    });
    const t = Template.fromStack(stack);
    const p = resourceProps(t);
    assert.equal(p.Tag, 'v1');
    assert.equal(p.Platform, 'linux/amd64');
    assert.equal(p.ImageName, 'app:multi');
    assert.equal(p.Compress, 'zstd');
    assert.deepEqual(p.RepositoryName, { Ref: stack.getLogicalId(repo.node.defaultChild as never) });
    t.hasResourceProperties('AWS::Lambda::Function', { MemorySize: 4096, Timeout: 300 });
    assert.equal(image.repository, repo);
    const push = statements(t).find((s) => actionsOf(s).includes('ecr:PutImage'))!;
    assert.deepEqual(push.Resource, { 'Fn::GetAtt': [stack.getLogicalId(repo.node.defaultChild as never), 'Arn'] });
    assert.equal(image.facts.manifests.length, 1, 'one platform chosen');
  });

  it('removalPolicy DESTROY: RemoveOnDelete and ecr:BatchDeleteImage on the repository', () => {
    const { stack } = stackWith({ tarball: sample, removalPolicy: RemovalPolicy.DESTROY });
    const t = Template.fromStack(stack);
    assert.equal(resourceProps(t).RemoveOnDelete, 'true');
    const push = statements(t).find((s) => actionsOf(s).includes('ecr:PutImage'))!;
    assert.ok(actionsOf(push).includes('ecr:BatchDeleteImage'));
  });

  it('imported repository (fromRepositoryName)', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const repo = ecr.Repository.fromRepositoryName(stack, 'Repo', 'existing/repo');
    new TarballImage(stack, 'Img', { tarball: sample, repository: repo, forLambda: true });
    const t = Template.fromStack(stack);
    assert.equal(resourceProps(t).RepositoryName, 'existing/repo');
    t.resourceCountIs('AWS::ECR::Repository', 0);
  });

  it('env-agnostic stack: the bootstrap repository name is built from the deploy-time account and region', () => {
    const { stack } = stackWith({ tarball: sample }, {});
    const p = resourceProps(Template.fromStack(stack));
    assert.deepEqual(p.RepositoryName, {
      'Fn::Join': ['', ['cdk-hnb659fds-container-assets-', { Ref: 'AWS::AccountId' }, '-', { Ref: 'AWS::Region' }]],
    });
  });

  it('bootstrap qualifier and imageAssetsRepositoryName of the synthesizer are followed', () => {
    const q = stackWith(
      { tarball: sample },
      { env: ENV, synthesizer: new DefaultStackSynthesizer({ qualifier: 'myqual' }) },
    );
    assert.equal(
      resourceProps(Template.fromStack(q.stack)).RepositoryName,
      'cdk-myqual-container-assets-123456789012-eu-west-1',
    );
    const named = stackWith(
      { tarball: sample },
      { env: ENV, synthesizer: new DefaultStackSynthesizer({ imageAssetsRepositoryName: 'images-${AWS::Region}' }) },
    );
    assert.equal(resourceProps(Template.fromStack(named.stack)).RepositoryName, 'images-eu-west-1');
    const cli = stackWith({ tarball: sample }, { env: ENV, synthesizer: new CliCredentialsStackSynthesizer() });
    assert.equal(resourceProps(Template.fromStack(cli.stack)).RepositoryName, BOOTSTRAP_REPO);
  });

  it('two images in one stack share the imported bootstrap repository', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const a = new TarballImage(stack, 'A', { tarball: sample });
    const b = new TarballImage(stack, 'B', { tarball: gzipAmd });
    assert.equal(a.repository, b.repository);
    Template.fromStack(stack).resourceCountIs('Custom::LadingTarballImage', 2);
  });
});

describe('TarballImage synth: pushes longer than one invocation (totalTimeout)', () => {
  it('totalTimeout > timeout: the Provider framework drives onEvent and isComplete, two functions of the same code and role', () => {
    const { stack, image } = stackWith({ tarball: sample, totalTimeout: Duration.minutes(50) });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::StepFunctions::StateMachine', 1);
    const fns = Object.values(t.findResources('AWS::Lambda::Function')) as {
      Properties: { Handler: string; Role: unknown; Timeout: number; VpcConfig?: unknown };
    }[];
    const ours = fns.filter((f) => f.Properties.Handler.startsWith('index.'));
    assert.deepEqual(ours.map((f) => f.Properties.Handler).sort(), ['index.isComplete', 'index.onEvent']);
    assert.deepEqual(ours[0]!.Properties.Role, ours[1]!.Properties.Role, 'one role');
    assert.ok(image.isCompleteHandler);
    // The resource goes to the framework, not to our function.
    const cr = Object.values(t.findResources('Custom::LadingTarballImage'))[0] as {
      Properties: { ServiceToken: unknown };
    };
    assert.doesNotMatch(
      JSON.stringify(cr.Properties.ServiceToken),
      new RegExp(stack.getLogicalId(image.handler.node.defaultChild as lambda.CfnFunction)),
    );
    assert.match(JSON.stringify(cr.Properties.ServiceToken), /framework-onEvent|ProviderframeworkonEvent/);
    // The handler may write its digest cache and failure markers beside the asset, nothing else.
    const s3 = statements(t).filter((s) => actionsOf(s).includes('s3:PutObject'));
    assert.equal(s3.length, 1);
    assert.match(JSON.stringify(stack.resolve(s3[0]!.Resource)), /[0-9a-f]{64}\.tar\.lading-\*"/);
  });

  it('by default a small archive keeps the single invocation: no framework, one function', () => {
    const { stack } = stackWith({ tarball: sample });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::StepFunctions::StateMachine', 0);
    t.resourceCountIs('AWS::Lambda::Function', 1);
    t.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.handler' });
  });

  it('totalTimeout over an hour fails synth (CloudFormation waits no longer)', () => {
    throwsAt(
      () => stackWith({ tarball: sample, totalTimeout: Duration.minutes(61) }),
      'Stack/Img',
      /totalTimeout is at most 1 hour/,
    );
  });
});

describe('TarballImage synth: cores for compression', () => {
  it('memorySize buys vCPUs (one per 1,769 MB): above four, the thread pool that compresses gets one thread each', () => {
    const env = (memorySize: number): Record<string, string> => {
      const fn = Object.values(
        Template.fromStack(stackWith({ tarball: sample, memorySize }).stack).findResources('AWS::Lambda::Function'),
      )[0] as { Properties: { Environment: { Variables: Record<string, string> } } };
      return fn.Properties.Environment.Variables;
    };
    assert.equal(env(2048).UV_THREADPOOL_SIZE, undefined, 'two vCPUs: the default 4 threads suffice');
    assert.equal(env(8848).UV_THREADPOOL_SIZE, '5', '8,848 MB: 5 vCPUs');
    assert.equal(env(7000).UV_THREADPOOL_SIZE, undefined, '7,000 MB: 4 vCPUs');
    assert.equal(env(10240).UV_THREADPOOL_SIZE, '6');
  });
});

describe('TarballImage synth: many images in one stack', () => {
  it("20 images: four resources each (function, role, policy, custom resource), well inside CloudFormation's 500", () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    for (let i = 0; i < 20; i++) new TarballImage(stack, `Img${i}`, { tarball: sample, tag: `t${i}` });
    const resources = Object.values(Template.fromStack(stack).toJSON().Resources as Record<string, { Type: string }>);
    const byType: Record<string, number> = {};
    for (const r of resources) byType[r.Type] = (byType[r.Type] ?? 0) + 1;
    assert.deepEqual(byType, {
      'AWS::IAM::Role': 20,
      'AWS::IAM::Policy': 20,
      'AWS::Lambda::Function': 20,
      'Custom::LadingTarballImage': 20,
    });
    // The same file assets as for one image (the archive and the handler bundle are staged once).
    const assetCount = (a: App): number =>
      Object.keys(
        (
          JSON.parse(readFileSync(join(a.synth().directory, 'Stack.assets.json'), 'utf8')) as {
            files: Record<string, unknown>;
          }
        ).files,
      ).length;
    assert.equal(assetCount(app), assetCount(stackWith({ tarball: sample }).app));
  });
});

describe('TarballImage synth: consumers', () => {
  it('L2 DockerImageFunction: code.imageUri from the resource; an owned repository lets lambda.amazonaws.com pull', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const repo = new ecr.Repository(stack, 'Repo');
    const image = new TarballImage(stack, 'Img', { tarball: sample, repository: repo });
    new lambda.DockerImageFunction(stack, 'Fn', { code: image.toLambdaCode() });
    const t = Template.fromStack(stack);
    const crId = stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never);
    t.hasResourceProperties('AWS::Lambda::Function', {
      PackageType: 'Image',
      Code: { ImageUri: { 'Fn::GetAtt': [crId, 'ImageUri'] } },
    });
    t.hasResourceProperties('AWS::ECR::Repository', {
      RepositoryPolicyText: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Principal: { Service: 'lambda.amazonaws.com' },
            Action: Match.arrayWith(['ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage']),
          }),
        ]),
      },
    });
  });

  it('L2 DockerImageFunction on arm64 with an arm64 image; a wrong architecture fails synth', () => {
    // The function's architecture is checked when the app is synthesized.
    const withFunctions = (...archs: (lambda.Architecture | undefined)[]) => {
      const app = new App();
      const stack = new Stack(app, 'Stack', { env: ENV });
      const image = new TarballImage(stack, 'Img', { tarball: multi, platform: 'linux/amd64' });
      archs.forEach((architecture, i) => {
        new lambda.DockerImageFunction(stack, `Fn${i}`, { code: image.toLambdaCode(), architecture });
      });
      return { app, stack };
    };
    // x86_64, given or the default, is the image's.
    Template.fromStack(withFunctions(lambda.Architecture.X86_64, undefined).stack).hasResourceProperties(
      'AWS::Lambda::Function',
      { PackageType: 'Image', Architectures: ['x86_64'] },
    );
    const wrong = withFunctions(lambda.Architecture.X86_64, lambda.Architecture.ARM_64);
    throwsAt(() => wrong.app.synth(), 'Stack/Img', /linux\/amd64.*architecture is arm64 \(Stack\/Fn1\).*X86_64/);
    throwsAt(
      () => Template.fromStack(withFunctions(lambda.Architecture.ARM_64).stack),
      'Stack/Img',
      /linux\/amd64.*architecture is arm64.*X86_64/,
    );
  });

  it('the architecture check covers functions in other stacks, and only those given this image', () => {
    const build = (wrong: boolean) => {
      const app = new App();
      const stack = new Stack(app, 'Stack', { env: ENV });
      const image = new TarballImage(stack, 'Img', { tarball: gzipAmd });
      const arm = new TarballImage(stack, 'Arm', { tarball: multi, platform: 'linux/arm64' });
      const other = new Stack(app, 'Other', { env: ENV });
      const code = arm.toLambdaCode();
      new lambda.DockerImageFunction(other, 'ArmFn', { code, architecture: lambda.Architecture.ARM_64 });
      new lambda.DockerImageFunction(other, 'AmdFn', { code: image.toLambdaCode() });
      if (wrong) new lambda.DockerImageFunction(other, 'Wrong', { code });
      return app;
    };
    build(false).synth();
    throwsAt(
      () => build(true).synth(),
      'Stack/Arm',
      /linux\/arm64 but the function's architecture is x86_64 \(Other\/Wrong\); set architecture: lambda\.Architecture\.ARM_64$/,
    );
  });

  it('L1 CfnFunction with code.imageUri, forLambda: the repository policy is added', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const repo = new ecr.Repository(stack, 'Repo');
    const image = new TarballImage(stack, 'Img', { tarball: sample, repository: repo, forLambda: true });
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    new lambda.CfnFunction(stack, 'F', {
      packageType: 'Image',
      code: { imageUri: image.imageUri },
      role: role.roleArn,
    });
    const t = Template.fromStack(stack);
    const crId = stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never);
    t.hasResourceProperties('AWS::Lambda::Function', {
      PackageType: 'Image',
      Code: { ImageUri: { 'Fn::GetAtt': [crId, 'ImageUri'] } },
    });
    t.hasResourceProperties('AWS::ECR::Repository', {
      RepositoryPolicyText: {
        Statement: Match.arrayWith([Match.objectLike({ Principal: { Service: 'lambda.amazonaws.com' } })]),
      },
    });
  });

  it('ECS Fargate task definition: the container image is the resource URI and the execution role may pull', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const image = new TarballImage(stack, 'Img', { tarball: multi });
    const td = new ecs.FargateTaskDefinition(stack, 'Task', { cpu: 256, memoryLimitMiB: 512 });
    td.addContainer('app', { image: image.toEcsImage() });
    const t = Template.fromStack(stack);
    const crId = stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never);
    t.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Image: { 'Fn::GetAtt': [crId, 'ImageUri'] } })],
    });
    const execRoleId = stack.getLogicalId(td.executionRole!.node.defaultChild as never);
    const pull = Object.values(t.findResources('AWS::IAM::Policy')).find((p) =>
      JSON.stringify(p).includes(execRoleId),
    ) as { Properties: { PolicyDocument: { Statement: { Action: string[] | string; Resource: unknown }[] } } };
    assert.ok(pull, 'a policy on the execution role');
    const acts = pull.Properties.PolicyDocument.Statement.flatMap((s) => actionsOf(s));
    assert.ok(
      acts.includes('ecr:BatchGetImage') &&
        acts.includes('ecr:GetDownloadUrlForLayer') &&
        acts.includes('ecr:GetAuthorizationToken'),
    );
    assert.equal(image.facts.all, true, 'every platform: the stored index is pushed for ECS');
  });

  it('L1 CfnTaskDefinition with image: imageUri, execution role granted with grantPull', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const image = new TarballImage(stack, 'Img', { tarball: gzipAmd });
    const exec = new iam.Role(stack, 'Exec', { assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com') });
    image.grantPull(exec);
    new ecs.CfnTaskDefinition(stack, 'TD', {
      requiresCompatibilities: ['FARGATE'],
      networkMode: 'awsvpc',
      cpu: '256',
      memory: '512',
      executionRoleArn: exec.roleArn,
      containerDefinitions: [{ name: 'app', image: image.imageUri, essential: true }],
    });
    const t = Template.fromStack(stack);
    const crId = stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never);
    t.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [Match.objectLike({ Image: { 'Fn::GetAtt': [crId, 'ImageUri'] } })],
    });
    t.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: stack.getLogicalId(exec.node.defaultChild as never) }],
      PolicyDocument: {
        Statement: Match.arrayWith([Match.objectLike({ Action: Match.arrayWith(['ecr:BatchGetImage']) })]),
      },
    });
  });
});

describe('TarballImage synth failures name the construct path', () => {
  it('an archive that is not a tar', async () => {
    const bad = await notATar();
    throwsAt(() => stackWith({ tarball: bad.path }), 'Stack/Img', /NOT_A_TAR|UNSUPPORTED_COMPRESSION|not a tar/i);
  });

  it('a truncated archive', async () => {
    const bad = await truncatedTar();
    throwsAt(() => stackWith({ tarball: bad.path }), 'Stack/Img', /TRUNCATED/);
  });

  it('a missing file, a directory', () => {
    throwsAt(() => stackWith({ tarball: '/nonexistent/app.tar' }), 'Stack/Img', /does not exist/);
    throwsAt(() => stackWith({ tarball: REPO_DIR }), 'Stack/Img', /is a directory/);
  });

  it('an unknown platform', () => {
    throwsAt(
      () => stackWith({ tarball: sample, platform: 'linux/s390x' }),
      'Stack/Img',
      /PLATFORM_NOT_FOUND.*|no linux\/s390x image/,
    );
  });

  it('an unknown image name', () => {
    throwsAt(
      () => stackWith({ tarball: sample, imageName: 'nope:1' }),
      'Stack/Img',
      /no image named nope:1.*IMAGE_NOT_FOUND/,
    );
  });

  it('Lambda given several platforms and an attestation manifest', () => {
    const { image } = stackWith({ tarball: multi, imageName: 'app:multi' });
    throwsAt(() => image.toLambdaCode(), 'Stack/Img', /single-platform.*attestation.*set platform/);
    throwsAt(() => stackWith({ tarball: multi, forLambda: true }), 'Stack/Img', /single-platform/);
  });

  it('Lambda given zstd layers, or compress zstd', () => {
    throwsAt(
      () => stackWith({ tarball: zstdArm, forLambda: true }),
      'Stack/Img',
      /zstd layers; rebuild the archive with gzip layers/,
    );
    throwsAt(
      () => stackWith({ tarball: sample, compress: TarballImageCompression.ZSTD, forLambda: true }),
      'Stack/Img',
      /zstd layers; use compress: 'gzip'/,
    );
  });

  it('bad options: compress, tag, memorySize, timeout', () => {
    throwsAt(() => stackWith({ tarball: sample, compress: 'xz' as never }), 'Stack/Img', /compress must be/);
    throwsAt(() => stackWith({ tarball: sample, tag: '-bad' }), 'Stack/Img', /not a valid tag/);
    throwsAt(() => stackWith({ tarball: sample, memorySize: 128 }), 'Stack/Img', /memorySize/);
    throwsAt(() => stackWith({ tarball: sample, timeout: Duration.minutes(20) }), 'Stack/Img', /timeout/);
  });

  it('a synthesizer without a bootstrap repository and no repository prop', () => {
    throwsAt(
      () => stackWith({ tarball: sample }, { env: ENV, synthesizer: new LegacyStackSynthesizer() }),
      'Stack/Img',
      /LegacyStackSynthesizer.*pass repository/,
    );
  });
});

describe('TarballImage synth failures are TarballImageValidationError', () => {
  /** What `fn` throws. */
  function thrown(fn: () => unknown): unknown {
    try {
      fn();
    } catch (e) {
      return e;
    }
    assert.fail('expected a throw');
  }

  it('a bad prop: an Error of the construct, typed, with its path', () => {
    const e = thrown(() => stackWith({ tarball: sample, memorySize: 128 }));
    assert.ok(e instanceof TarballImageValidationError);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'TarballImageValidationError');
    assert.equal(e.type, 'validation');
    assert.equal(e.constructPath, 'Stack/Img');
    assert.equal(e.message, 'Stack/Img: memorySize 128 is outside 512..10240 MiB');
    assert.match(String(e), /^TarballImageValidationError: Stack\/Img: memorySize/);
  });

  it("a consumer's failure (DockerImageFunction of the wrong architecture), at synth, is the image's error", () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const image = new TarballImage(stack, 'Img', { tarball: gzipAmd });
    const code = image.toLambdaCode();
    new lambda.DockerImageFunction(stack, 'Fn', { code, architecture: lambda.Architecture.ARM_64 });
    const e = thrown(() => app.synth());
    assert.ok(e instanceof TarballImageValidationError);
    assert.equal(e.constructPath, 'Stack/Img');
    // toLambdaCode() and forLambda fail the same way.
    const multiImage = new TarballImage(stack, 'Multi', { tarball: multi, imageName: 'app:multi' });
    assert.ok(thrown(() => multiImage.toLambdaCode()) instanceof TarballImageValidationError);
    assert.ok(thrown(() => stackWith({ tarball: zstdArm, forLambda: true })) instanceof TarballImageValidationError);
  });
});

describe('TarballImage synth: consumers are deployed after the push', () => {
  type Resources = Record<string, { Type: string; Properties?: unknown; DependsOn?: string | string[] }>;

  /** The logical ids a value refers to: Ref, Fn::GetAtt, and ${Id} / ${Id.Attr} in Fn::Sub. */
  function refsOf(v: unknown, via: { getAtt: Set<string>; ref: Set<string> }): void {
    if (Array.isArray(v)) for (const x of v) refsOf(x, via);
    else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (k === 'Ref' && typeof x === 'string') via.ref.add(x);
        else if (k === 'Fn::GetAtt' && Array.isArray(x)) via.getAtt.add(String(x[0]));
        else if (k === 'Fn::Sub') {
          const text = Array.isArray(x) ? String(x[0]) : String(x);
          for (const m of text.matchAll(/\$\{([^}.!]+)(\.[^}]+)?\}/g)) (m[2] ? via.getAtt : via.ref).add(m[1]!);
          if (Array.isArray(x)) refsOf(x[1], via);
        } else refsOf(x, via);
      }
    }
  }

  /** The resources `id` waits for in CloudFormation: DependsOn, Ref and Fn::GetAtt, transitively. */
  function waitsFor(resources: Resources, id: string): Set<string> {
    const seen = new Set<string>();
    const todo = [id];
    while (todo.length > 0) {
      const r = resources[todo.pop()!];
      if (r === undefined) continue;
      const via = { getAtt: new Set<string>(), ref: new Set<string>() };
      refsOf(r.Properties, via);
      const deps = [...via.getAtt, ...via.ref, ...[r.DependsOn ?? []].flat()];
      for (const d of deps) {
        if (d in resources && !seen.has(d)) {
          seen.add(d);
          todo.push(d);
        }
      }
    }
    return seen;
  }

  /**
   * The one resource of `type` DependsOn the custom resource or reads one of its attributes
   * with Fn::GetAtt (what CloudFormation orders deployment by), and the custom resource waits
   * for nothing of the consumer's.
   */
  function deployedAfterPush(stack: Stack, image: TarballImage, type: string): void {
    const resources = Template.fromStack(stack).toJSON().Resources as Resources;
    const crId = stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never);
    const ids = Object.keys(resources).filter((k) => resources[k]!.Type === type && !k.startsWith('ImgHandler'));
    assert.equal(ids.length, 1, `one ${type} consumer`);
    const consumer = resources[ids[0]!]!;
    const via = { getAtt: new Set<string>(), ref: new Set<string>() };
    refsOf(consumer.Properties, via);
    assert.ok(
      via.getAtt.has(crId) || [consumer.DependsOn ?? []].flat().includes(crId),
      `${ids[0]} references ${crId} with Fn::GetAtt or DependsOn it`,
    );
    assert.ok(waitsFor(resources, ids[0]!).has(crId));
    assert.ok(!waitsFor(resources, crId).has(ids[0]!), 'no cycle: the push does not wait for its consumer');
  }

  function fresh(props: Partial<TarballImageProps> = {}): { stack: Stack; image: TarballImage } {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const image = new TarballImage(stack, 'Img', { tarball: gzipAmd, ...props });
    return { stack, image };
  }

  it('L1 CfnFunction with code.imageUri', () => {
    const { stack, image } = fresh({ forLambda: true });
    const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
    new lambda.CfnFunction(stack, 'F', {
      packageType: 'Image',
      code: { imageUri: image.imageUri },
      role: role.roleArn,
    });
    deployedAfterPush(stack, image, 'AWS::Lambda::Function');
  });

  it('L2 DockerImageFunction with toLambdaCode()', () => {
    const { stack, image } = fresh();
    new lambda.DockerImageFunction(stack, 'Fn', { code: image.toLambdaCode() });
    deployedAfterPush(stack, image, 'AWS::Lambda::Function');
  });

  it('L2 DockerImageFunction with toLambdaCode(), handler on the Provider framework (totalTimeout)', () => {
    const { stack, image } = fresh({ totalTimeout: Duration.minutes(30) });
    new lambda.DockerImageFunction(stack, 'Fn', { code: image.toLambdaCode() });
    const resources = Template.fromStack(stack).toJSON().Resources as Resources;
    const ours = Object.keys(resources).filter(
      (k) => resources[k]!.Type === 'AWS::Lambda::Function' && k.startsWith('Fn'),
    );
    assert.equal(ours.length, 1);
    const crId = stack.getLogicalId(image.node.findChild('Resource').node.defaultChild as never);
    assert.ok(waitsFor(resources, ours[0]!).has(crId));
  });

  it('L2 ECS FargateTaskDefinition with toEcsImage()', () => {
    const { stack, image } = fresh();
    const td = new ecs.FargateTaskDefinition(stack, 'Task', { cpu: 256, memoryLimitMiB: 512 });
    td.addContainer('app', { image: image.toEcsImage() });
    deployedAfterPush(stack, image, 'AWS::ECS::TaskDefinition');
  });

  it('L1 CfnTaskDefinition with image: imageUri', () => {
    const { stack, image } = fresh();
    new ecs.CfnTaskDefinition(stack, 'TD', {
      containerDefinitions: [{ name: 'app', image: image.imageUri, essential: true }],
    });
    deployedAfterPush(stack, image, 'AWS::ECS::TaskDefinition');
  });
});

describe('TarballImage synth: what it relies on in aws-cdk-lib beyond the public API', () => {
  it('DefaultStackSynthesizer and CliCredentialsStackSynthesizer keep the image assets repository name in the private field repositoryName', () => {
    // bootstrapRepository reads it (no public API gives it): a rename in aws-cdk-lib fails here.
    // The stack binds a copy of the synthesizer it is given (reusableBind): the field is on that.
    const bound = (synthesizer: DefaultStackSynthesizer | CliCredentialsStackSynthesizer): unknown =>
      Reflect.get(new Stack(new App(), 'Stack', { env: ENV, synthesizer }).synthesizer, 'repositoryName');
    const msg =
      'aws-cdk-lib renamed the private repositoryName: update bootstrapRepository in src/cdk/tarball-image.ts';
    assert.equal(bound(new DefaultStackSynthesizer()), BOOTSTRAP_REPO, msg);
    assert.equal(
      bound(new DefaultStackSynthesizer({ qualifier: 'q1' })),
      BOOTSTRAP_REPO.replace('hnb659fds', 'q1'),
      msg,
    );
    assert.equal(
      bound(new DefaultStackSynthesizer({ imageAssetsRepositoryName: 'images-${Qualifier}-${AWS::Region}' })),
      'images-hnb659fds-eu-west-1',
      msg,
    );
    assert.equal(bound(new CliCredentialsStackSynthesizer({ imageAssetsRepositoryName: 'cli-repo' })), 'cli-repo', msg);
  });

  it('should the field go, synth fails, naming it, instead of guessing the repository', () => {
    class Renamed extends DefaultStackSynthesizer {
      override bind(stack: Stack): void {
        super.bind(stack);
        Reflect.deleteProperty(this, 'repositoryName');
      }
    }
    throwsAt(
      () => stackWith({ tarball: sample }, { env: ENV, synthesizer: new Renamed() }),
      'Stack/Img',
      /Renamed \(its private field repositoryName, which this aws-cdk-lib does not have\); pass repository/,
    );
    // With a repository given, the synthesizer is not consulted.
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV, synthesizer: new Renamed() });
    new TarballImage(stack, 'Img', { tarball: sample, repository: new ecr.Repository(stack, 'Repo') });
  });
});

const REPO_DIR = join(__dirname);

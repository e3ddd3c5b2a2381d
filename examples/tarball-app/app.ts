/**
 * An AWS CDK app that deploys one image archive to AWS Lambda and to an ECS Fargate service,
 * with no docker anywhere: `lading/cdk`'s TarballImage stages the archive as a plain file asset
 * and a custom resource pushes it to ECR at deploy time.
 *
 *   npm run build                     # compiles this app to dist/examples/tarball-app/app.js
 *   node dist/scripts/example-archive.js build/app.tar   # or your own: docker save / jib / ko / nix / bazel
 *   cd examples/tarball-app && npx cdk synth              # or: npx cdk deploy
 *
 * The archive path comes from LADING_EXAMPLE_TARBALL, default build/app.tar (relative to the
 * directory cdk runs in).
 */
import { App, CfnOutput, Duration, Stack, type StackProps } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { TarballImage } from 'lading/cdk';

class TarballAppStack extends Stack {
  constructor(scope: Construct, id: string, tarball: string, props?: StackProps) {
    super(scope, id, props);

    // One archive, one push: both consumers use the same image by digest.
    const image = new TarballImage(this, 'App', { tarball, platform: 'linux/amd64' });

    const fn = new lambda.DockerImageFunction(this, 'Function', {
      code: image.toLambdaCode(),
      architecture: lambda.Architecture.X86_64,
      timeout: Duration.seconds(30),
    });

    const vpc = new ec2.Vpc(this, 'Vpc', { maxAzs: 2, natGateways: 0 });
    const cluster = new ecs.Cluster(this, 'Cluster', { vpc });
    const task = new ecs.FargateTaskDefinition(this, 'Task', { cpu: 256, memoryLimitMiB: 512 });
    task.addContainer('app', { image: image.toEcsImage(), logging: ecs.LogDrivers.awsLogs({ streamPrefix: 'app' }) });
    new ecs.FargateService(this, 'Service', {
      cluster,
      taskDefinition: task,
      assignPublicIp: true,
      vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
    });

    new CfnOutput(this, 'ImageUri', { value: image.imageUri });
    new CfnOutput(this, 'FunctionName', { value: fn.functionName });
  }
}

const app = new App();
new TarballAppStack(app, 'LadingTarballApp', process.env.LADING_EXAMPLE_TARBALL ?? 'build/app.tar');
app.synth();

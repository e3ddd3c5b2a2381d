/**
 * TarballImage's handler placement and identity props (issue 12): vpc, vpcSubnets,
 * securityGroups, allowAllOutbound, role, logGroup, architecture. Template assertions for
 * each, synth failures naming the construct path for inconsistent ones, and the template of
 * an app that passes none of them left as it was.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import { App, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { TarballImage, type TarballImageProps } from '../../src/cdk';
import { actionsOf, ensureHandlerBundle, sampleArchive, throwsAt } from './helpers';

const ENV = { account: '123456789012', region: 'eu-west-1' };

let sample: string;

before(() => {
  ensureHandlerBundle();
  sample = sampleArchive();
});

type Extra = Omit<TarballImageProps, 'tarball'>;

/** A stack holding `Img`; `extra` builds the props from the stack (VPCs, roles...). */
function synth(extra: (stack: Stack) => Extra = () => ({})): { stack: Stack; image: TarballImage; t: Template } {
  const app = new App();
  const stack = new Stack(app, 'Stack', { env: ENV });
  const image = new TarballImage(stack, 'Img', { tarball: sample, ...extra(stack) });
  return { stack, image, t: Template.fromStack(stack) };
}

function id(stack: Stack, c: { node: { defaultChild?: unknown } }): string {
  return stack.getLogicalId(c.node.defaultChild as never);
}

/** The handler's AWS::Lambda::Function properties (the only function of these stacks). */
function handlerProps(t: Template): Record<string, unknown> {
  const fns = Object.values(t.findResources('AWS::Lambda::Function'));
  assert.equal(fns.length, 1);
  return (fns[0] as { Properties: Record<string, unknown> }).Properties;
}

/** Every IAM statement of the template's policies, with the roles each policy is attached to. */
function statements(t: Template): { Action: string | string[]; Resource: unknown; roles: unknown }[] {
  return Object.values(t.findResources('AWS::IAM::Policy')).flatMap((p) => {
    const props = (
      p as {
        Properties: {
          Roles: unknown;
          PolicyDocument: { Statement: { Action: string | string[]; Resource: unknown }[] };
        };
      }
    ).Properties;
    return props.PolicyDocument.Statement.map((s) => ({ ...s, roles: props.Roles }));
  });
}

/** A VPC of isolated subnets only, reaching AWS through endpoints. */
function isolatedVpc(stack: Stack): ec2.Vpc {
  return new ec2.Vpc(stack, 'Vpc', {
    maxAzs: 2,
    natGateways: 0,
    subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }],
  });
}

describe('TarballImage without the VPC props: the template of before', () => {
  it('the handler has the same properties, one role with the basic execution policy, no security group or log group', () => {
    const { t } = synth();
    const fn = handlerProps(t);
    // The property set of the handler before these props existed: nothing added, nothing lost.
    assert.deepEqual(Object.keys(fn).sort(), [
      'Architectures',
      'Code',
      'Description',
      'Environment',
      'Handler',
      'MemorySize',
      'Role',
      'Runtime',
      'Timeout',
    ]);
    assert.deepEqual(fn.Architectures, ['arm64']);
    assert.deepEqual(fn.Environment, { Variables: { XDG_CACHE_HOME: '/tmp/lading-cache' } });
    t.resourceCountIs('AWS::IAM::Role', 1);
    t.resourceCountIs('AWS::IAM::Policy', 1);
    t.resourceCountIs('AWS::EC2::SecurityGroup', 0);
    t.resourceCountIs('AWS::Logs::LogGroup', 0);
    t.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: [
        {
          'Fn::Join': [
            '',
            ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/service-role/AWSLambdaBasicExecutionRole'],
          ],
        },
      ],
    });
    assert.deepEqual(Object.keys(t.toJSON().Resources as object).length, 4, 'role, policy, function, custom resource');
  });

  it('architecture ARM_64 given explicitly synthesizes the very same template', () => {
    const a = synth().t.toJSON();
    const b = synth(() => ({ architecture: lambda.Architecture.ARM_64 })).t.toJSON();
    assert.deepEqual(b, a);
  });
});

describe('TarballImage in a VPC', () => {
  it('vpc alone: the default private subnets, a created security group open outbound, the VPC access policy, after the NAT routes', () => {
    const { stack, t } = synth((s) => ({ vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2 }) }));
    const vpc = stack.node.findChild('Vpc') as ec2.Vpc;
    const sgs = t.findResources('AWS::EC2::SecurityGroup');
    assert.equal(Object.keys(sgs).length, 1);
    const sgId = Object.keys(sgs)[0]!;
    t.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: {
        SubnetIds: vpc.privateSubnets.map((sn) => ({ Ref: id(stack, sn) })),
        SecurityGroupIds: [{ 'Fn::GetAtt': [sgId, 'GroupId'] }],
      },
    });
    t.hasResourceProperties('AWS::EC2::SecurityGroup', {
      VpcId: { Ref: id(stack, vpc) },
      SecurityGroupEgress: [{ CidrIp: '0.0.0.0/0', IpProtocol: '-1' }],
    });
    t.hasResourceProperties('AWS::IAM::Role', {
      ManagedPolicyArns: Match.arrayWith([
        {
          'Fn::Join': [
            '',
            ['arn:', { Ref: 'AWS::Partition' }, ':iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole'],
          ],
        },
      ]),
    });
    // The function waits for the private subnets' routes to the NAT gateways.
    const fn = Object.values(t.findResources('AWS::Lambda::Function'))[0] as { DependsOn: string[] };
    assert.ok(
      fn.DependsOn.some((d) => /PrivateSubnet1DefaultRoute/.test(d)),
      JSON.stringify(fn.DependsOn),
    );
  });

  it('vpcSubnets and securityGroups: the selected subnets and the given groups, no group created', () => {
    const { stack, t } = synth((s) => {
      const vpc = new ec2.Vpc(s, 'Vpc', {
        maxAzs: 2,
        subnetConfiguration: [
          { name: 'pub', subnetType: ec2.SubnetType.PUBLIC },
          { name: 'app', subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS },
          { name: 'data', subnetType: ec2.SubnetType.PRIVATE_ISOLATED },
        ],
      });
      const sg = new ec2.SecurityGroup(s, 'Sg', { vpc });
      const imported = ec2.SecurityGroup.fromSecurityGroupId(s, 'Imported', 'sg-0123456789abcdef0');
      return { vpc, vpcSubnets: { subnetGroupName: 'data' }, securityGroups: [sg, imported] };
    });
    const vpc = stack.node.findChild('Vpc') as ec2.Vpc;
    const data = vpc.isolatedSubnets;
    assert.equal(data.length, 2);
    t.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: {
        SubnetIds: data.map((sn) => ({ Ref: id(stack, sn) })),
        SecurityGroupIds: [
          { 'Fn::GetAtt': [id(stack, stack.node.findChild('Sg') as ec2.SecurityGroup), 'GroupId'] },
          'sg-0123456789abcdef0',
        ],
      },
    });
    t.resourceCountIs('AWS::EC2::SecurityGroup', 1);
  });

  it('allowAllOutbound false: the created group lets nothing out until rules are added', () => {
    synth((s) => ({ vpc: isolatedVpc(s), allowAllOutbound: false })).t.hasResourceProperties(
      'AWS::EC2::SecurityGroup',
      {
        SecurityGroupEgress: [Match.objectLike({ CidrIp: '255.255.255.255/32' })],
      },
    );
    // The way the prop's documentation gives to open HTTPS to an endpoint.
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const vpc = isolatedVpc(stack);
    const ecrApi = vpc.addInterfaceEndpoint('EcrApi', { service: ec2.InterfaceVpcEndpointAwsService.ECR });
    const image = new TarballImage(stack, 'Img', { tarball: sample, vpc, allowAllOutbound: false });
    image.handler.connections.allowTo(ecrApi, ec2.Port.tcp(443));
    Template.fromStack(stack).hasResourceProperties('AWS::EC2::SecurityGroupEgress', {
      IpProtocol: 'tcp',
      FromPort: 443,
      ToPort: 443,
    });
  });

  it('endpoints made dependencies of the construct come before the custom resource (the README advice)', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const vpc = isolatedVpc(stack);
    const s3 = vpc.addGatewayEndpoint('S3', { service: ec2.GatewayVpcEndpointAwsService.S3 });
    const ecrApi = vpc.addInterfaceEndpoint('EcrApi', { service: ec2.InterfaceVpcEndpointAwsService.ECR });
    const image = new TarballImage(stack, 'Img', { tarball: sample, vpc });
    image.node.addDependency(s3, ecrApi);
    const t = Template.fromStack(stack);
    const cr = Object.values(t.findResources('Custom::LadingTarballImage'))[0] as { DependsOn: string[] };
    assert.ok(cr.DependsOn.includes(id(stack, s3 as never)), JSON.stringify(cr.DependsOn));
    assert.ok(cr.DependsOn.includes(id(stack, ecrApi as never)), JSON.stringify(cr.DependsOn));
    t.hasResourceProperties('AWS::Lambda::Function', {
      VpcConfig: { SubnetIds: vpc.isolatedSubnets.map((sn) => ({ Ref: id(stack, sn) })) },
    });
  });
});

describe('TarballImage role, logGroup, architecture', () => {
  it('a role of the app: the push statements go to it, no other role is created, no managed policy is added', () => {
    const { stack, t } = synth((s) => ({
      role: new iam.Role(s, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') }),
    }));
    const roleId = id(stack, stack.node.findChild('Role') as iam.Role);
    t.resourceCountIs('AWS::IAM::Role', 1);
    t.hasResourceProperties('AWS::Lambda::Function', { Role: { 'Fn::GetAtt': [roleId, 'Arn'] } });
    assert.equal(
      (Object.values(t.findResources('AWS::IAM::Role'))[0] as { Properties: Record<string, unknown> }).Properties
        .ManagedPolicyArns,
      undefined,
    );
    const st = statements(t);
    for (const action of ['s3:GetObject', 'ecr:PutImage', 'ecr:GetAuthorizationToken']) {
      const s = st.find((x) => actionsOf(x).includes(action));
      assert.ok(s, action);
      assert.deepEqual(s.roles, [{ Ref: roleId }], action);
    }
  });

  it('an imported role: a policy attached to it by name, no role created, the custom resource after that policy', () => {
    const { stack, t } = synth((s) => ({
      role: iam.Role.fromRoleArn(s, 'Role', 'arn:aws:iam::123456789012:role/lading-pusher'),
    }));
    t.resourceCountIs('AWS::IAM::Role', 0);
    t.hasResourceProperties('AWS::Lambda::Function', { Role: 'arn:aws:iam::123456789012:role/lading-pusher' });
    const st = statements(t);
    assert.ok(st.some((x) => actionsOf(x).includes('ecr:PutImage')));
    assert.ok(st.every((x) => JSON.stringify(x.roles) === JSON.stringify(['lading-pusher'])));
    const policyId = Object.keys(t.findResources('AWS::IAM::Policy'))[0]!;
    const cr = Object.values(t.findResources('Custom::LadingTarballImage'))[0] as { DependsOn: string[] };
    assert.ok(cr.DependsOn.includes(policyId), `${policyId} in ${JSON.stringify(cr.DependsOn)}`);
    assert.ok(stack.node.findChild('Role'));
  });

  it('logGroup: the handler logs to it', () => {
    const { stack, t } = synth((s) => ({
      logGroup: new logs.LogGroup(s, 'Logs', { retention: logs.RetentionDays.ONE_MONTH }),
    }));
    const lg = stack.node.findChild('Logs') as logs.LogGroup;
    t.hasResourceProperties('AWS::Lambda::Function', { LoggingConfig: { LogGroup: { Ref: id(stack, lg) } } });
    t.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 30 });
  });

  it('architecture: arm64 by default, x86_64 when asked; the image platform is another matter', () => {
    synth().t.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['arm64'] });
    // The sample image is linux/amd64 either way.
    const { image, t } = synth(() => ({ architecture: lambda.Architecture.X86_64 }));
    t.hasResourceProperties('AWS::Lambda::Function', { Architectures: ['x86_64'] });
    assert.equal(image.facts.manifests[0]!.platform, 'linux/amd64');
  });

  it('two images with different props get two functions with each their own (no shared singleton)', () => {
    const app = new App();
    const stack = new Stack(app, 'Stack', { env: ENV });
    const vpc = isolatedVpc(stack);
    const a = new TarballImage(stack, 'A', { tarball: sample, vpc });
    const b = new TarballImage(stack, 'B', { tarball: sample, architecture: lambda.Architecture.X86_64 });
    const t = Template.fromStack(stack);
    t.resourceCountIs('AWS::Lambda::Function', 2);
    const fa = t.toJSON().Resources[id(stack, a.handler)].Properties as Record<string, unknown>;
    const fb = t.toJSON().Resources[id(stack, b.handler)].Properties as Record<string, unknown>;
    assert.deepEqual(fa.Architectures, ['arm64']);
    assert.ok(fa.VpcConfig);
    assert.deepEqual(fb.Architectures, ['x86_64']);
    assert.equal(fb.VpcConfig, undefined);
  });
});

describe('TarballImage inconsistent network props fail synth, naming the construct path', () => {
  const sg = (s: Stack) => ec2.SecurityGroup.fromSecurityGroupId(s, 'Sg', 'sg-0123456789abcdef0');

  it('securityGroups, vpcSubnets or allowAllOutbound without a vpc', () => {
    throwsAt(() => synth((s) => ({ securityGroups: [sg(s)] })), 'Stack/Img', /securityGroups needs vpc/);
    throwsAt(
      () => synth(() => ({ vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_ISOLATED } })),
      'Stack/Img',
      /vpcSubnets needs vpc/,
    );
    throwsAt(() => synth(() => ({ allowAllOutbound: true })), 'Stack/Img', /allowAllOutbound needs vpc/);
    throwsAt(() => synth(() => ({ allowAllOutbound: false })), 'Stack/Img', /allowAllOutbound needs vpc/);
  });

  it('allowAllOutbound with securityGroups (as lambda.Function), an empty securityGroups', () => {
    throwsAt(
      () => synth((s) => ({ vpc: isolatedVpc(s), securityGroups: [sg(s)], allowAllOutbound: false })),
      'Stack/Img',
      /allowAllOutbound.*with securityGroups, set the outbound rules on those groups/,
    );
    throwsAt(() => synth((s) => ({ vpc: isolatedVpc(s), securityGroups: [] })), 'Stack/Img', /securityGroups is empty/);
  });

  it('public subnets, chosen or the only ones; a subnet type the VPC lacks; an empty selection', () => {
    throwsAt(
      () =>
        synth((s) => ({
          vpc: new ec2.Vpc(s, 'Vpc', { maxAzs: 2 }),
          vpcSubnets: { subnetType: ec2.SubnetType.PUBLIC },
        })),
      'Stack/Img',
      /public subnet\(s\) \(Stack\/Vpc\/PublicSubnet1, .*select private subnets/,
    );
    const publicOnly = (s: Stack) =>
      new ec2.Vpc(s, 'Vpc', {
        maxAzs: 1,
        natGateways: 0,
        subnetConfiguration: [{ name: 'pub', subnetType: ec2.SubnetType.PUBLIC }],
      });
    throwsAt(() => synth((s) => ({ vpc: publicOnly(s) })), 'Stack/Img', /public subnet/);
    throwsAt(
      () => synth((s) => ({ vpc: isolatedVpc(s), vpcSubnets: { subnetType: ec2.SubnetType.PRIVATE_WITH_EGRESS } })),
      'Stack/Img',
      /choosing the handler's subnets: /,
    );
    throwsAt(
      () => synth((s) => ({ vpc: isolatedVpc(s), vpcSubnets: { subnets: [] } })),
      'Stack/Img',
      /no subnet of the VPC for the handler in the vpcSubnets selection/,
    );
  });

  it('an architecture other than arm64 or x86_64', () => {
    throwsAt(
      () => synth(() => ({ architecture: lambda.Architecture.custom('riscv64') })),
      'Stack/Img',
      /architecture must be lambda.Architecture.ARM_64 or X86_64, not riscv64/,
    );
  });
});

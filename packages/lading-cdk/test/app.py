"""A Python CDK app using lading-cdk's TarballImage, synthesized by test/python.test.js.

Usage: python app.py MODE ARCHIVE OUTDIR
  MODE good: a TarballImage consumed by an L2 DockerImageFunction, an L1 CfnFunction and an
             ECS task; synthesizes to OUTDIR and prints what Python saw as one JSON line.
  MODE arch: the image given to an arm64 DockerImageFunction; prints the error Python caught
             when the app is synthesized.
  MODE bad:  a TarballImage of an archive that is not one; prints the error Python caught.
"""
import json
import sys

import aws_cdk as cdk
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lading_cdk import TarballImage, TarballImageCompression


class ImageStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, archive: str) -> None:
        super().__init__(scope, construct_id, env=cdk.Environment(account="123456789012", region="eu-west-1"))
        image = TarballImage(
            self,
            "Img",
            tarball=archive,
            platform="linux/amd64",
            compress=TarballImageCompression.GZIP,
        )
        # L2: the image as Lambda code (checks at synth that Lambda can run it).
        lambda_.DockerImageFunction(
            self, "L2Function", code=image.to_lambda_code(), architecture=lambda_.Architecture.X86_64
        )
        # L1: the image URI, a Fn::GetAtt of the custom resource.
        role = iam.Role(self, "L1Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"))
        lambda_.CfnFunction(
            self,
            "L1Function",
            package_type="Image",
            role=role.role_arn,
            code=lambda_.CfnFunction.CodeProperty(image_uri=image.image_uri),
        )
        # ECS: an image class implemented in TypeScript, handed to aws-cdk-lib through jsii.
        task = ecs.FargateTaskDefinition(self, "Task", cpu=256, memory_limit_mib=512)
        task.add_container("app", image=image.to_ecs_image())
        facts = image.facts
        self.seen = {
            "format": facts.format,
            "all": facts.all,
            "names": facts.names,
            "platforms": [m.platform for m in facts.manifests],
            "layers": [m.layers for m in facts.manifests],
            "imageUriIsToken": cdk.Token.is_unresolved(image.image_uri),
            "compressName": TarballImageCompression.GZIP.name,
        }


def main() -> None:
    mode, archive, outdir = sys.argv[1:4]
    app = cdk.App(outdir=outdir)
    if mode == "good":
        stack = ImageStack(app, "PyStack", archive)
        app.synth()
        print(json.dumps({"seen": stack.seen}))
    elif mode == "arch":
        # Lambda safety at synth, through jsii: an arm64 function given this linux/amd64 image
        # (the architecture is checked when the app is synthesized).
        stack = cdk.Stack(app, "ArchStack", env=cdk.Environment(account="123456789012", region="eu-west-1"))
        image = TarballImage(stack, "Img", tarball=archive)
        lambda_.DockerImageFunction(stack, "Fn", code=image.to_lambda_code(), architecture=lambda_.Architecture.ARM_64)
        try:
            app.synth()
        except Exception as e:
            print(json.dumps({"error": str(e), "type": type(e).__name__}))
            return
        print(json.dumps({"error": None}))
    else:
        stack = cdk.Stack(app, "BadStack", env=cdk.Environment(account="123456789012", region="eu-west-1"))
        try:
            TarballImage(stack, "Img", tarball=archive)
        except Exception as e:  # jsii raises the JavaScript error as a Python exception
            print(json.dumps({"error": str(e), "type": type(e).__name__}))
            return
        print(json.dumps({"error": None}))


if __name__ == "__main__":
    main()

package app;

import io.github.lading.cdk.TarballImage;
import io.github.lading.cdk.TarballImageCompression;
import software.amazon.awscdk.Environment;
import software.amazon.awscdk.Stack;
import software.amazon.awscdk.services.iam.Role;
import software.amazon.awscdk.services.iam.ServicePrincipal;
import software.amazon.awscdk.services.lambda.Architecture;
import software.amazon.awscdk.services.lambda.CfnFunction;
import software.amazon.awscdk.services.lambda.DockerImageFunction;

/**
 * A Java CDK app using lading-cdk's TarballImage (test/java.test.js). Arguments: MODE ARCHIVE OUTDIR.
 * good: an L2 DockerImageFunction and an L1 CfnFunction from one TarballImage, synthesized to OUTDIR;
 * bad: a TarballImage of ARCHIVE, printing the error Java caught. Prints one JSON line.
 */
public final class App {
  public static void main(final String[] args) {
    String mode = args[0];
    String archive = args[1];
    software.amazon.awscdk.App app = software.amazon.awscdk.App.Builder.create().outdir(args[2]).build();
    Environment env = Environment.builder().account("123456789012").region("eu-west-1").build();
    if (mode.equals("bad")) {
      Stack stack = Stack.Builder.create(app, "BadStack").env(env).build();
      try {
        TarballImage.Builder.create(stack, "Img").tarball(archive).build();
        System.out.println("{\"error\": null}");
      } catch (RuntimeException e) {
        System.out.println("{\"error\": \"" + escape(e.getMessage()) + "\"}");
      }
      return;
    }
    Stack stack = Stack.Builder.create(app, "JavaStack").env(env).build();
    TarballImage image = TarballImage.Builder.create(stack, "Img")
        .tarball(archive)
        .platform("linux/amd64")
        .compress(TarballImageCompression.GZIP)
        .build();
    DockerImageFunction.Builder.create(stack, "L2Function")
        .code(image.toLambdaCode())
        .architecture(Architecture.X86_64)
        .build();
    Role role = Role.Builder.create(stack, "L1Role").assumedBy(new ServicePrincipal("lambda.amazonaws.com")).build();
    CfnFunction.Builder.create(stack, "L1Function")
        .packageType("Image")
        .role(role.getRoleArn())
        .code(CfnFunction.CodeProperty.builder().imageUri(image.getImageUri()).build())
        .build();
    app.synth();
    System.out.println("{\"platform\": \"" + escape(image.getFacts().getManifests().get(0).getPlatform()) + "\"}");
  }

  private static String escape(final String s) {
    return s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n");
  }
}

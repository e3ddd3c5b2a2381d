/**
 * `npm run demo`: lading end to end with nothing but Node.js. Builds a small sample image
 * archive, inspects and verifies it, pushes it (gzip-compressing its layers) into an OCI
 * layout directory, reads that back and verifies every digest, then cleans up.
 * Pass an archive path to use your own: `npm run demo -- my-image.tar`.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspectArchive } from '../src/archive';
import { main } from '../src/cli/main';
import { sampleDockerArchive } from '../src/sample';

async function run(): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-demo-'));
  try {
    let archive = process.argv[2];
    if (archive === undefined) {
      archive = join(dir, 'sample.tar');
      await writeFile(archive, sampleDockerArchive());
      console.log(`== built a sample image archive: ${archive}`);
    }
    console.log(`\n== lading inspect ${archive}`);
    let code = await main(['inspect', archive]);
    if (code !== 0) return code;

    const out = join(dir, 'layout');
    console.log(`\n== lading push ${archive} oci:${out} --tag demo`);
    let reference = '';
    code = await main(['push', archive, `oci:${out}`, '--tag', 'demo', '--no-cache'], {
      stdout: (s) => {
        reference = s.trim();
        console.log(s);
      },
    });
    if (code !== 0) return code;

    console.log(`\n== reading the pushed layout back and verifying every blob`);
    const back = await inspectArchive(out, { verify: true });
    const image = back.images[0]!;
    const pinned = reference.slice(reference.lastIndexOf('@') + 1);
    if (image.digest !== pinned) {
      console.error(`demo: the layout holds ${image.digest}, push reported ${pinned}`);
      return 1;
    }
    const layers = image.manifests.flatMap((m) => m.layers);
    console.log(`verified: manifest ${image.digest}, ${layers.length} layers (${layers.map((l) => l.mediaType.split('.').pop()).join(', ')})`);
    console.log(`\n${reference}`);
    return 0;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`demo failed: ${(e as Error).message}`);
    process.exitCode = 1;
  },
);

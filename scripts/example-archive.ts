/**
 * Writes lading's small sample image archive (a docker save of one linux/amd64 image) to the
 * path given, as a stand-in for what a real build (jib, ko, nix, bazel, docker save) writes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { sampleDockerArchive } from '../src/sample';

const out = process.argv[2] ?? 'build/app.tar';
mkdirSync(dirname(out), { recursive: true });
writeFileSync(out, sampleDockerArchive('example-app:1'));
console.log(out);

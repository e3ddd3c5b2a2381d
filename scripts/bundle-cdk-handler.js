#!/usr/bin/env node
/**
 * Bundles the TarballImage custom-resource handler (src/cdk/handler.ts and what it
 * imports: lading's copy engine, ECR destination, the AWS SDK v3 clients for S3 and ECR)
 * into one file, OUTDIR/cdk-handler/index.js (default OUTDIR: dist), which the construct
 * ships as the Lambda code asset. Run by `npm run build` after tsc.
 *
 * The SDK is bundled rather than taken from the Lambda runtime so that the handler runs the
 * client versions lading was tested with. zstd-napi (a native module) stays out: the
 * handler runs on Node.js 22, whose zlib has zstd.
 */
'use strict';
const { join, resolve } = require('node:path');
const { rmSync } = require('node:fs');
const esbuild = require('esbuild');

const root = resolve(__dirname, '..');
const outDir = resolve(root, process.argv[2] ?? 'dist', 'cdk-handler');
rmSync(outDir, { recursive: true, force: true });
esbuild
  .build({
    entryPoints: [join(root, 'src/cdk/handler.ts')],
    outfile: join(outDir, 'index.js'),
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'cjs',
    minify: true,
    keepNames: true,
    sourcemap: false,
    legalComments: 'external',
    external: ['zstd-napi'],
    logLevel: 'warning',
  })
  .then(() => {
    const size = require('node:fs').statSync(join(outDir, 'index.js')).size;
    console.log(`bundled the TarballImage handler: ${join(outDir, 'index.js')} (${(size / 1024).toFixed(0)} KiB)`);
  })
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });

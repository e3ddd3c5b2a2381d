/**
 * ISA-L picks its deflate code by the CPU's instruction set (SSE4.2, AVX2, AVX-512). A layer's
 * digest must not depend on which machine compressed it, so lading's default igzip level must
 * write the same bytes on all of them. Checked by compressing the same input natively and in
 * the same Node.js run by qemu-x86_64 as a Nehalem (SSE4.2, no AVX) and a Haswell (AVX2, no
 * AVX-512). Input: the Node.js binary's first MiBs and lading's own compiled code (real
 * binaries and text, like a layer).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { IGZIP_DEFAULT_LEVEL } from '../../src/compress/adaptive-gzip';
import { igzip } from '../../src/compress/igzip';

const dir = mkdtempSync(join(tmpdir(), 'lading-igzip-isa-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

/** Every compiled .js file under `root`, in a stable order. */
function jsFiles(root: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(root).sort()) {
    const p = join(root, name);
    if (statSync(p).isDirectory()) out.push(...jsFiles(p));
    else if (name.endsWith('.js')) out.push(p);
  }
  return out;
}

function input(): string {
  const binary = readFileSync(process.execPath).subarray(0, 5 * 1024 * 1024);
  const text = Buffer.concat(jsFiles(join(__dirname, '..', '..', 'src')).map((f) => readFileSync(f)));
  const file = join(dir, 'input.bin');
  writeFileSync(file, Buffer.concat([binary, text, binary.subarray(0, 1024 * 1024)]));
  return file;
}

/** The sha256 of AdaptiveGzip's igzip output at each level, as printed by a child (maybe emulated). */
function digests(file: string, levels: number[], cpu?: string): Record<string, string> {
  const mod = join(__dirname, '..', '..', 'src', 'compress', 'adaptive-gzip.js');
  const script = `
    const { AdaptiveGzip } = require(${JSON.stringify(mod)});
    const { createHash } = require('node:crypto');
    const data = require('node:fs').readFileSync(${JSON.stringify(file)});
    (async () => {
      const out = {};
      for (const level of ${JSON.stringify(levels)}) {
        const gz = new AdaptiveGzip({ engine: 'igzip', level });
        const h = createHash('sha256');
        gz.on('data', (c) => h.update(c));
        await new Promise((resolve, reject) => gz.on('end', resolve).on('error', reject).end(data));
        out[level] = h.digest('hex');
      }
      process.stdout.write(JSON.stringify(out));
    })();`;
  const [cmd, args] = cpu
    ? ['qemu-x86_64', ['-cpu', cpu, process.execPath, '-e', script]]
    : [process.execPath, ['-e', script]];
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 300_000 });
  assert.equal(r.status, 0, `${cpu ?? 'native'}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

describe('igzip on every x86-64 instruction set', () => {
  if (process.arch !== 'x64') {
    it('not an x86-64 machine: nothing to emulate', () => undefined);
    return;
  }

  it('the default level writes the same bytes with SSE4.2, AVX2 and this CPU (qemu-x86_64)', (t) => {
    if (!igzip() || !has('qemu-x86_64')) {
      // CI installs qemu-user and libisal-dev (.ci/run).
      assert.ok(process.env.CI === undefined, `missing: ${igzip() ? 'qemu-x86_64' : 'the igzip binding'}`);
      t.skip('needs the igzip binding and qemu-x86_64');
      return;
    }
    const file = input();
    const levels = [1, IGZIP_DEFAULT_LEVEL, 3].filter((l, i, a) => a.indexOf(l) === i);
    const here = digests(file, levels);
    for (const cpu of ['Nehalem', 'Haswell']) {
      const there = digests(file, levels, cpu);
      assert.equal(there[IGZIP_DEFAULT_LEVEL], here[IGZIP_DEFAULT_LEVEL], `level ${IGZIP_DEFAULT_LEVEL} as a ${cpu}`);
      assert.equal(there[1], here[1], `level 1 as a ${cpu}`);
      // Why the default is not 3: with AVX-512 here, level 3 differs (reported, not asserted:
      // a CPU without AVX-512 runs the same code as the Haswell).
      t.diagnostic(`level 3 as a ${cpu}: ${there[3] === here[3] ? 'the same bytes' : 'other bytes'} than here`);
    }
  });
});

/**
 * AdaptiveGzip compresses one stream in parallel blocks (pigz's design): every output must be
 * one valid gzip member that gzip, pigz and Node inflate to the exact input, and the bytes must
 * depend on the input, level and block size only: not on how the input was written, on the
 * blocks in flight, or on the thread pool's size. No timing here.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { constants, crc32 as zlibCrc32, deflateRawSync, gunzipSync, gzipSync, inflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import {
  AdaptiveGzip,
  BLOCK_SIZE,
  DEFAULT_LEVEL,
  defaultGzipEngine,
  IGZIP_DEFAULT_LEVEL,
  sampleEntropy,
  STORE_ABOVE,
  storedBlocks,
  type AdaptiveGzipOptions,
  type GzipEngine,
} from '../../src/compress/adaptive-gzip';
import { crc32, crc32Combine, crc32Table } from '../../src/compress/crc32';
import { igzip } from '../../src/compress/igzip';
import { BufferPool, isTracked, release } from '../../src/util/buffer-pool';

const KiB = 1024;
const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Compresses `data` written in pieces of the given sizes (cycled), honouring backpressure. */
async function compress(
  data: Buffer,
  opts: AdaptiveGzipOptions = {},
  pieces: number[] = [64 * KiB],
): Promise<{ out: Buffer; gz: AdaptiveGzip }> {
  const gz = new AdaptiveGzip(opts);
  const out: Buffer[] = [];
  gz.on('data', (c: Buffer) => out.push(Buffer.from(c)));
  const ended = new Promise<void>((resolve, reject) => {
    gz.once('end', resolve);
    gz.once('error', reject);
  });
  let off = 0;
  for (let i = 0; off < data.length; i++) {
    const n = Math.max(1, pieces[i % pieces.length]!);
    const c = data.subarray(off, off + n);
    off += c.length;
    if (!gz.write(c)) await new Promise((resolve) => gz.once('drain', resolve));
  }
  gz.end();
  await ended;
  return { out: Buffer.concat(out), gz };
}

/** gzip -t, pigz -t and gunzip -c on the bytes: each must accept them; gzip's output must be `data`. */
function checkWithTools(gz: Buffer, data: Buffer, what: string): void {
  for (const tool of ['gzip', 'pigz']) {
    if (!has(tool)) {
      // CI installs both (.ci/run); elsewhere the check is skipped for a missing tool.
      assert.ok(process.env.CI === undefined, `${tool} is missing`);
      continue;
    }
    const t = spawnSync(tool, ['-t'], { input: gz });
    assert.equal(t.status, 0, `${tool} -t rejects ${what}: ${t.stderr.toString()}`);
  }
  if (has('gzip')) {
    const d = spawnSync('gzip', ['-dc'], { input: gz, maxBuffer: 1 << 30 });
    assert.equal(d.status, 0, `gzip -dc fails on ${what}`);
    assert.ok(d.stdout.equals(data), `gzip -dc of ${what} differs from the input`);
  }
}

/** xorshift32 from a seed: reproducible data in any process. */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

/** Text-like (compressible) or, in about `noise` of the stretches, random (stored) bytes, from a seed. */
function mixed(seed: number, size: number, noise = 1 / 3): Buffer {
  const next = prng(seed);
  const words = [
    'lading ',
    'pushes ',
    'image ',
    'layers ',
    'to ',
    'registries ',
    'gzip ',
    'block ',
    '\n',
    'deflate ',
    'window ',
  ];
  const out = Buffer.alloc(size);
  let off = 0;
  while (off < size) {
    const len = Math.min(size - off, 1 + (next() % (96 * KiB)));
    if (next() / 2 ** 32 < noise) {
      for (let i = 0; i < len; i++) out[off + i] = next() & 0xff;
    } else {
      let i = 0;
      while (i < len) {
        const w = words[next() % words.length]!;
        i += out.write(w, off + i, Math.min(w.length, len - i), 'latin1');
      }
    }
    off += len;
  }
  return out;
}

/**
 * The engines to test: zlib everywhere, igzip where lading's binding is built (always under CI:
 * .ci/run installs libisal-dev and `npm ci` builds it; a test below fails if it did not).
 */
const ENGINES: GzipEngine[] = igzip() ? ['igzip', 'zlib'] : ['zlib'];
const defaultLevel = (engine: GzipEngine): number => (engine === 'igzip' ? IGZIP_DEFAULT_LEVEL : DEFAULT_LEVEL);

/**
 * The format written straight from its description, one block after another: per block,
 * stored if its sampled entropy is high, else raw deflate primed with the input's previous
 * 32 KiB and ended with a sync flush (zlib's deflateRawSync, or one igzip call per block);
 * then an empty final block, CRC-32 and length.
 */
async function reference(data: Buffer, level: number, block: number, engine: GzipEngine = 'zlib'): Promise<Buffer> {
  const parts: Buffer[] = [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])];
  for (let off = 0; off < data.length; off += block) {
    const b = data.subarray(off, off + block);
    const dict = off > 0 ? data.subarray(Math.max(0, off - 32 * KiB), off) : null;
    if (sampleEntropy(b) > STORE_ABOVE[engine]) parts.push(...storedBlocks(b));
    else if (engine === 'igzip') parts.push((await igzip()!.deflate(b, dict, level)).data);
    else {
      const opts = {
        level,
        memLevel: 9,
        flush: constants.Z_SYNC_FLUSH,
        finishFlush: constants.Z_SYNC_FLUSH,
        ...(dict ? { dictionary: dict } : {}),
      };
      parts.push(deflateRawSync(b, opts));
    }
  }
  const trailer = Buffer.alloc(8);
  trailer.writeUInt32LE(zlibCrc32(data), 0);
  trailer.writeUInt32LE(data.length % 2 ** 32, 4);
  parts.push(Buffer.from([3, 0]), trailer);
  return Buffer.concat(parts);
}

describe('AdaptiveGzip in parallel blocks', () => {
  for (const engine of ENGINES)
    it(`${engine}: sizes around block boundaries, compressible, incompressible and mixed: valid gzip, exact input, the reference bytes`, async () => {
      for (const block of [32 * KiB, BLOCK_SIZE]) {
        for (const n of [0, 1, block - 1, block, block + 1, 2 * block, 3 * block + 12345]) {
          for (const [kind, data] of [
            ['text', mixed(7, n, 0)],
            ['noise', randomBytes(n)],
            ['mixed', mixed(n + 1, n)],
          ] as const) {
            const what = `${n} bytes of ${kind} in ${block / KiB} KiB blocks (${engine})`;
            const { out } = await compress(data, { blockSize: block, engine }, [block / 2 + 3, 7, block * 2]);
            assert.ok(gunzipSync(out).equals(data), `gunzip of ${what}`);
            const ref = await reference(data, defaultLevel(engine), block, engine);
            assert.ok(out.equals(ref), `reference bytes for ${what}`);
            checkWithTools(out, data, what);
          }
        }
      }
    });

  it('the igzip binding is built where CI runs, and is then the default engine', () => {
    if (process.env.CI !== undefined)
      assert.ok(igzip(), 'CI installs libisal-dev and npm ci builds native/build/lading_isal.node');
    assert.equal(defaultGzipEngine(), igzip() ? 'igzip' : 'zlib');
    assert.equal(new AdaptiveGzip().engine, defaultGzipEngine());
    assert.equal(new AdaptiveGzip().level, defaultLevel(defaultGzipEngine()));
    // A bare level is zlib's (the CLI's --compression-level), whatever the default engine.
    assert.deepEqual([new AdaptiveGzip(6).engine, new AdaptiveGzip(6).level], ['zlib', 6]);
  });

  it('LADING_GZIP_ENGINE=zlib turns the binding off (child process)', () => {
    const mod = join(__dirname, '..', '..', 'src', 'compress', 'adaptive-gzip.js');
    const script = `process.stdout.write(new (require(${JSON.stringify(mod)}).AdaptiveGzip)().engine)`;
    const run = (env: NodeJS.ProcessEnv): string =>
      spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' }).stdout;
    assert.equal(run({ LADING_GZIP_ENGINE: 'zlib' }), 'zlib');
    assert.equal(run({ LADING_GZIP_ENGINE: '' }), defaultGzipEngine());
  });

  it('one member: gzip header, a final empty block, then CRC-32 and ISIZE', async () => {
    const data = mixed(3, 700 * KiB);
    const { out } = await compress(data);
    assert.deepEqual([...out.subarray(0, 10)], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    assert.deepEqual([...out.subarray(-10, -8)], [3, 0]);
    assert.equal(out.readUInt32LE(out.length - 8), zlibCrc32(data));
    assert.equal(out.readUInt32LE(out.length - 4), data.length);
    // Exactly one member: the first gzip header is the only one gunzip finds.
    assert.ok(gunzipSync(out).equals(data));
    const empty = (await compress(Buffer.alloc(0))).out;
    assert.ok(gunzipSync(empty).length === 0);
    checkWithTools(empty, Buffer.alloc(0), 'empty input');
  });

  it('property: any input, written in any pieces, with any blocks in flight, any engine and level, gives the same valid bytes', async () => {
    const block = 32 * KiB;
    const levels = ENGINES.flatMap((engine) =>
      (engine === 'igzip' ? [1, 2, 3] : [1, 6, 9]).map((level) => ({ engine, level })),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: 5 * block + 3 }),
        fc.integer({ min: 1, max: 1 << 30 }),
        fc.array(fc.integer({ min: 1, max: 3 * block }), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 1, max: 9 }),
        fc.constantFrom(...levels),
        async (size, seed, pieces, inFlight, { engine, level }) => {
          const data = mixed(seed, size);
          const { out } = await compress(data, { blockSize: block, inFlight, level, engine }, pieces);
          assert.ok(gunzipSync(out).equals(data));
          const ref = await reference(data, level, block, engine);
          assert.ok(out.equals(ref), 'same bytes as one block after another');
        },
      ),
      { numRuns: 80 },
    );
  });

  it('stays close to one deflate stream: the dictionary carries matches across blocks', async () => {
    const text = Buffer.from(
      Array.from({ length: 40_000 }, (_, i) => `line ${i % 300} of a log that repeats itself\n`).join(''),
    );
    const { out, gz } = await compress(text, { blockSize: 32 * KiB, engine: 'zlib' });
    const single = gzipSync(text, { level: DEFAULT_LEVEL, memLevel: 9 });
    assert.ok(gz.blocks.deflated > 40, `${gz.blocks.deflated} blocks`);
    assert.ok(out.length <= single.length * 1.03, `${out.length} bytes in blocks vs ${single.length} in one stream`);
    // Without the dictionary each block starts cold: visibly bigger.
    let cold = 0;
    for (let off = 0; off < text.length; off += 32 * KiB)
      cold += deflateRawSync(text.subarray(off, off + 32 * KiB), { level: DEFAULT_LEVEL, memLevel: 9 }).length;
    assert.ok(out.length < cold * 0.97, `${out.length} with the dictionary, ${cold} without`);
    if (igzip()) {
      // igzip takes the dictionary too: its blocks come out as small as a cold zlib's would not.
      const withDict = (await compress(text, { blockSize: 32 * KiB, engine: 'igzip' })).out;
      let igzipCold = 0;
      for (let off = 0; off < text.length; off += 32 * KiB)
        igzipCold += (await igzip()!.deflate(text.subarray(off, off + 32 * KiB), null, IGZIP_DEFAULT_LEVEL)).data
          .length;
      assert.ok(
        withDict.length < igzipCold * 0.97,
        `igzip: ${withDict.length} with the dictionary, ${igzipCold} without`,
      );
    }
  });

  for (const engine of ENGINES)
    it(`${engine}: incompressible blocks are stored, compressible ones deflated`, async () => {
      const data = Buffer.concat([randomBytes(3 * BLOCK_SIZE), Buffer.alloc(2 * BLOCK_SIZE, 'abc'), randomBytes(10)]);
      const { out, gz } = await compress(data, { engine });
      assert.deepEqual(gz.blocks, { deflated: 3, stored: 3 });
      assert.equal(gz.storedBytes, 3 * BLOCK_SIZE);
      assert.ok(gunzipSync(out).equals(data));
    });

  for (const engine of ENGINES)
    it(`${engine}: the same bytes with a thread pool of 1, 2, 4 and 8 threads (child processes)`, async () => {
      const mod = join(__dirname, '..', '..', 'src', 'compress', 'adaptive-gzip.js');
      // The input is made in the child from a seed (the same function as here), compressed with
      // the default block size and blocks in flight, and its sha256 printed.
      const script = `
      const { AdaptiveGzip } = require(${JSON.stringify(mod)});
      const { createHash } = require('node:crypto');
      ${prng.toString()}
      ${mixed.toString().replace(/\bKiB\b/g, '1024')}
      const data = mixed(42, 3 * 1024 * 1024 + 777);
      const gz = new AdaptiveGzip({ engine: ${JSON.stringify(engine)}, level: 1 });
      const h = createHash('sha256');
      gz.on('data', (c) => h.update(c));
      gz.on('end', () => process.stdout.write(h.digest('hex')));
      for (let off = 0; off < data.length; off += 100000) gz.write(data.subarray(off, off + 100000));
      gz.end();
    `;
      const digests = new Map<string, string>();
      for (const threads of ['1', '2', '4', '8']) {
        const r = spawnSync(process.execPath, ['-e', script], {
          env: { ...process.env, UV_THREADPOOL_SIZE: threads },
          encoding: 'utf8',
        });
        assert.equal(r.status, 0, r.stderr);
        digests.set(threads, r.stdout);
      }
      const here = sha((await compress(mixed(42, 3 * 1024 * 1024 + 777), { level: 1, engine }, [4096, 300_000])).out);
      assert.deepEqual(
        [...new Set(digests.values())],
        [here],
        `digests by pool size: ${JSON.stringify(Object.fromEntries(digests))}`,
      );
    });

  for (const engine of ENGINES)
    it(`${engine}: pooled input chunks are all given back, none while still read (poisoned on return)`, async () => {
      BufferPool.poison = true;
      try {
        for (const chunkSize of [BLOCK_SIZE, 100_000]) {
          const pool = new BufferPool(chunkSize, 64);
          const made = new Set<Buffer>();
          const data = mixed(chunkSize, 20 * chunkSize + 4321);
          const gz = new AdaptiveGzip({ engine, level: 1 });
          const out: Buffer[] = [];
          const ended = new Promise<void>((resolve, reject) => {
            gz.on('data', (c: Buffer) => {
              // A sink that ends the chunks' journey: copies, then releases (stored views too).
              out.push(Buffer.from(c));
              if (isTracked(c)) release(c);
            });
            gz.once('end', resolve);
            gz.once('error', reject);
          });
          for (let off = 0; off < data.length; off += chunkSize) {
            const whole = pool.take();
            made.add(whole);
            const n = data.copy(whole, 0, off, off + chunkSize);
            if (!gz.write(pool.emit(whole, n))) await new Promise((resolve) => gz.once('drain', resolve));
          }
          gz.end();
          await ended;
          await new Promise((resolve) => setImmediate(resolve));
          assert.ok(gunzipSync(Buffer.concat(out)).equals(data), `${chunkSize}-byte chunks: intact`);
          assert.equal(pool.idle, made.size, `${chunkSize}-byte chunks: every buffer back in its pool`);
        }
      } finally {
        BufferPool.poison = false;
      }
    });

  it('a destroyed stream stops without error callbacks piling up', async () => {
    const gz = new AdaptiveGzip(1);
    gz.on('error', () => undefined);
    gz.write(mixed(1, 2 * 1024 * 1024));
    gz.destroy(new Error('upload failed'));
    await new Promise((resolve) => gz.once('close', resolve));
    assert.ok(gz.destroyed);
  });

  it('rejects options that would not make valid output', () => {
    assert.throws(() => new AdaptiveGzip({ blockSize: 1000 }), RangeError);
    assert.throws(() => new AdaptiveGzip({ blockSize: 65 * 1024 * 1024 }), RangeError);
    assert.throws(() => new AdaptiveGzip({ level: 10, engine: 'zlib' }), RangeError);
    assert.throws(() => new AdaptiveGzip({ inFlight: 0 }), RangeError);
    if (igzip()) {
      assert.throws(() => new AdaptiveGzip({ level: 4, engine: 'igzip' }), /igzip level must be 1-3, not 4/);
      assert.throws(() => new AdaptiveGzip({ level: 0, engine: 'igzip' }), RangeError);
    }
  });

  it('the igzip binding refuses what it cannot compress, with a TypeError, and rejects nothing valid', async (t) => {
    const b = igzip();
    if (!b) {
      assert.ok(process.env.CI === undefined, 'the igzip binding is missing');
      t.skip('igzip binding not built here');
      return;
    }
    const call = (...args: unknown[]): unknown => (b.deflate as (...a: unknown[]) => unknown)(...args);
    assert.throws(() => call('text', null, 3), { name: 'TypeError', message: /input must be a Buffer/ });
    assert.throws(() => call(Buffer.alloc(1), 'dict', 3), {
      name: 'TypeError',
      message: /dictionary must be a Buffer/,
    });
    for (const level of [0, 4, -1, 1.5, '3'])
      assert.throws(() => call(Buffer.alloc(1), null, level), {
        name: 'TypeError',
        message: /level must be 1, 2 or 3/,
      });
    assert.throws(() => call(Buffer.alloc(1)), { name: 'TypeError', message: /three arguments/ });
    // Valid calls: the block's raw deflate (ended by a sync flush) and its CRC-32.
    const data = mixed(5, 200 * KiB, 0);
    const r = await b.deflate(data, data.subarray(0, 100), 2);
    assert.equal(r.crc, zlibCrc32(data));
    assert.deepEqual([...r.data.subarray(-4)], [0, 0, 0xff, 0xff], 'ends with a sync flush marker');
    const empty = await b.deflate(Buffer.alloc(0), null, 1);
    assert.equal(empty.crc, 0);
    assert.equal(inflateRawSync(Buffer.concat([empty.data, Buffer.from([3, 0])])).length, 0);
  });
});

describe('CRC-32', () => {
  it("crc32Combine joins two blocks' CRCs as zlib's CRC of both (property)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), fc.uint8Array({ maxLength: 3000 }), (a, b) => {
        const ba = Buffer.from(a);
        const bb = Buffer.from(b);
        assert.equal(crc32Combine(zlibCrc32(ba), zlibCrc32(bb), bb.length), zlibCrc32(Buffer.concat([ba, bb])));
      }),
    );
    // Lengths past 32 bits: combining with an empty block changes nothing; the check value holds.
    assert.equal(crc32Combine(0xcbf43926, 0, 0), 0xcbf43926);
    const big = Buffer.alloc(5 * 1024 * 1024, 7);
    assert.equal(crc32Combine(zlibCrc32(big), zlibCrc32(big), big.length), zlibCrc32(Buffer.concat([big, big])));
  });

  it("the hand-written table fallback equals zlib's, whole and in pieces", () => {
    const table = crc32Table();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), fc.nat({ max: 5000 }), (bytes, cut) => {
        const b = Buffer.from(bytes);
        const at = Math.min(cut, b.length);
        assert.equal(table(b), zlibCrc32(b));
        assert.equal(table(b.subarray(at), table(b.subarray(0, at))), zlibCrc32(b));
        assert.equal(crc32(b), zlibCrc32(b));
      }),
    );
    assert.equal(table(Buffer.from('123456789')), 0xcbf43926, 'the check value of CRC-32/ISO-HDLC');
  });
});

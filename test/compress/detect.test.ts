/** Compression is recognised from magic bytes only; names are never trusted. */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { detectCompression, MAGIC_BYTES, supportedCompression } from '../../src/compress/detect';
import { LadingError } from '../../src/errors';

const has = (cmd: string): boolean => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0;

describe('detectCompression', () => {
  const table: [string, number[], ReturnType<typeof detectCompression>][] = [
    ['gzip', [0x1f, 0x8b, 0x08, 0x00, 0, 0], 'gzip'],
    ['gzip, two bytes only', [0x1f, 0x8b], 'gzip'],
    ['zstd', [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58], 'zstd'],
    ['zstd, four bytes only', [0x28, 0xb5, 0x2f, 0xfd], 'zstd'],
    ['bzip2', [0x42, 0x5a, 0x68, 0x39, 0x31, 0x41], 'bzip2'],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'xz'],
    ['lz4 frame', [0x04, 0x22, 0x4d, 0x18, 0x64, 0x40], 'lz4'],
    ['empty input', [], 'none'],
    ['one gzip byte', [0x1f], 'none'],
    ['three zstd bytes', [0x28, 0xb5, 0x2f], 'none'],
    ['five xz bytes', [0xfd, 0x37, 0x7a, 0x58, 0x5a], 'none'],
    ['xz magic without its NUL', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x01], 'none'],
    ['gzip bytes swapped', [0x8b, 0x1f, 0, 0, 0, 0], 'none'],
    ['zstd skippable frame', [0x50, 0x2a, 0x4d, 0x18, 0, 0], 'none'],
    ['a tar header start', [...Buffer.from('manifest.json')], 'none'],
    ['JSON', [...Buffer.from('{"a":1}')], 'none'],
  ];
  for (const [what, bytes, want] of table) {
    it(`${what} -> ${want}`, () => {
      assert.equal(detectCompression(Uint8Array.from(bytes)), want);
    });
  }

  it('MAGIC_BYTES is enough for every format', () => {
    assert.equal(MAGIC_BYTES, 6);
    assert.equal(
      detectCompression(Uint8Array.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]).subarray(0, MAGIC_BYTES)),
      'xz',
    );
  });

  it('reads a Buffer view at a non-zero offset correctly', () => {
    const big = Buffer.from([0, 0, 0x1f, 0x8b, 8]);
    assert.equal(detectCompression(big.subarray(2)), 'gzip');
  });

  it('recognises real compressor output', () => {
    const data = Buffer.from('hello '.repeat(100));
    assert.equal(detectCompression(gzipSync(data)), 'gzip');
    for (const [cmd, args, want] of [
      ['zstd', ['-q', '-c'], 'zstd'],
      ['bzip2', ['-c'], 'bzip2'],
      ['xz', ['-c'], 'xz'],
    ] as const) {
      if (!has(cmd)) continue;
      assert.equal(detectCompression(execFileSync(cmd, args, { input: data })), want, cmd);
    }
  });
});

describe('supportedCompression', () => {
  it('passes gzip, zstd and none through', () => {
    assert.equal(supportedCompression(Uint8Array.from([0x1f, 0x8b]), 'x'), 'gzip');
    assert.equal(supportedCompression(Uint8Array.from([0x28, 0xb5, 0x2f, 0xfd]), 'x'), 'zstd');
    assert.equal(supportedCompression(Uint8Array.from([0x61]), 'x'), 'none');
  });

  for (const [name, bytes, hint] of [
    ['bzip2', [0x42, 0x5a, 0x68], 'bunzip2'],
    ['xz', [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00], 'unxz'],
    ['lz4', [0x04, 0x22, 0x4d, 0x18], 'lz4 -d'],
  ] as const) {
    it(`refuses ${name} with UNSUPPORTED_COMPRESSION, naming where and how to decompress`, () => {
      assert.throws(
        () => supportedCompression(Uint8Array.from(bytes), 'image.tar.gz'),
        (e: unknown) =>
          e instanceof LadingError &&
          e.code === 'UNSUPPORTED_COMPRESSION' &&
          e.message.startsWith('image.tar.gz:') &&
          e.message.includes(name) &&
          e.message.includes(hint),
      );
    });
  }
});

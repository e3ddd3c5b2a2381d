/**
 * Tar archives built byte by byte where tar readers could see different entries (issue 19),
 * and archives every reader reads alike: the cases of differentials.test.ts (which reads each
 * with lading, Python's tarfile, GNU tar and Go's archive/tar) and seeds of the tar fuzzer
 * (tar-props.test.ts). No side effects at import.
 */
import type { ErrorCode } from '../../src/errors';

// ------------------------------------------------------------------------------------------
// raw tar

export const BLOCK = 512;
export const END = Buffer.alloc(2 * BLOCK);

interface H {
  name?: string;
  size?: number;
  sizeField?: Buffer;
  typeflag?: string;
  linkname?: string;
  /** 'ustar' (ustar\0 00), 'gnu' (ustar  \0), 'v7' (none). */
  magic?: 'ustar' | 'gnu' | 'v7';
  poke?: [number, Buffer | string][];
  checksum?: 'unsigned' | 'signed';
}

export function header(o: H): Buffer {
  const h = Buffer.alloc(BLOCK);
  h.write(o.name ?? 'file', 0, 'utf8');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  if (o.sizeField) o.sizeField.copy(h, 124);
  else h.write(`${(o.size ?? 0).toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write(o.typeflag ?? '0', 156, 'latin1');
  if (o.linkname !== undefined) h.write(o.linkname, 157, 'utf8');
  const magic = o.magic ?? 'ustar';
  if (magic === 'ustar') h.write('ustar\x0000', 257, 'latin1');
  if (magic === 'gnu') h.write('ustar  \0', 257, 'latin1');
  for (const [at, b] of o.poke ?? []) (typeof b === 'string' ? Buffer.from(b, 'latin1') : b).copy(h, at);
  h.fill(0x20, 148, 156);
  let unsigned = 0;
  let signed = 0;
  for (const c of h) {
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  h.write(`${(o.checksum === 'signed' ? signed : unsigned).toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
  return h;
}

export function pad(data: Buffer): Buffer {
  const r = data.length % BLOCK;
  return r === 0 ? data : Buffer.concat([data, Buffer.alloc(BLOCK - r)]);
}

export function entry(name: string, data: Buffer | string, o: H = {}): Buffer {
  const d = typeof data === 'string' ? Buffer.from(data) : data;
  return Buffer.concat([header({ name, size: d.length, ...o }), pad(d)]);
}

export function paxRecord(key: string, value: string): Buffer {
  const body = Buffer.from(` ${key}=${value}\n`);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

export function pax(records: [string, string][], typeflag = 'x'): Buffer {
  return entry('PaxHeaders/x', Buffer.concat(records.map(([k, v]) => paxRecord(k, v))), { typeflag });
}

function rawPax(body: string, typeflag = 'x'): Buffer {
  return entry('PaxHeaders/x', Buffer.from(body, 'latin1'), { typeflag });
}

export function gnuLong(typeflag: 'L' | 'K', value: string): Buffer {
  return entry('././@LongLink', `${value}\0`, { typeflag, magic: 'gnu' });
}

const REAL = entry('manifest.json', 'the real manifest');
const SMUGGLED = entry('manifest.json', 'a smuggled manifest');

function size256(n: number, first = 0x80): Buffer {
  const b = Buffer.alloc(12);
  b[0] = first;
  b.writeUIntBE(n, 6, 6);
  return b;
}

// ------------------------------------------------------------------------------------------
// the cases

export interface DifferentialCase {
  name: string;
  bytes: Buffer;
  /** The code lading refuses it with; undefined: lading reads it, as every other reader does. */
  refuse?: ErrorCode;
}

export const DIFFERENTIAL_CASES: DifferentialCase[] = [
  // --- entries that carry no data, and sizes
  ...['1', '2', '3', '4', '5', '6'].map((t): DifferentialCase => ({
    name: `typeflag ${t} with a size, its "data" a smuggled manifest.json (GNU tar skips it for 2/3/4/6, Go and Python do not)`,
    bytes: Buffer.concat([
      REAL,
      header({
        name: 'x',
        typeflag: t,
        linkname: t === '1' || t === '2' ? 'manifest.json' : '',
        size: SMUGGLED.length,
      }),
      SMUGGLED,
      entry('after', 'z'),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  })),
  {
    name: 'a pax size on a symlink, over a smuggled manifest.json',
    bytes: Buffer.concat([
      REAL,
      pax([['size', String(SMUGGLED.length)]]),
      header({ name: 'l', typeflag: '2', linkname: 'x' }),
      SMUGGLED,
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax size on a FIFO',
    bytes: Buffer.concat([
      REAL,
      pax([['size', String(SMUGGLED.length)]]),
      header({ name: 'p', typeflag: '6' }),
      SMUGGLED,
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'an old-style directory (NUL typeflag, trailing slash) with a size',
    bytes: Buffer.concat([
      header({ name: 'd/', typeflag: '\0', size: SMUGGLED.length }),
      SMUGGLED,
      entry('after', 'z'),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a regular file (typeflag 0) named d/, with data',
    bytes: Buffer.concat([entry('d/', 'data'), entry('after', 'z'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'NUL typeflag: a directory by its GNU long name, a file by its name field',
    bytes: Buffer.concat([gnuLong('L', 'd/'), entry('d', '', { typeflag: '\0' }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'NUL typeflag: a directory by its pax path, a file by its name field',
    bytes: Buffer.concat([pax([['path', 'd/']]), entry('d', 'xyz', { typeflag: '\0' }), END]),
    refuse: 'NOT_A_TAR',
  },
  // --- pax and GNU records
  {
    name: 'two pax headers for one entry (Go keeps the second, Python the first)',
    bytes: Buffer.concat([pax([['path', 'A']]), pax([['path', 'B']]), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'two GNU long names for one entry',
    bytes: Buffer.concat([gnuLong('L', 'A'), gnuLong('L', 'B'), entry('ustar', 'x', { magic: 'gnu' }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'two GNU long link names for one entry',
    bytes: Buffer.concat([
      gnuLong('K', 'A'),
      gnuLong('K', 'B'),
      header({ name: 'l', typeflag: '2', linkname: 'x', magic: 'gnu' }),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax path, then a GNU long name (Go takes the GNU name, Python the pax one)',
    bytes: Buffer.concat([pax([['path', 'A']]), gnuLong('L', 'B'), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a GNU long name, then a pax path',
    bytes: Buffer.concat([gnuLong('L', 'B'), pax([['path', 'A']]), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax linkpath and a GNU long link name',
    bytes: Buffer.concat([
      pax([['linkpath', 'A']]),
      gnuLong('K', 'B'),
      header({ name: 'l', typeflag: '2', linkname: 'x' }),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a global pax path (Python and GNU tar rename every later entry, Go none)',
    bytes: Buffer.concat([pax([['path', 'manifest.json']], 'g'), entry('a', '1'), entry('b', '2'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a global pax size',
    bytes: Buffer.concat([pax([['size', '0']], 'g'), entry('a', 'data-a'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a global pax linkpath',
    bytes: Buffer.concat([
      pax([['linkpath', 'manifest.json']], 'g'),
      header({ name: 'l', typeflag: '2', linkname: 'x' }),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax header, then a global one, then its entry (Go drops the first)',
    bytes: Buffer.concat([pax([['path', 'A']]), pax([['comment', 'c']], 'g'), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'an empty pax path (Go: keep the ustar name; Python: empty)',
    bytes: Buffer.concat([pax([['path', '']]), entry('ustarname', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'an empty pax size',
    bytes: Buffer.concat([pax([['size', '']]), entry('f', 'hello'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'an empty pax linkpath',
    bytes: Buffer.concat([pax([['linkpath', '']]), header({ name: 'l', typeflag: '2', linkname: 'target' }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax record without its newline (Go refuses, Python reads it)',
    bytes: Buffer.concat([rawPax('11 path=AB!'), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax record length written 1e1',
    bytes: Buffer.concat([rawPax('1e1 path=A\n'), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'junk after the last pax record',
    bytes: Buffer.concat([rawPax('10 path=A\nJUNK'), entry('ustar', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax size of +5 (Go and Python read 5, GNU tar refuses)',
    bytes: Buffer.concat([pax([['size', '+5']]), entry('f', 'hello'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a pax size of 0_5 (Python reads 5)',
    bytes: Buffer.concat([pax([['size', '0_5']]), entry('f', 'hello'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'pax GNU sparse 1.0 (Go and Python rename the entry by GNU.sparse.name)',
    bytes: Buffer.concat([
      pax([
        ['GNU.sparse.major', '1'],
        ['GNU.sparse.minor', '0'],
        ['GNU.sparse.name', 'manifest.json'],
        ['GNU.sparse.realsize', '4'],
      ]),
      entry('GNUSparseFile.0/x', Buffer.concat([Buffer.from('1\n0\n4\n'.padEnd(512, '\0')), Buffer.from('EVIL')])),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  // --- types
  {
    name: 'a GNU sparse entry (S)',
    bytes: Buffer.concat([
      header({
        name: 's',
        typeflag: 'S',
        size: 512,
        magic: 'gnu',
        poke: [
          [386, '00000000000\0'],
          [398, '00000001000\0'],
          [483, '00000002000\0'],
        ],
      }),
      pad(Buffer.alloc(512, 0x61)),
      entry('after', 'z', { magic: 'gnu' }),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a Solaris extended header (X: pax to Python, a plain entry to Go)',
    bytes: Buffer.concat([pax([['path', 'manifest.json']], 'X'), entry('other', 'x'), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'an entry of an unknown type (Z)',
    bytes: Buffer.concat([entry('z', 'data of Z', { typeflag: 'Z' }), entry('after', 'z'), END]),
    refuse: 'NOT_A_TAR',
  },
  // --- numeric fields
  {
    name: 'a size field with a NUL before its digits (Go: 5, Python: 0)',
    bytes: Buffer.concat([
      header({ name: 'f', sizeField: Buffer.from('\x000000000005\0', 'latin1') }),
      pad(Buffer.from('hello')),
      entry('after', 'z'),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a size field with a tab (Python reads it, Go refuses)',
    bytes: Buffer.concat([
      header({ name: 'f', sizeField: Buffer.from('\t0000000005\0', 'latin1') }),
      pad(Buffer.from('hello')),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a size field with a plus sign',
    bytes: Buffer.concat([
      header({ name: 'f', sizeField: Buffer.from('+0000000005\0', 'latin1') }),
      pad(Buffer.from('hello')),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a base-256 size whose first byte is 0x81 (2^88 and more to Go, invalid to Python)',
    bytes: Buffer.concat([header({ name: 'f', sizeField: size256(5, 0x81) }), pad(Buffer.from('hello')), END]),
    refuse: 'LIMIT_EXCEEDED',
  },
  {
    name: 'a negative base-256 size',
    bytes: Buffer.concat([header({ name: 'f', sizeField: Buffer.alloc(12, 0xff) }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'an mtime field of letters in a later header (Go fails, Python stops there)',
    bytes: Buffer.concat([
      REAL,
      header({ name: 'f2', size: 1, poke: [[136, 'zzzzzzzzzzz\0']] }),
      pad(Buffer.from('y')),
      SMUGGLED,
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a mode field of letters',
    bytes: Buffer.concat([header({ name: 'f', size: 1, poke: [[100, 'rw-r--r\0']] }), pad(Buffer.from('y')), END]),
    refuse: 'NOT_A_TAR',
  },
  // --- names
  {
    name: 'a GNU header with a name in the prefix area (Go and Python join it)',
    bytes: Buffer.concat([entry('name', 'x', { magic: 'gnu', poke: [[345, 'evil\0']] }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a GNU header with an atime (Python joins it as a prefix)',
    bytes: Buffer.concat([entry('name', 'x', { magic: 'gnu', poke: [[345, '00000000001\0']] }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a v7 header with bytes in the prefix area (Python joins them)',
    bytes: Buffer.concat([entry('name', 'x', { magic: 'v7', poke: [[345, 'evil\0']] }), END]),
    refuse: 'NOT_A_TAR',
  },
  {
    name: 'a star header whose prefix runs past 131 bytes',
    bytes: Buffer.concat([
      entry('name', 'x', {
        poke: [
          [345, `${'p'.repeat(131)}ZZZZ`],
          [508, 'tar\0'],
        ],
      }),
      END,
    ]),
    refuse: 'NOT_A_TAR',
  },
  // --- end of archive
  {
    name: 'a lone zero block, then a smuggled manifest.json (Go fails, Python and GNU tar stop)',
    bytes: Buffer.concat([REAL, Buffer.alloc(BLOCK), SMUGGLED, END]),
    refuse: 'NOT_A_TAR',
  },

  // --- what every reader reads alike
  {
    name: 'ustar with a prefix (a long name split)',
    bytes: Buffer.concat([entry('layer.tar', 'layer bytes', { poke: [[345, `${'d'.repeat(120)}/sub`]] }), END]),
  },
  {
    name: 'pax path, linkpath and size overriding the header',
    bytes: Buffer.concat([
      pax([
        ['path', `${'long/'.repeat(40)}name`],
        ['mtime', '1.5'],
      ]),
      entry('short', 'pax named'),
      pax([['linkpath', `${'t/'.repeat(60)}target`]]),
      header({ name: 'sym', typeflag: '2', linkname: 'header-target' }),
      pax([['size', '5']]),
      header({ name: 'sized', size: 0 }),
      pad(Buffer.from('12345')),
      END,
    ]),
  },
  {
    name: 'GNU long names and link names',
    bytes: Buffer.concat([
      gnuLong('L', `${'n'.repeat(150)}/file`),
      entry('n'.repeat(100), 'long', { magic: 'gnu' }),
      gnuLong('K', `${'k'.repeat(120)}/target`),
      header({ name: 'sym', typeflag: '2', linkname: 'k'.repeat(100), magic: 'gnu' }),
      END,
    ]),
  },
  {
    name: 'a pax size and a GNU long name for one entry',
    bytes: Buffer.concat([
      pax([['size', '3']]),
      gnuLong('L', `${'m'.repeat(120)}/f`),
      header({ name: 'short', size: 0 }),
      pad(Buffer.from('abc')),
      END,
    ]),
  },
  {
    name: 'a base-256 size',
    bytes: Buffer.concat([
      header({ name: 'f', sizeField: size256(5) }),
      pad(Buffer.from('hello')),
      entry('after', 'z'),
      END,
    ]),
  },
  {
    name: 'hard links and symlinks (size 0)',
    bytes: Buffer.concat([
      entry('manifest.json', 'real'),
      header({ name: 'h', typeflag: '1', linkname: 'manifest.json' }),
      header({ name: 's', typeflag: '2', linkname: 'manifest.json' }),
      END,
    ]),
  },
  {
    name: 'devices and a FIFO with size 0',
    bytes: Buffer.concat([
      header({ name: 'c', typeflag: '3' }),
      header({ name: 'b', typeflag: '4' }),
      header({ name: 'p', typeflag: '6' }),
      entry('after', 'z'),
      END,
    ]),
  },
  {
    name: 'NUL typeflag: a file, and an old-style directory of size 0',
    bytes: Buffer.concat([
      entry('f', 'nul typed', { typeflag: '\0' }),
      header({ name: 'd/', typeflag: '\0' }),
      entry('d/x', 'in d'),
      END,
    ]),
  },
  {
    name: "a global pax header that changes nothing lading reads (git archive's comment)",
    bytes: Buffer.concat([pax([['comment', '0123456789abcdef']], 'g'), entry('a', '1'), END]),
  },
  {
    name: 'a pax key given twice (the last wins, everywhere)',
    bytes: Buffer.concat([
      pax([
        ['path', 'A'],
        ['path', 'B'],
      ]),
      entry('ustar', 'x'),
      END,
    ]),
  },
  {
    name: 'the signed checksum of old Sun tars',
    bytes: Buffer.concat([entry('signé', 'sun', { checksum: 'signed' }), END]),
  },
  { name: 'one zero block, then the end of the file', bytes: Buffer.concat([REAL, Buffer.alloc(BLOCK)]) },
  { name: 'bytes after the two end blocks (nobody reads them)', bytes: Buffer.concat([REAL, END, SMUGGLED, END]) },
];

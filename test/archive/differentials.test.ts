/**
 * Parser differentials (issue 19): archives built byte by byte where tar readers could see
 * different entries, read by lading (both readers: the file index and the one-pass stream)
 * and by independent readers: Python's tarfile and GNU tar (both on the machine), and Go's
 * archive/tar (what docker, containerd, skopeo and crane use) when a Go toolchain is
 * installed. For each archive either lading refuses it with the expected code, or every
 * reader sees the same entries: the same names, types and, for regular files, the same bytes.
 * What each reader saw is printed as a diagnostic. See the notes at the top of
 * src/archive/tar.ts and the table in the README's "Formats" section.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { dataSizeOf, indexTarFile, readTarStream, type TarEntry } from '../../src/archive/tar';
import { DIFFERENTIAL_CASES as cases } from './differential-cases';
import { LadingError, type ErrorCode } from '../../src/errors';

const dir = fs.mkdtempSync(join(tmpdir(), 'lading-differentials-'));
after(() => fs.rmSync(dir, { recursive: true, force: true }));
let seq = 0;

// ------------------------------------------------------------------------------------------
// readers

/** What a reader saw: every entry's name (normalised) and kind, and each regular file's sha256. */
type Seen = { ok: string[] } | { error: string };

function norm(name: string): string {
  return name
    .split('/')
    .filter((p) => p !== '' && p !== '.')
    .join('/');
}

function line(name: string, kind: string, sha?: string): string {
  return sha === undefined ? `${kind} ${norm(name)}` : `${kind} ${norm(name)} ${sha.slice(0, 16)}`;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function kindOf(e: TarEntry): string {
  return e.type === 'file'
    ? 'file'
    : e.type === 'directory'
      ? 'dir'
      : e.type === 'symlink'
        ? `symlink->${e.linkname}`
        : e.type === 'hardlink'
          ? `hardlink->${e.linkname}`
          : 'other';
}

async function ladingFile(file: string): Promise<string[]> {
  const fh = await open(file, 'r');
  try {
    const { size } = await fh.stat();
    const out: string[] = [];
    for (const e of await indexTarFile(fh, size, file)) {
      const data = Buffer.alloc(dataSizeOf(e));
      if (data.length > 0) await fh.read(data, 0, data.length, e.dataOffset);
      out.push(line(e.name, kindOf(e), e.type === 'file' ? sha(data) : undefined));
    }
    return out;
  } finally {
    await fh.close();
  }
}

async function ladingStream(buf: Buffer): Promise<string[]> {
  const out: string[] = [];
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += 700) chunks.push(buf.subarray(i, i + 700));
  for await (const { entry: e, body } of readTarStream(Readable.from(chunks), 'stream')) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c);
    out.push(line(e.name, kindOf(e), e.type === 'file' ? sha(Buffer.concat(parts)) : undefined));
  }
  return out;
}

async function lading(file: string, buf: Buffer): Promise<{ ok: string[] } | { code: ErrorCode; message: string }> {
  const settle = async (
    p: () => Promise<string[]>,
  ): Promise<{ ok: string[] } | { code: ErrorCode; message: string }> => {
    try {
      return { ok: await p() };
    } catch (e) {
      assert.ok(e instanceof LadingError, `not a LadingError: ${(e as Error)?.stack ?? String(e)}`);
      return { code: e.code, message: e.message };
    }
  };
  const f = await settle(() => ladingFile(file));
  const s = await settle(() => ladingStream(buf));
  if ('ok' in f || 'ok' in s) assert.deepEqual(s, f, 'lading: the file and the stream readers disagree');
  else assert.equal(s.code, f.code, `lading: the readers fail differently: ${f.message} / ${s.message}`);
  return f;
}

const PY = `
import tarfile, sys, json, hashlib
out = []
try:
    with tarfile.open(sys.argv[1]) as tf:
        for m in tf:
            t = m.type.decode('latin1')
            kind = 'file' if t in ('0', '\\x00', '7') else 'dir' if t == '5' else ('symlink->' + m.linkname) if t == '2' else ('hardlink->' + m.linkname) if t == '1' else 'other' if t in ('3', '4', '6') else 'type-' + t
            d = {'name': m.name, 'kind': kind}
            if kind == 'file':
                d['sha'] = hashlib.sha256(tf.extractfile(m).read()).hexdigest()
            out.append(d)
    print(json.dumps({'ok': out}))
except Exception as e:
    print(json.dumps({'error': type(e).__name__ + ': ' + str(e)}))
`;

const hasPython = spawnSync('python3', ['-c', 'import tarfile'], { stdio: 'ignore' }).status === 0;
const hasGnuTar = spawnSync('tar', ['--version'], { encoding: 'utf8' }).stdout?.includes('GNU tar') ?? false;

function python(file: string): Seen {
  const r = JSON.parse(execFileSync('python3', ['-c', PY, file], { encoding: 'utf8' })) as {
    ok?: { name: string; kind: string; sha?: string }[];
    error?: string;
  };
  if (r.error !== undefined) return { error: r.error };
  return { ok: r.ok!.map((e) => line(e.name, e.kind, e.sha)) };
}

/**
 * GNU tar: `--list -v` for every entry's kind and name, `--to-command` for the bytes of each
 * regular file (it runs only for those). A damaged archive (exit status 2) counts as an error.
 */
function gnuTar(file: string): Seen {
  const list = spawnSync('tar', ['--list', '--verbose', '--numeric-owner', '--quoting-style=literal', '-f', file], {
    encoding: 'utf8',
    env: { ...process.env, LC_ALL: 'C' },
  });
  const data = spawnSync('tar', ['--extract', '-f', file, '--to-command=sha256sum'], {
    encoding: 'utf8',
    cwd: dir,
    env: { ...process.env, LC_ALL: 'C' },
  });
  if (list.status !== 0 || data.status !== 0)
    return {
      error: `exit ${list.status}/${data.status}: ${(list.stderr + data.stderr).trim().split('\n').join(' | ')}`,
    };
  const hashes = data.stdout
    .trim()
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => l.split(' ')[0]!);
  const out: string[] = [];
  for (const l of list.stdout.split('\n').filter((x) => x !== '')) {
    // "-rw-r--r-- 0/0  5 1970-01-01 00:00 name" / "lrw... name -> target" / "hrw... name link to target"
    const m = /^(\S)\S+ \S+ +\S+ \S+ \S+ (.*)$/.exec(l);
    assert.ok(m, `GNU tar listing line: ${l}`);
    const t = m[1]!;
    let name = m[2]!;
    let kind: string;
    if (t === '-') kind = 'file';
    else if (t === 'd') kind = 'dir';
    else if (t === 'l') {
      const [n, target] = name.split(' -> ');
      name = n!;
      kind = `symlink->${target}`;
    } else if (t === 'h') {
      const [n, target] = name.split(' link to ');
      name = n!;
      kind = `hardlink->${target}`;
    } else kind = 'other';
    out.push(line(name, kind, kind === 'file' ? hashes.shift() : undefined));
  }
  return { ok: out };
}

const GO_READER = `package main

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	f, err := os.Open(os.Args[1])
	if err != nil {
		panic(err)
	}
	tr := tar.NewReader(f)
	out := []map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			b, _ := json.Marshal(map[string]string{"error": err.Error()})
			fmt.Println(string(b))
			return
		}
		kind := "other"
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeCont:
			kind = "file"
		case tar.TypeDir:
			kind = "dir"
		case tar.TypeSymlink:
			kind = "symlink->" + h.Linkname
		case tar.TypeLink:
			kind = "hardlink->" + h.Linkname
		case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
			kind = "other"
		default:
			kind = "type-" + string([]byte{h.Typeflag})
		}
		e := map[string]string{"name": h.Name, "kind": kind}
		s := sha256.New()
		if _, err := io.Copy(s, tr); err != nil {
			b, _ := json.Marshal(map[string]string{"error": err.Error()})
			fmt.Println(string(b))
			return
		}
		if kind == "file" {
			e["sha"] = hex.EncodeToString(s.Sum(nil))
		}
		out = append(out, e)
	}
	b, _ := json.Marshal(map[string]interface{}{"ok": out})
	fmt.Println(string(b))
}
`;

/** Go's archive/tar, built once from the standard library when `go` is installed (no network needed). */
let goBinary: string | undefined;
function buildGoReader(): void {
  if (spawnSync('go', ['version'], { stdio: 'ignore' }).status !== 0) return;
  const src = join(dir, 'goread');
  fs.mkdirSync(src);
  fs.writeFileSync(join(src, 'main.go'), GO_READER);
  fs.writeFileSync(join(src, 'go.mod'), 'module goread\n\ngo 1.21\n');
  const out = join(dir, 'goread-bin');
  const r = spawnSync('go', ['build', '-o', out, '.'], {
    cwd: src,
    env: { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local', GOPROXY: 'off' },
    encoding: 'utf8',
  });
  if (r.status === 0) goBinary = out;
}

function go(file: string): Seen {
  const r = JSON.parse(execFileSync(goBinary!, [file], { encoding: 'utf8' })) as {
    ok?: { name: string; kind: string; sha?: string }[];
    error?: string;
  };
  if (r.error !== undefined) return { error: r.error };
  // Go reports a global pax header as an entry of its own, which describes no file.
  return { ok: r.ok!.filter((e) => e.kind !== 'type-g').map((e) => line(e.name, e.kind, e.sha)) };
}

// ------------------------------------------------------------------------------------------

describe(
  'parser differentials: lading refuses, or reads what Python, GNU tar and Go read',
  { skip: hasPython && hasGnuTar ? false : 'needs python3 and GNU tar' },
  () => {
    before(buildGoReader);

    for (const c of cases) {
      it(c.name, async (t) => {
        const file = join(dir, `${++seq}.tar`);
        fs.writeFileSync(file, c.bytes);
        const ours = await lading(file, c.bytes);
        const theirs: [string, Seen][] = [
          ['python', python(file)],
          ['gnu tar', gnuTar(file)],
        ];
        if (goBinary !== undefined) theirs.push(['go', go(file)]);
        for (const [who, seen] of theirs)
          t.diagnostic(`${who}: ${'ok' in seen ? seen.ok.join(' | ') : `error ${seen.error}`}`);
        t.diagnostic(`lading: ${'ok' in ours ? ours.ok.join(' | ') : `${ours.code} ${ours.message}`}`);
        if (c.refuse !== undefined) {
          const views = theirs.map(([, seen]) => JSON.stringify(seen));
          t.diagnostic(
            views.every((v) => v === views[0]) && !views[0]!.startsWith('{"error"')
              ? 'the other readers agree with each other (a defensive refusal)'
              : 'the other readers disagree with each other, or fail',
          );
          assert.ok('code' in ours, `lading read it: ${JSON.stringify(ours)}`);
          assert.equal(ours.code, c.refuse, ours.message);
          return;
        }
        assert.ok('ok' in ours, `lading refused it: ${'message' in ours ? ours.message : ''}`);
        for (const [who, seen] of theirs) assert.deepEqual(seen, { ok: ours.ok }, `${who} reads it differently`);
      });
    }
  },
);

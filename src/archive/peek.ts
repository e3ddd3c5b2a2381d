/** Reads the first bytes of a stream without losing them. */
export async function peek(
  source: AsyncIterable<Buffer>,
  n: number,
): Promise<{ head: Buffer; rest: AsyncIterable<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const chunks: Buffer[] = [];
  let len = 0;
  let ended = false;
  while (len < n) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const c = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    chunks.push(c);
    len += c.length;
  }
  const head = Buffer.concat(chunks);
  const rest = (async function* () {
    try {
      if (head.length > 0) yield head;
      if (ended) return;
      while (true) {
        const r = await it.next();
        if (r.done) return;
        yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
      }
    } finally {
      // The reader stopped early (the archive ended, or failed): stop the source too, so an
      // input that goes on sending is not read (standard input is destroyed).
      if (!ended) await it.return?.();
    }
  })();
  return { head, rest };
}

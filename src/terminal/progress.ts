import type { CopyEvent } from '../copy/events';
import { formatBytes, shortDigest, terminalSafe } from './format';

interface Live {
  label: string;
  size: number | undefined;
  done: number;
  started: number;
}

/**
 * Renders copy events: a live display on a terminal (each blob in flight with bytes and
 * rate, and a total line with ETA), plain log lines otherwise, nothing under --quiet.
 */
export class ProgressRenderer {
  private readonly live = new Map<string, Live>();
  private total = { bytes: 0, done: 0, started: Date.now() };
  private drawn = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly write: (s: string) => void,
    private readonly mode: 'tty' | 'plain' | 'quiet',
  ) {
    if (mode === 'tty') {
      this.timer = setInterval(() => this.draw(), 150);
      this.timer.unref();
    }
  }

  onEvent = (e: CopyEvent): void => {
    if (this.mode === 'quiet') return;
    switch (e.type) {
      case 'plan':
        this.total.bytes = e.bytes;
        if (this.mode === 'plain')
          this.line(
            `copying ${e.blobs} blobs (${formatBytes(e.bytes)} stored) and ${e.manifests} manifest${e.manifests === 1 ? '' : 's'}`,
          );
        break;
      case 'blob-start':
        // Labels carry platform strings from the archive: escaped for the terminal.
        this.live.set(e.id, { label: terminalSafe(e.label, 200), size: e.size, done: 0, started: Date.now() });
        if (this.mode === 'plain')
          this.line(
            `${e.action === 'compress+upload' ? 'compressing and uploading' : 'uploading'} ${terminalSafe(e.label, 200)}${e.size !== undefined ? ` (${formatBytes(e.size)})` : ''}`,
          );
        break;
      case 'blob-progress': {
        const l = this.live.get(e.id);
        if (l) l.done += e.bytes;
        this.total.done += e.bytes;
        break;
      }
      case 'blob-skip':
        if (this.mode === 'plain')
          this.line(
            `${e.reason === 'mounted' ? 'mounted' : 'skipped'} ${terminalSafe(e.label, 200)}: ${e.reason === 'cached' ? 'compressed form already there' : e.reason === 'mounted' ? 'compressed form linked from the --mount-from repository' : 'already there'} (${shortDigest(e.digest)})`,
          );
        else this.above(`skipped   ${terminalSafe(e.label, 200)} (${shortDigest(e.digest)}, already there)`);
        break;
      case 'blob-done': {
        const l = this.live.get(e.id);
        this.live.delete(e.id);
        const secs = l ? (Date.now() - l.started) / 1000 : 0;
        const msg = `uploaded  ${l?.label ?? e.id} ${shortDigest(e.digest)} ${formatBytes(e.size)}${secs > 0.05 ? ` in ${secs.toFixed(1)} s` : ''}`;
        if (this.mode === 'plain') this.line(msg);
        else this.above(msg);
        break;
      }
      case 'manifest': {
        const msg = `${e.tag ? `tagged    ${terminalSafe(e.tag, 200)} ->` : 'manifest '} ${e.digest}`;
        if (this.mode === 'plain') this.line(msg);
        else this.above(msg);
        break;
      }
    }
  };

  private line(s: string): void {
    this.write(`${s}\n`);
  }

  /** Prints a permanent line above the live area. */
  private above(s: string): void {
    this.clear();
    this.write(`${s}\n`);
    this.draw();
  }

  private clear(): void {
    if (this.drawn > 0) this.write(`\x1b[${this.drawn}A\x1b[J`);
    this.drawn = 0;
  }

  private draw(): void {
    if (this.mode !== 'tty') return;
    this.clear();
    const now = Date.now();
    const lines: string[] = [];
    for (const l of this.live.values()) {
      const secs = Math.max(0.001, (now - l.started) / 1000);
      const rate = l.done / secs;
      lines.push(
        `  ${l.label.slice(0, 40).padEnd(40)} ${formatBytes(l.done).padStart(9)}${l.size ? ` / ${formatBytes(l.size).padEnd(9)}` : ''} ${formatBytes(rate)}/s`,
      );
    }
    if (this.live.size > 0) {
      const secs = Math.max(0.001, (now - this.total.started) / 1000);
      const rate = this.total.done / secs;
      const left = Math.max(0, this.total.bytes - this.total.done);
      const eta = rate > 0 && this.total.bytes > 0 ? `, ETA ${Math.ceil(left / rate)} s` : '';
      lines.push(`  total ${formatBytes(this.total.done)} sent, ${formatBytes(rate)}/s${eta}`);
    }
    if (lines.length > 0) this.write(`${lines.join('\n')}\n`);
    this.drawn = lines.length;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.clear();
  }
}

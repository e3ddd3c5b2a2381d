import { inspectArchive, type InspectResult } from '../archive';
import { formatBytes, shortDigest, terminalSafe } from '../terminal/format';
import { parseCommandArgs, usageError, type CommandContext } from '../command/context';
import { parseArchiveArg } from './transports';

export const inspectHelp = `Usage: lading inspect ARCHIVE [options]

Describe an image archive and verify every blob in it (digests, sizes, diff_ids).
ARCHIVE is a tar file (optionally gzip or zstd compressed), an OCI layout directory,
or - for standard input.

Options:
  --json         print one JSON document (schema in the README)
  --no-verify    read only what is needed to describe the archive
  --debug        log what lading does, and stack traces on errors
  -h, --help     show this help
`;

function layerCompression(mt: string): string {
  if (mt.endsWith('gzip')) return 'gzip';
  if (mt.endsWith('zstd')) return 'zstd';
  if (mt.endsWith('.tar') || mt.endsWith('.diff.tar')) return 'uncompressed';
  return mt;
}

export function renderInspect(r: InspectResult, where: string): string {
  const lines: string[] = [];
  const comp = r.compression === 'none' ? 'uncompressed' : `${r.compression}-compressed`;
  // Everything from the archive (and the path) is untrusted text: escaped for the terminal.
  const t = (s: string): string => terminalSafe(s, 500);
  lines.push(`${t(where)}: ${r.format}, ${comp}, ${r.images.length} image${r.images.length === 1 ? '' : 's'}`);
  for (const img of r.images) {
    lines.push('');
    lines.push(`image ${img.names.length > 0 ? img.names.map(t).join(', ') : '(unnamed)'}`);
    lines.push(`  digest     ${img.digest ?? '(none)'}`);
    lines.push(`  mediaType  ${t(img.mediaType)}`);
    for (const w of img.warnings ?? []) lines.push(`  warning    ${t(w)}`);
    for (const m of img.manifests) {
      const p = m.platform
        ? t([m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/'))
        : 'unknown platform';
      const tags = [m.attestation ? 'attestation' : '', m.available ? '' : 'not in archive'].filter(Boolean).join(', ');
      lines.push(`  ${p}  manifest ${m.digest}${tags ? `  (${tags})` : ''}`);
      if (m.config) lines.push(`    config  ${shortDigest(m.config.digest)}  ${formatBytes(m.config.size)}`);
      for (const l of m.layers) {
        lines.push(
          `    layer   ${shortDigest(l.digest)}  ${formatBytes(l.size).padStart(9)}  ${t(layerCompression(l.mediaType))}`,
        );
      }
    }
  }
  return lines.join('\n');
}

export async function runInspect(ctx: CommandContext, args: string[]): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, {
    json: { type: 'boolean' },
    'no-verify': { type: 'boolean' },
  });
  if (values.help) {
    ctx.stdout(inspectHelp);
    return 0;
  }
  if (positionals.length !== 1) throw usageError('inspect needs exactly one ARCHIVE', 'inspect');
  // skopeo's docker-archive:/oci-archive:/oci: prefixes name the file; inspect shows every image.
  const input = parseArchiveArg(positionals[0]!).path;
  const result = await inspectArchive(input, {
    verify: !values['no-verify'],
    signal: ctx.signal,
    logger: ctx.debug,
  });
  if (values.json) ctx.stdout(JSON.stringify(result, null, 2));
  else ctx.stdout(renderInspect(result, input === '-' ? 'stdin' : input));
  return 0;
}

/** Human-friendly sizes: 1.5 MiB, as skopeo and crane print them. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}

export function shortDigest(d: string): string {
  const i = d.indexOf(':');
  return i === -1 ? d : `${d.slice(0, i + 1)}${d.slice(i + 1, i + 13)}`;
}

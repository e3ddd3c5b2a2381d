/**
 * Recognises Amazon ECR registry hosts and the region and account in them:
 *   ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]      (standard; .cn for the China partition)
 *   ACCOUNT.dkr.ecr-fips.REGION.amazonaws.com       (FIPS)
 *   ACCOUNT.dkr-ecr.REGION.on.aws                   (dual-stack)
 *   ACCOUNT.dkr-ecr-fips.REGION.on.aws              (dual-stack FIPS)
 */
export interface EcrHost {
  account: string;
  region: string;
  fips: boolean;
  dualStack: boolean;
  host: string;
}

const PATTERNS: { re: RegExp; fips: boolean; dualStack: boolean }[] = [
  { re: /^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/, fips: false, dualStack: false },
  { re: /^(\d{12})\.dkr\.ecr-fips\.([a-z0-9-]+)\.amazonaws\.com$/, fips: true, dualStack: false },
  { re: /^(\d{12})\.dkr-ecr\.([a-z0-9-]+)\.on\.aws$/, fips: false, dualStack: true },
  { re: /^(\d{12})\.dkr-ecr-fips\.([a-z0-9-]+)\.on\.aws$/, fips: true, dualStack: true },
];

export function parseEcrHost(host: string): EcrHost | undefined {
  const h = host.toLowerCase();
  for (const p of PATTERNS) {
    const m = p.re.exec(h);
    if (m) return { account: m[1]!, region: m[2]!, fips: p.fips, dualStack: p.dualStack, host: h };
  }
  return undefined;
}

/** ECR's repository name rule (the CreateRepository API reference, `repositoryName`): 2-256 chars of lowercase path components. */
export const ECR_REPOSITORY =
  /^(?=.{2,256}$)[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;

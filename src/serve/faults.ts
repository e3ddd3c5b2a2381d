/**
 * Fault injection for tests: answer some calls with throttling or a server error, drop the
 * connection, lose the response, or delay it. Calls are named like the counters:
 * ECR operations by name (`UploadLayerPart`), registry calls as `METHOD route` with route
 * one of `/v2/`, `blob`, `upload`, `manifest`, `tags`, `referrers` (`PATCH upload`,
 * `PUT manifest`, `HEAD blob`...). `*` matches every call.
 */
import { LadingError } from '../errors';

export type FaultKind =
  /** ECR: 400 ThrottlingException; registry: 429 TOOMANYREQUESTS. */
  | 'throttle'
  /** ECR: 500 ServerException; registry: 500 UNKNOWN. */
  | 'server-error'
  /** The connection is destroyed as the request arrives: nothing is processed. */
  | 'drop-connection'
  /** The request is processed, then the connection is destroyed instead of answering. */
  | 'drop-response'
  /** The request waits `delayMs` before it is processed and answered. */
  | 'slow'
  /** Any error: ECR shape name (or OCI code) in `error`, with `status`. */
  | 'error';

export const FAULT_KINDS: readonly FaultKind[] = [
  'throttle',
  'server-error',
  'drop-connection',
  'drop-response',
  'slow',
  'error',
];

export interface FaultRule {
  /** Call name: `UploadLayerPart`, `PATCH upload`, `*`. */
  op: string;
  kind: FaultKind;
  /** Matching calls let through before the fault fires. @default 0 */
  after?: number;
  /** How many matching calls fail once it fires (Infinity: all of them). @default 1 */
  times?: number;
  /** For `slow`. @default 2000 */
  delayMs?: number;
  /** For `error`: the ECR error shape (`LimitExceededException`) or OCI code (`DENIED`). */
  error?: string;
  /** For `error`. @default 400 */
  status?: number;
  message?: string;
}

export interface FiredFault {
  op: string;
  kind: FaultKind;
  /** 1-based number of the matching call that failed. */
  call: number;
}

interface RuleState {
  rule: FaultRule;
  seen: number;
  fired: number;
}

export class FaultInjector {
  private rules: RuleState[] = [];
  /** Faults that fired, in order. */
  readonly fired: FiredFault[] = [];

  constructor(rules: readonly FaultRule[] = []) {
    for (const r of rules) this.add(r);
  }

  add(rule: FaultRule): void {
    validateRule(rule);
    this.rules.push({ rule, seen: 0, fired: 0 });
  }

  clear(): void {
    this.rules = [];
    this.fired.length = 0;
  }

  /** Counts the call against every matching rule; returns the fault to apply, if any. */
  check(op: string): FaultRule | undefined {
    let hit: FaultRule | undefined;
    for (const s of this.rules) {
      if (s.rule.op !== op && s.rule.op !== '*') continue;
      s.seen++;
      const after = s.rule.after ?? 0;
      const times = s.rule.times ?? 1;
      if (hit === undefined && s.seen > after && s.fired < times) {
        s.fired++;
        hit = s.rule;
        this.fired.push({ op, kind: s.rule.kind, call: s.seen });
      }
    }
    return hit;
  }
}

function validateRule(r: FaultRule): void {
  const bad = (m: string): LadingError => new LadingError('USAGE', `fault ${JSON.stringify(r)}: ${m}`);
  if (typeof r.op !== 'string' || r.op === '') throw bad('"op" must name a call (UploadLayerPart, "PATCH upload", *)');
  if (!FAULT_KINDS.includes(r.kind)) throw bad(`"kind" must be one of ${FAULT_KINDS.join(', ')}`);
  for (const k of ['after', 'times', 'delayMs', 'status'] as const) {
    const v = r[k];
    if (v !== undefined && !(typeof v === 'number' && v >= 0 && (Number.isInteger(v) || v === Infinity)))
      throw bad(`"${k}" must be a non-negative integer`);
  }
  if (r.kind === 'error' && !r.error) throw bad('kind "error" needs "error" (an ECR error name or OCI code)');
}

/**
 * The CLI form: `op=UploadLayerPart,kind=throttle,after=2,times=1` (also `delay=MS`,
 * `error=NAME`, `status=N`; `times=inf` for every call).
 */
export function parseFaultSpec(spec: string): FaultRule {
  const out: Record<string, string> = {};
  for (const part of spec.split(',')) {
    const i = part.indexOf('=');
    if (i <= 0)
      throw new LadingError(
        'USAGE',
        `--fault ${JSON.stringify(spec)}: expected key=value pairs separated by commas (op=UploadLayerPart,kind=throttle,after=2)`,
      );
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  const num = (k: string): number | undefined => {
    const v = out[k];
    if (v === undefined) return undefined;
    if (v === 'inf' || v === 'infinity') return Infinity;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0)
      throw new LadingError('USAGE', `--fault ${JSON.stringify(spec)}: ${k} must be a non-negative integer`);
    return n;
  };
  for (const k of Object.keys(out)) {
    if (!['op', 'kind', 'after', 'times', 'delay', 'error', 'status', 'message'].includes(k)) {
      throw new LadingError(
        'USAGE',
        `--fault ${JSON.stringify(spec)}: unknown key "${k}" (op, kind, after, times, delay, error, status, message)`,
      );
    }
  }
  const rule: FaultRule = { op: out.op ?? '', kind: out.kind as FaultKind };
  const after = num('after');
  const times = num('times');
  const delayMs = num('delay');
  const status = num('status');
  if (after !== undefined) rule.after = after;
  if (times !== undefined) rule.times = times;
  if (delayMs !== undefined) rule.delayMs = delayMs;
  if (status !== undefined) rule.status = status;
  if (out.error !== undefined) rule.error = out.error;
  if (out.message !== undefined) rule.message = out.message;
  validateRule(rule);
  return rule;
}

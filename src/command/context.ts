import { parseArgs, type ParseArgsConfig } from 'node:util';
import { LadingError } from '../errors';

type Options = NonNullable<ParseArgsConfig['options']>;

/** What a command gets from the CLI shell: output, cancellation, debug logging. */
export interface CommandContext {
  stdout(text: string): void;
  stderr(text: string): void;
  /** Set under --debug: writes debug lines to stderr. */
  debug: ((line: string) => void) | undefined;
  signal: AbortSignal;
  /** stderr is a terminal: live progress may be drawn there. */
  isTTY: boolean;
  /** Writes to stderr exactly as given (no newline added): terminal control sequences. */
  stderrRaw?: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

export const commonOptions = {
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export type OptionValues = Record<string, string | boolean | (string | boolean)[] | undefined>;

/** parseArgs with the common options, its errors turned into usage errors (exit 2). */
export function parseCommandArgs(args: string[], options: Options): { values: OptionValues; positionals: string[] } {
  try {
    return parseArgs({ args, options: { ...commonOptions, ...options }, allowPositionals: true, strict: true });
  } catch (e) {
    throw new LadingError('USAGE', (e as Error).message);
  }
}

/** Several values of a repeatable option. */
export function strings(v: OptionValues[string]): string[] {
  return v === undefined ? [] : (Array.isArray(v) ? v : [v]).map(String);
}

export function usageError(message: string, command: string): LadingError {
  return new LadingError('USAGE', `${message} (see: lading ${command} --help)`);
}

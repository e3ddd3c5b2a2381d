#!/usr/bin/env node
import { setMaxListeners } from 'node:events';
import { LadingError } from '../errors';
import type { CommandContext } from '../command/context';
import { terminalSafe } from '../terminal/format';
import { withRemedy } from './remedies';

// package.json sits outside the compiled tree; reading it at run time keeps one source of truth.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = (require('../../../package.json') as { version: string }).version;

const help = `lading ${VERSION}: ship container image archives to OCI registries and Amazon ECR, no docker needed.

Usage: lading COMMAND [options]

Commands:
  inspect ARCHIVE    describe an image archive and verify every blob in it
  push ARCHIVE DEST  push an image archive to a registry (host/repo:tag) or an OCI layout (oci:DIR)
  serve              run a local ECR-compatible registry (ECR API and /v2/) for offline work and tests
  cdk publish [DIR]  publish a synthesized CDK app's image-archive assets to ECR, so cdk deploy needs no docker
  version            print the version
  completion SHELL   print a bash or zsh completion script

Run 'lading COMMAND --help' for a command's options.
`;

type Command = (ctx: CommandContext, args: string[]) => Promise<number>;

/* eslint-disable @typescript-eslint/no-require-imports */
// Each command's module is loaded only when it runs: `lading inspect` then never loads the AWS
// SDK, the HTTP client or the server, which cost ~0.3 s and ~25 MiB of RSS at every start.
const commands: Record<string, () => { run: Command; help: string }> = {
  inspect: () => {
    const m = require('./inspect') as typeof import('./inspect');
    return { run: m.runInspect, help: m.inspectHelp };
  },
  push: () => {
    const m = require('./push') as typeof import('./push');
    return { run: m.runPush, help: m.pushHelp };
  },
  serve: () => {
    const m = require('../serve/cli') as typeof import('../serve/cli');
    return { run: m.runServe, help: m.serveHelp };
  },
  cdk: () => {
    const m = require('../cdk-publish/cli') as typeof import('../cdk-publish/cli');
    return { run: m.runCdk, help: m.cdkHelp };
  },
  completion: () => {
    const m = require('./completion') as typeof import('./completion');
    const run: Command = async (ctx, args) => {
      if (args[0] === '--help' || args[0] === '-h') {
        ctx.stdout(m.completionHelp);
        return 0;
      }
      if (args.length !== 1) throw new LadingError('USAGE', 'completion needs a shell: bash or zsh');
      const helps = Object.fromEntries(
        Object.entries(commands)
          .filter(([n]) => n !== 'completion')
          .map(([n, c]) => [n, c().help]),
      );
      ctx.stdout(m.completionScript(args[0]!, helps));
      return 0;
    };
    return { run, help: m.completionHelp };
  },
};
/* eslint-enable @typescript-eslint/no-require-imports */

/** Runs the CLI; resolves to the exit code. Exported for tests, which run it in-process too. */
export async function main(
  argv: string[],
  io: {
    stdout?: (s: string) => void;
    stderr?: (s: string) => void;
    env?: NodeJS.ProcessEnv;
    signal?: AbortSignal;
  } = {},
): Promise<number> {
  const out = io.stdout ?? ((s: string) => process.stdout.write(s.endsWith('\n') ? s : `${s}\n`));
  const err = io.stderr ?? ((s: string) => process.stderr.write(s.endsWith('\n') ? s : `${s}\n`));
  const debugOn = argv.includes('--debug');
  const json = argv.includes('--json');
  const ctx: CommandContext = {
    stdout: out,
    stderr: err,
    debug: debugOn ? (line: string) => err(`debug: ${line}`) : undefined,
    signal: io.signal ?? new AbortController().signal,
    isTTY: io.stderr === undefined && process.stderr.isTTY === true,
    stderrRaw: io.stderr === undefined ? (s: string) => void process.stderr.write(s) : undefined,
    env: io.env ?? process.env,
  };
  const [name, ...rest] = argv;
  try {
    if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
      const topic = name === 'help' ? rest[0] : undefined;
      // No command at all is a usage error: the usage goes to stderr, as the exit code says.
      (name === undefined ? err : out)(topic && commands[topic] ? commands[topic]().help : help);
      return name === undefined ? 2 : 0;
    }
    if (name === 'version' || name === '--version' || name === '-V') {
      out(VERSION);
      return 0;
    }
    const cmd = commands[name];
    if (!cmd)
      throw new LadingError(
        'USAGE',
        `unknown command "${name}" (commands: ${Object.keys(commands).join(', ')}; see lading --help)`,
      );
    return await cmd().run(ctx, rest);
  } catch (e) {
    // Interrupted: whatever the cancelled work failed with (a reset stream, a truncated stdin),
    // the reason to report is the signal.
    const reason: unknown = ctx.signal.aborted ? ctx.signal.reason : undefined;
    const le =
      reason instanceof LadingError
        ? reason
        : e instanceof LadingError
          ? e
          : new LadingError('INTERNAL', `unexpected error: ${(e as Error)?.message ?? String(e)}`, { cause: e });
    const message = withRemedy(le);
    if (json) out(JSON.stringify({ error: { code: le.code, message } }, null, 2));
    // One line whatever the message holds: names from a hostile archive cannot forge output.
    err(`lading: ${terminalSafe(message)}`);
    if (debugOn) err((le.cause as Error | undefined)?.stack ?? le.stack ?? '');
    return le.exitCode;
  }
}

if (require.main === module) {
  // The AWS SDK warns on every run under Node < 22 about its own future releases; lading
  // supports Node 20, so the notice is noise in a push's output (shown under --debug).
  if (!process.argv.includes('--debug')) process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  const ac = new AbortController();
  // Every request in flight listens on this one signal (dozens at once in a big push).
  setMaxListeners(0, ac.signal);
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals): void => {
    // First signal: cancel in-flight work cleanly; second: leave at once.
    if (++signals > 1) process.exit(sig === 'SIGINT' ? 130 : 143);
    process.exitCode = sig === 'SIGINT' ? 130 : 143;
    ac.abort(new LadingError('ABORTED', `interrupted by ${sig}`));
    // A push reading standard input waits for bytes that may never come: end that wait, so
    // the reader fails, cleans up (temp files included) and main() returns.
    if (!process.stdin.destroyed && process.stdin.readableFlowing !== null) process.stdin.destroy();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A closed pipe (`lading inspect x | head`) is not an error worth a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
  main(process.argv.slice(2), { signal: ac.signal }).then(
    (code) => {
      process.exitCode = signals > 0 ? process.exitCode : code;
      // Interrupted and cleaned up: leave now, whatever still holds the event loop (keep-alive
      // sockets, standard input).
      if (signals > 0) process.exit();
    },
    (e: unknown) => {
      process.stderr.write(`lading: internal error: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}

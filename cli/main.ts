/**
 * ntml command line: `ntml purify ...` and `ntml stack ...` (see `ntml --help`).
 * Exit codes: 0 success, 1 a run or server failed, 2 bad command line or config, 130 interrupted.
 * Heavy modules (Temporal, TensorFlow, the AWS SDK) load only in the commands that need them.
 */
// The AWS SDK warns on every start that its 2027 releases need Node 22; not actionable here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { commandUsage, parseArgs, type CommandSpec, type ParsedArgs } from './args';
import * as specs from './commands';
import * as sweepSpecs from './sweep';
import * as bundleSpecs from './storeBundle';
import { auditRoute } from './audit';
import { stackEnvSpec } from './stackEnv';
import { UsageError, UserError } from './errors';
import type { Io } from './purify';

type Handler = (args: ParsedArgs, io: Io) => Promise<number>;

type Route = { spec: CommandSpec; rest: string[]; handler: () => Promise<Handler> } | { text: string };

function route(argv: string[]): Route {
  const [command, sub, ...more] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') return { text: specs.mainUsage() };
  if (command === 'purify') {
    switch (sub) {
      case 'status':
        return { spec: specs.purifyStatus, rest: more, handler: async () => (await import('./purify')).purifyStatus };
      case 'attach':
        return { spec: specs.purifyAttach, rest: more, handler: async () => (await import('./purify')).purifyAttach };
      case 'cancel':
        return { spec: specs.purifyCancel, rest: more, handler: async () => (await import('./purify')).purifyCancel };
      case 'run':
        return { spec: specs.purifyRun, rest: more, handler: async () => (await import('./purify')).purifyRun };
      default:
        if (sub !== undefined && !sub.startsWith('-')) {
          throw new UsageError(`unknown purify subcommand "${sub}" (expected status, attach or cancel, or options such as --config)`, commandUsage(specs.purifyRun, true));
        }
        return { spec: specs.purifyRun, rest: argv.slice(1), handler: async () => (await import('./purify')).purifyRun };
    }
  }
  if (command === 'stack') {
    switch (sub) {
      case 'start':
        return { spec: specs.stackStart, rest: more, handler: async () => (await import('./stack')).stackStart };
      case 'stop':
        return { spec: specs.stackStop, rest: more, handler: async () => (await import('./stack')).stackStop };
      case 'status':
        return { spec: specs.stackStatusSpec, rest: more, handler: async () => (await import('./stack')).stackStatusCmd };
      case 'env':
        return { spec: stackEnvSpec, rest: more, handler: async () => (await import('./stackEnv')).stackEnv };
      default:
        if (sub === '--help' || sub === '-h') return { text: specs.stackUsage() };
        if (sub === undefined) throw new UsageError('missing stack subcommand (start, stop or status)', specs.stackUsage());
        throw new UsageError(`unknown stack subcommand "${sub}" (expected start, stop or status)`, specs.stackUsage());
    }
  }
  if (command === 'sweep') {
    const sweep = async () => import('./sweep');
    switch (sub) {
      case 'start':
        return { spec: sweepSpecs.sweepStartSpec, rest: more, handler: async () => (await sweep()).sweepStart };
      case 'resume':
        return { spec: sweepSpecs.sweepResumeSpec, rest: more, handler: async () => (await sweep()).sweepStart };
      case 'status':
        return { spec: sweepSpecs.sweepStatusSpec, rest: more, handler: async () => (await sweep()).sweepStatus };
      case 'cancel':
        return { spec: sweepSpecs.sweepCancelSpec, rest: more, handler: async () => (await sweep()).sweepCancel };
      case 'report':
        return { spec: sweepSpecs.sweepReportSpec, rest: more, handler: async () => (await sweep()).sweepReport };
      default:
        if (sub === '--help' || sub === '-h') return { text: specs.sweepUsage() };
        throw new UsageError(`${sub === undefined ? 'missing' : `unknown`} sweep subcommand${sub ? ` "${sub}"` : ''} (expected start, resume, status, cancel or report)`, specs.sweepUsage());
    }
  }
  if (command === 'audit') return auditRoute(sub, more);
  if (command === 'store') {
    if (sub === 'gc') return { spec: sweepSpecs.storeGcSpec, rest: more, handler: async () => (await import('./sweep')).storeGc };
    if (sub === 'export') return { spec: bundleSpecs.storeExportSpec, rest: more, handler: async () => (await import('./storeBundle')).storeExport };
    if (sub === 'import') return { spec: bundleSpecs.storeImportSpec, rest: more, handler: async () => (await import('./storeBundle')).storeImport };
    if (sub === '--help' || sub === '-h') return { text: specs.storeUsage() };
    throw new UsageError(`${sub === undefined ? 'missing' : 'unknown'} store subcommand${sub ? ` "${sub}"` : ''} (expected gc, export or import)`, specs.storeUsage());
  }
  throw new UsageError(`unknown command "${command}"`, specs.mainUsage());
}

async function main(argv: string[]): Promise<number> {
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts === 1) {
      process.stderr.write(`\n${sig === 'SIGINT' ? 'Ctrl-C' : sig}: stopping (again to force) ...\n`);
      controller.abort();
    } else {
      process.exit(130);
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const io: Io = { stdout: process.stdout, stderr: process.stderr, signal: controller.signal };

  if (argv[0] === 'attack') return (await import('./attack')).attackCommand(argv.slice(1));
  if (argv[0] === 'defense') return (await import('./defense')).defenseCommand(argv.slice(1));
  if (argv[0] === 'data') return (await import('./data')).dataCommand(argv.slice(1));
  const r = route(argv);
  if ('text' in r) {
    process.stdout.write(`${r.text}\n`);
    return 0;
  }
  const args = parseArgs(r.rest, r.spec);
  if (args.help) {
    process.stdout.write(`${commandUsage(r.spec)}\n`);
    return 0;
  }
  // one setting for every module that looks for the local stack (infra/stack/dir.ts reads it)
  if (typeof args.options['stack-dir'] === 'string') process.env.NTML_STACK_DIR = args.options['stack-dir'];
  (await import('./quiet')).silenceKnownNotices();
  // off unless NTML_OTEL_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT is set (then this loads the SDK)
  telemetryStarted = Boolean(await (await import('../telemetry/setup')).startTelemetry({ serviceName: 'ntml-cli' }));
  const handler = await r.handler();
  return handler(args, io);
}

function report(err: unknown): number {
  const debug = Boolean(process.env.NTML_DEBUG);
  if (err instanceof UsageError) {
    if (err.message) process.stderr.write(`ntml: ${err.message}\n`);
    if (err.usage) process.stderr.write(`${err.message ? '\n' : ''}${err.usage}\n`);
    return 2;
  }
  const e = err as Error;
  if (e?.name === 'ConfigError') {
    process.stderr.write(`ntml: ${e.message}\n`);
    return 2;
  }
  if (err instanceof UserError) {
    process.stderr.write(`ntml: ${err.message}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  // unexpected: one line, the stack only on request
  process.stderr.write(`ntml: ${e?.message ?? String(err)}\n`);
  if (debug && e?.stack) process.stderr.write(`${e.stack}\n`);
  else process.stderr.write('(set NTML_DEBUG=1 for the stack trace)\n');
  return 1;
}

let telemetryStarted = false;

/** Exports the command's spans before exiting (process.exit would drop what is still buffered). */
async function exit(code: number): Promise<never> {
  if (telemetryStarted) await (await import('../telemetry/setup')).shutdownTelemetry().catch(() => undefined);
  process.exit(code);
}

main(process.argv.slice(2)).then(
  (code) => exit(code),
  (err) => exit(report(err)),
);

/**
 * ntml command line (see `ntml --help`; the commands are declared in cli/tree.ts and parsed by
 * cli/program.ts). Exit codes: 0 success, 1 a run or server failed, 2 bad command line or
 * config, 130 interrupted. Heavy modules (Temporal, TensorFlow, the AWS SDK) load only in the
 * commands that need them.
 */
// The AWS SDK warns on every start that its 2027 releases need Node 22; not actionable here.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
// TensorFlow's runtime logs: errors only unless the user asks for more (its start-up notices
// are kept off the terminal by cli/quiet.ts; core/tf.ts sets the same default for workers).
process.env.TF_CPP_MIN_LOG_LEVEL ??= '2';

import { runCli } from './program';
import type { CliIo } from './tree';

let telemetryStarted = false;

// `ntml --help | head`: a reader that goes away ends the command quietly, as for any Unix tool
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
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
  const io: CliIo = { stdout: process.stdout, stderr: process.stderr, signal: controller.signal };
  return runCli(argv, io, {
    async beforeHandler(leaf) {
      const quiet = await import('./quiet');
      quiet.silenceKnownNotices();
      if (leaf.tensorflow) quiet.loadTensorFlowQuietly();
      // off unless NTML_OTEL_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT is set (then this loads the SDK)
      telemetryStarted = Boolean(await (await import('../telemetry/setup')).startTelemetry({ serviceName: 'ntml-cli' }));
    },
  });
}

/** Exports the command's spans before exiting (process.exit would drop what is still buffered). */
async function exit(code: number): Promise<never> {
  if (telemetryStarted) await (await import('../telemetry/setup')).shutdownTelemetry().catch(() => undefined);
  process.exit(code);
}

main(process.argv.slice(2)).then(
  (code) => exit(code),
  (err) => {
    process.stderr.write(`ntml: ${(err as Error)?.message ?? String(err)}\n`);
    return exit(1);
  },
);

/**
 * Training worker: runs the NT-ML activities. `node dist/workers/training.js`
 * Refuses to start when the requested TensorFlow backend (NTML_BACKEND) cannot be loaded.
 * On SIGTERM/SIGINT it stops polling, lets each running stage checkpoint its current epoch
 * and hand over (activities/drain.ts), then exits; the shutdown grace (NTML_SHUTDOWN_GRACE_SECONDS)
 * bounds how long that may take before running work is cancelled.
 * Started by a command as its child (NTML_PARENT_PID, workers/parentWatch.ts), it also stops when
 * that command is gone, and then exits within the grace plus a few seconds even if the drain
 * cannot finish (the command's embedded Temporal server may have gone with it).
 */
import { connectWorker, createTrainingWorker } from './createWorkers';
import { describeSecurity, workerEnv } from './env';
import { installWorkerRuntime } from './runtime';
import { startDraining } from '../activities/drain';
import { PARENT_PID_VARIABLE, parentPidFromEnv, watchParent } from './parentWatch';
import { shutdownTelemetry, startTelemetry } from '../telemetry/setup';

/** After its parent is gone, the worker exits at the latest this long after the shutdown grace. */
const PARENT_GONE_EXIT_SECONDS = 5;

async function main() {
  const env = workerEnv();
  installWorkerRuntime();
  // Fail before polling if the requested TensorFlow backend is missing (never fall back).
  const { backendKind, nativeTensorflowVersion } = await import('../core/tf');
  const telemetry = await startTelemetry({ serviceName: 'ntml-training-worker' });
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      console.log(`ntml training worker: ${signal}, stopping after the running epochs are checkpointed`);
      startDraining();
    });
  }
  const parentPid = parentPidFromEnv();
  let worker: Awaited<ReturnType<typeof createTrainingWorker>> | undefined;
  if (parentPid !== undefined) {
    watchParent(parentPid, () => {
      console.log(`ntml training worker: the process that started it (pid ${parentPid}, ${PARENT_PID_VARIABLE}) is gone, stopping`);
      startDraining();
      const state = worker?.getState() ?? 'INITIALIZED';
      // not polling yet: nothing to hand over; already stopping (a SIGTERM came first): let it drain
      if (state === 'INITIALIZED') process.exit(1);
      if (state === 'RUNNING') worker!.shutdown();
      // the drain reports to Temporal, which may be gone with the parent's embedded stack: bounded
      setTimeout(() => {
        console.error(`ntml training worker: not stopped ${env.shutdownGraceSeconds + PARENT_GONE_EXIT_SECONDS} s after its parent went; exiting`);
        process.exit(1);
      }, (env.shutdownGraceSeconds + PARENT_GONE_EXIT_SECONDS) * 1000).unref();
    });
  }
  const connection = await connectWorker(env.address, env.security);
  worker = await createTrainingWorker({
    connection,
    namespace: env.namespace,
    taskQueue: env.trainingTaskQueue,
    slots: env.slots,
    shutdownGraceSeconds: env.shutdownGraceSeconds,
  });
  console.log(
    `ntml training worker: backend ${backendKind} (TensorFlow ${nativeTensorflowVersion()}), queue ${worker.options.taskQueue}, ` +
      `slots ${env.slots}, shutdown grace ${env.shutdownGraceSeconds} s, Temporal ${env.address} (${describeSecurity(env.security)})` +
      `${telemetry ? `, telemetry to ${telemetry.endpoint}` : ''}`,
  );
  try {
    await worker.run();
  } finally {
    await connection.close();
    await shutdownTelemetry();
  }
  console.log('ntml training worker: stopped');
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

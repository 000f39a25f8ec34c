/**
 * Training worker: runs the NT-ML activities. `node dist/workers/training.js`
 * Refuses to start when the requested TensorFlow backend (NTML_BACKEND) cannot be loaded.
 * On SIGTERM/SIGINT it stops polling, lets each running stage checkpoint its current epoch
 * and hand over (activities/drain.ts), then exits; the shutdown grace (NTML_SHUTDOWN_GRACE_SECONDS)
 * bounds how long that may take before running work is cancelled.
 */
import { connectWorker, createTrainingWorker } from './createWorkers';
import { describeSecurity, workerEnv } from './env';
import { installWorkerRuntime } from './runtime';
import { startDraining } from '../activities/drain';
import { shutdownTelemetry, startTelemetry } from '../telemetry/setup';

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
  const connection = await connectWorker(env.address, env.security);
  const worker = await createTrainingWorker({
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

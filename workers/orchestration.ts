/** Orchestration worker: runs workflow code only. `node dist/workers/orchestration.js` */
import { connectWorker, createOrchestrationWorker } from './createWorkers';
import { TRAINING_TASK_QUEUE } from '../workflows/contract';
import { describeSecurity, workerEnv } from './env';
import { installWorkerRuntime } from './runtime';
import { shutdownTelemetry, startTelemetry } from '../telemetry/setup';
import { observeQueueBacklog } from '../telemetry/temporal';

async function main() {
  const env = workerEnv();
  installWorkerRuntime();
  const telemetry = await startTelemetry({ serviceName: 'ntml-orchestration-worker' });
  const connection = await connectWorker(env.address, env.security);
  const worker = await createOrchestrationWorker({ connection, namespace: env.namespace, taskQueue: env.orchestrationTaskQueue });
  // one process per deployment reports the backlog: the training queue's is what says "add GPU workers"
  const stopObserving = observeQueueBacklog(connection.workflowService, env.namespace, [
    { name: worker.options.taskQueue, kind: 'workflow' },
    { name: env.trainingTaskQueue ?? TRAINING_TASK_QUEUE, kind: 'activity' },
  ]);
  console.log(
    `ntml orchestration worker: queue ${worker.options.taskQueue}, Temporal ${env.address} (${describeSecurity(env.security)})` +
      `${telemetry ? `, telemetry to ${telemetry.endpoint}` : ''}`,
  );
  try {
    await worker.run();
  } finally {
    stopObserving();
    await connection.close();
    await shutdownTelemetry();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

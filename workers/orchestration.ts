/** Orchestration worker: runs workflow code only. `node dist/workers/orchestration.js` */
import { connectWorker, createOrchestrationWorker } from './createWorkers';
import { workerEnv } from './env';

async function main() {
  const env = workerEnv();
  const connection = await connectWorker(env.address);
  const worker = await createOrchestrationWorker({ connection, namespace: env.namespace, taskQueue: env.orchestrationTaskQueue });
  console.log(`ntml orchestration worker: queue ${worker.options.taskQueue}`);
  await worker.run();
  await connection.close();
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

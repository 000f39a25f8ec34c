/** Training worker: runs the NT-ML activities. `node dist/workers/training.js` */
import { connectWorker, createTrainingWorker } from './createWorkers';
import { workerEnv } from './env';

async function main() {
  const env = workerEnv();
  // Fail before polling if the requested TensorFlow backend is missing (never fall back).
  const { backendKind, nativeTensorflowVersion } = await import('../core/tf');
  const connection = await connectWorker(env.address);
  const worker = await createTrainingWorker({ connection, namespace: env.namespace, taskQueue: env.trainingTaskQueue, slots: env.slots, shutdownGraceSeconds: env.shutdownGraceSeconds });
  console.log(`ntml training worker: backend ${backendKind} (TensorFlow ${nativeTensorflowVersion()}), queue ${worker.options.taskQueue}, slots ${env.slots}`);
  await worker.run();
  await connection.close();
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

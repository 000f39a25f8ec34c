/** Worker settings from the environment (deployments configure workers this way). */
export function workerEnv(env: NodeJS.ProcessEnv = process.env) {
  const address = env.NTML_TEMPORAL_ADDRESS;
  if (!address) {
    throw new Error('NTML_TEMPORAL_ADDRESS is not set: the Temporal frontend address, e.g. 127.0.0.1:7233');
  }
  const slots = Number(env.NTML_WORKER_SLOTS ?? '1');
  if (!Number.isInteger(slots) || slots < 1) throw new Error(`NTML_WORKER_SLOTS must be a positive integer, got "${env.NTML_WORKER_SLOTS}"`);
  return {
    address,
    namespace: env.NTML_NAMESPACE ?? 'default',
    orchestrationTaskQueue: env.NTML_ORCHESTRATION_TASK_QUEUE,
    trainingTaskQueue: env.NTML_TRAINING_TASK_QUEUE,
    slots,
    shutdownGraceSeconds: Number(env.NTML_SHUTDOWN_GRACE_SECONDS ?? '60'),
  };
}

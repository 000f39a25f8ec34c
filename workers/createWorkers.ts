/**
 * Worker construction shared by the entry points, the CLI's embedded mode and the tests.
 * Two task queues: orchestration (workflow code only) and training (the activities, one
 * slot per device, since each training activity saturates its CPU cores or GPU).
 */
import * as path from 'node:path';
import { NativeConnection, Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { TRAINING_TASK_QUEUE } from '../workflows/purify';

export const ORCHESTRATION_TASK_QUEUE = 'ntml-orchestration';
export { TRAINING_TASK_QUEUE };

export const workflowsPath = path.join(__dirname, '..', 'workflows', 'index.js');

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;
/** The workflow bundle is built once per process (webpack takes seconds). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= bundleWorkflowCode({ workflowsPath, logger: quietBundlerLogger });
  return bundle;
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: (m: string) => console.warn(m),
  error: (m: string) => console.error(m),
};

export interface WorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  taskQueue?: string;
}

export async function createOrchestrationWorker(o: WorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? ORCHESTRATION_TASK_QUEUE,
    workflowBundle: await workflowBundle(),
  });
}

export async function createTrainingWorker(
  o: WorkerOptions & { slots?: number; shutdownGraceSeconds?: number },
): Promise<Worker> {
  // Loaded here, not at the top: only training workers need TensorFlow.
  const activities = await import('../activities');
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? TRAINING_TASK_QUEUE,
    activities,
    maxConcurrentActivityTaskExecutions: o.slots ?? 1,
    // a deploy or SIGTERM lets the running epoch finish and checkpoint before cancelling
    shutdownGraceTime: `${o.shutdownGraceSeconds ?? 60}s`,
    // epoch progress and cancellation reach the server within seconds, not the SDK's default minute
    maxHeartbeatThrottleInterval: '2s',
    defaultHeartbeatThrottleInterval: '2s',
  });
}

export async function connectWorker(address: string): Promise<NativeConnection> {
  return NativeConnection.connect({ address });
}

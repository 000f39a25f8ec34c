/**
 * Worker construction shared by the entry points, the CLI's embedded mode and the tests.
 * Two task queues: orchestration (workflow code only) and training (the activities, one
 * slot per device, since each training activity saturates its CPU cores or GPU).
 * Telemetry (telemetry/) and the payload codec (workers/payloadCodec.ts) are added when this
 * process has them configured; otherwise the workers are exactly the SDK's defaults.
 */
import * as path from 'node:path';
import type { PayloadCodec } from '@temporalio/common';
import { NativeConnection, Worker, bundleWorkflowCode, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { ORCHESTRATION_TASK_QUEUE, TRAINING_TASK_QUEUE } from '../workflows/contract';
import { activityInterceptors, workflowInterceptorModules, workflowSinks } from '../telemetry/temporal';
import { payloadCodecFromEnv } from './payloadCodec';
import { temporalSecurity, type TemporalSecurity } from './env';

// re-exported for the CLI, which loads this module lazily anyway; the names are defined only in the contract
export { ORCHESTRATION_TASK_QUEUE, TRAINING_TASK_QUEUE };

export const workflowsPath = path.join(__dirname, '..', 'workflows', 'index.js');

const bundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();
/**
 * The workflow bundle is built once per process (webpack takes seconds). With telemetry on it
 * also holds the OpenTelemetry workflow interceptors: a prebuilt bundle ignores the worker's
 * `interceptors.workflowModules`, so they are bundled in instead.
 */
export function workflowBundle(interceptorModules: string[] = []): Promise<WorkflowBundleWithSourceMap> {
  const key = interceptorModules.join('\n');
  let bundle = bundles.get(key);
  if (!bundle) {
    bundle = bundleWorkflowCode({ workflowsPath, workflowInterceptorModules: interceptorModules, logger: quietBundlerLogger });
    bundles.set(key, bundle);
  }
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
  /** payload encryption; default: the codec NTML_PAYLOAD_KEY_FILE configures, if any; null: none */
  payloadCodec?: PayloadCodec | null;
}

function dataConverter(o: WorkerOptions) {
  const codec = o.payloadCodec === undefined ? payloadCodecFromEnv() : o.payloadCodec;
  return codec ? { payloadCodecs: [codec] } : undefined;
}

export async function createOrchestrationWorker(o: WorkerOptions): Promise<Worker> {
  const modules = workflowInterceptorModules();
  const sinks = workflowSinks();
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? ORCHESTRATION_TASK_QUEUE,
    workflowBundle: await workflowBundle(modules),
    ...(sinks ? { sinks } : {}),
    dataConverter: dataConverter(o),
  });
}

export async function createTrainingWorker(
  o: WorkerOptions & {
    slots?: number;
    shutdownGraceSeconds?: number;
    /** how long the SDK may hold heartbeats back (default 2 s; an interactive command wants 1 s) */
    heartbeatThrottleSeconds?: number;
  },
): Promise<Worker> {
  // Loaded here, not at the top: only training workers need TensorFlow.
  const activities = await import('../activities');
  const throttle = (o.heartbeatThrottleSeconds ?? 2) * 1000;
  return Worker.create({
    connection: o.connection,
    namespace: o.namespace ?? 'default',
    taskQueue: o.taskQueue ?? TRAINING_TASK_QUEUE,
    activities,
    maxConcurrentActivityTaskExecutions: o.slots ?? 1,
    // a deploy or SIGTERM lets the running epoch finish and checkpoint before cancelling
    shutdownGraceTime: `${o.shutdownGraceSeconds ?? 60}s`,
    // epoch progress and cancellation reach the server within seconds, not the SDK's default minute
    maxHeartbeatThrottleInterval: throttle,
    defaultHeartbeatThrottleInterval: throttle,
    interceptors: { activity: activityInterceptors() },
    dataConverter: dataConverter(o),
  });
}

/**
 * The workers' connection to the Temporal frontend. Security (TLS, mTLS, API key) comes from
 * the NTML_TEMPORAL_TLS_* / NTML_TEMPORAL_API_KEY* variables unless given (workers/env.ts).
 */
export async function connectWorker(address: string, security: TemporalSecurity = temporalSecurity()): Promise<NativeConnection> {
  return NativeConnection.connect({
    address,
    ...(security.tls ? { tls: security.tls } : {}),
    ...(security.apiKey ? { apiKey: security.apiKey } : {}),
  });
}

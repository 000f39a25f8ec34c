/**
 * Training workers as child processes of an embedded `ntml sweep`, each with its own share of
 * the cores. One tfjs-node process runs its TensorFlow kernels from a single JavaScript thread,
 * so two cells in one process take turns; and one process at 2 intra-op threads keeps only
 * about 1.6 of 2 cores busy (docs/performance.md). N single-slot processes at cores/N threads
 * each run N cells truly in parallel: on the 2-core build VM two 1-thread processes trained
 * smallCnn at 1.47x the steps per second of one 2-thread process (docs/performance.md).
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnServer, type ManagedProcess } from '../infra/stack/proc';

export interface TrainingProcesses {
  readonly count: number;
  readonly threadsEach: number;
  readonly pids: number[];
  /** rejects with a message when a process exits while it should be working */
  readonly failed: Promise<never>;
  stop(graceMs: number): Promise<void>;
}

/** Cores this process may use (cgroup and affinity limits included where Node sees them). */
export function usableCores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/**
 * How many training processes a sweep gets unless told: one per cell that may run at once, at
 * most one per core, on CPU workers. GPU workers keep one in-process worker (one device).
 */
export function defaultTrainingProcesses(concurrency: number, env: NodeJS.ProcessEnv = process.env, cores = usableCores()): number {
  if ((env.NTML_BACKEND ?? 'cpu').toLowerCase() === 'gpu') return 1;
  return Math.max(1, Math.min(concurrency, cores));
}

/** Intra-op threads per process: an explicit TF_NUM_INTRAOP_THREADS wins, else an even share of the cores. */
export function threadsPerProcess(count: number, env: NodeJS.ProcessEnv = process.env, cores = usableCores()): number {
  const explicit = Number(env.TF_NUM_INTRAOP_THREADS);
  if (Number.isInteger(explicit) && explicit > 0) return explicit;
  return Math.max(1, Math.floor(cores / count));
}

/** The environment of one child: the local stack, plaintext, one slot, a short drain. */
function childEnv(address: string, namespace: string, taskQueue: string, threads: number): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NTML_TEMPORAL_ADDRESS: address,
    NTML_NAMESPACE: namespace,
    NTML_TRAINING_TASK_QUEUE: taskQueue,
    NTML_WORKER_SLOTS: '1',
    // as the in-process embedded worker: Ctrl-C stops training at the next batch
    NTML_SHUTDOWN_GRACE_SECONDS: '3',
    TF_NUM_INTRAOP_THREADS: String(threads),
    // the child stops when this command is gone, even by SIGKILL (workers/parentWatch.ts)
    NTML_PARENT_PID: String(process.pid),
  };
  // the embedded stack is plaintext, whatever the variables say about a remote cluster
  for (const k of Object.keys(env)) if (k.startsWith('NTML_TEMPORAL_TLS') || k.startsWith('NTML_TEMPORAL_API_KEY')) delete env[k];
  return env;
}

export async function startTrainingProcesses(opts: {
  count: number;
  address: string;
  namespace: string;
  taskQueue: string;
  logFile: string;
}): Promise<TrainingProcesses> {
  const threadsEach = threadsPerProcess(opts.count);
  const script = path.join(__dirname, '..', 'workers', 'training.js');
  const procs: ManagedProcess[] = [];
  let stopping = false;
  try {
    for (let i = 0; i < opts.count; i++) {
      procs.push(
        await spawnServer({
          command: process.execPath,
          args: [script],
          env: childEnv(opts.address, opts.namespace, opts.taskQueue, threadsEach),
          cwd: process.cwd(),
          logFile: opts.logFile,
          detached: false,
        }),
      );
    }
  } catch (err) {
    await Promise.all(procs.map((p) => p.stop(1_000)));
    throw err;
  }
  const failed = Promise.race(
    procs.map((p, i) =>
      p.exited.then((how) => {
        if (stopping) return new Promise<never>(() => undefined);
        throw new Error(`training process ${i + 1} of ${opts.count} (pid ${p.pid}) ${how}`);
      }),
    ),
  ) as Promise<never>;
  failed.catch(() => undefined);
  return {
    count: opts.count,
    threadsEach,
    pids: procs.map((p) => p.pid),
    failed,
    async stop(graceMs: number) {
      stopping = true;
      await Promise.all(procs.map((p) => p.stop(graceMs)));
    },
  };
}

/**
 * Embedded mode of `ntml purify` and `ntml sweep`: the local stack (a Temporal dev server and an
 * S3 server in .ntml/stack, or the one `ntml stack start` left running) plus an orchestration
 * worker in this process and training workers (one in this process, or N child processes that
 * split the cores: cli/trainingProcesses.ts), for the duration of one command.
 */
import { appendFileSync, mkdirSync } from 'node:fs';
import * as path from 'node:path';
import { inspect } from 'node:util';
import type { NativeConnection, Worker } from '@temporalio/worker';
import { startLocalStack, type LocalStack } from '../infra/stack/index';
import { UserError, debug } from './errors';
import { adoptStackEnv, recordedStack, stackDir } from './temporal';
import { startTrainingProcesses, type TrainingProcesses } from './trainingProcesses';

export interface Embedded {
  address: string;
  /** what was used, for messages */
  description: string;
  /** whether stop() also stops the stack (false when it uses a stack "ntml stack start" left running) */
  ownsStack: boolean;
  workerLog: string;
  /** rejects if a worker stops on its own (fatal error) */
  workersFailed: Promise<never>;
  /** `fast` (after Ctrl-C on an owned stack): wait at most 1.5 s for the servers and workers to stop */
  stop(opts?: { fast?: boolean }): Promise<void>;
}

let runtimeInstalled = false;

/** Worker and Core logs go to a file; only errors reach the terminal (one line each). */
async function installQuietRuntime(logFile: string): Promise<void> {
  if (runtimeInstalled) return;
  const { DefaultLogger, Runtime, makeTelemetryFilterString } = await import('@temporalio/worker');
  mkdirSync(path.dirname(logFile), { recursive: true });
  const logger = new DefaultLogger('INFO', (entry) => {
    const { message, level, meta } = entry;
    const time = new Date(Number(entry.timestampNanos / 1_000_000n)).toISOString();
    const details = meta && Object.keys(meta).length ? ` ${inspect(meta, { depth: 4, breakLength: Infinity })}` : '';
    try {
      appendFileSync(logFile, `${time} [${level}] ${message}${details}\n`);
    } catch {
      // logging must never break a run
    }
    if (level === 'ERROR') process.stderr.write(`worker error: ${message} (details in ${logFile})\n`);
  });
  Runtime.install({
    logger,
    // Ctrl-C is handled by the command (cli/purify.ts): it deals with the run, then stops the workers
    shutdownSignals: [],
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN', other: 'ERROR' }), forward: {} } },
  });
  runtimeInstalled = true;
}

/**
 * The training worker of createTrainingWorker (workers/createWorkers.ts) tuned for an
 * interactive command: heartbeats reach the server within a second (per-epoch progress and
 * prompt cancellation), and a 3 s shutdown grace, so Ctrl-C stops training at the next batch.
 */
async function createEmbeddedTrainingWorker(connection: NativeConnection, namespace: string, taskQueue: string): Promise<Worker> {
  const { createTrainingWorker } = await import('../workers/createWorkers');
  return createTrainingWorker({ connection, namespace, taskQueue, slots: 1, shutdownGraceSeconds: 3, heartbeatThrottleSeconds: 1 });
}

/**
 * Runs still open on a stack this process just started. Only an `ntml purify` or `ntml sweep` that
 * owned the stack ran workers for it, and Ctrl-C stops its servers at once (infra/stack), so such a
 * run was interrupted; terminating it keeps the new workers from picking it up next to the new run.
 * The new run loses nothing stored: finished stages come from the stage cache, and a cacheable
 * stage in progress continues from the checkpoints filed under its stage key.
 */
async function terminateLeftovers(address: string, namespace: string): Promise<string[]> {
  const { Client, Connection } = await import('@temporalio/client');
  const connection = await Connection.connect({ address, connectTimeout: 10_000 });
  try {
    const client = new Client({ connection, namespace });
    const ids: string[] = [];
    for await (const wf of client.workflow.list({ query: 'ExecutionStatus = "Running"' })) {
      await client.workflow.getHandle(wf.workflowId, wf.runId).terminate('interrupted: the ntml command that ran it was stopped');
      ids.push(wf.workflowId);
    }
    return ids;
  } finally {
    await connection.close();
  }
}

export async function startEmbedded(opts: {
  namespace: string;
  log: (line: string) => void;
  /** training workers: 1 (default) runs one in this process; more run as child processes */
  trainingProcesses?: number;
  /** the queues the workers poll (default: the contract's names) */
  queues?: { orchestration: string; training: string };
}): Promise<Embedded> {
  const dir = stackDir();
  const log = opts.log;
  let stack: LocalStack | undefined;
  let address: string;
  let description: string;
  const running = recordedStack(dir);
  if (running && running.detached) {
    address = running.temporal!.address;
    adoptStackEnv(running.env);
    Object.assign(process.env, { NTML_TEMPORAL_ADDRESS: address });
    const ui = running.temporal!.uiPort !== undefined ? `, Web UI http://127.0.0.1:${running.temporal!.uiPort}` : '';
    description = `the running stack in ${dir} (Temporal ${address}${ui}${running.env.NTML_STORE ? `, store ${running.env.NTML_STORE}` : ''})`;
    log(`using ${description}`);
  } else {
    if (running && !running.detached && running.ownerPid !== process.pid) {
      throw new UserError(
        `another ntml process (pid ${running.ownerPid}) is using the embedded stack in ${dir}; wait for it to finish, ` +
          `or share one stack between runs with "ntml stack start" (then run "ntml purify" again)`,
      );
    }
    const t0 = Date.now();
    log(`starting the embedded stack in ${dir} (Temporal dev server + S3 server) ...`);
    try {
      // Temporal's Web UI on loopback, so a long run or sweep can be watched there
      stack = await startLocalStack({ dir, temporalUi: true, log: () => undefined });
    } catch (err) {
      const message = (err as Error).message;
      const hint = /ENOENT|not found|setup\.sh|\.tools/.test(message) ? ' (run "bash infra/setup.sh" to install the servers)' : '';
      throw new UserError(`cannot start the embedded stack: ${message.split('\n')[0]}${hint}`);
    }
    address = stack.env.NTML_TEMPORAL_ADDRESS!;
    // the workers in this process and the report download use this stack's store
    for (const [k, v] of Object.entries(stack.env)) if (v !== undefined) process.env[k] = v;
    description = `embedded stack in ${dir} (Temporal ${address}, store ${stack.env.NTML_STORE})`;
    const ui = stack.temporal?.uiPort !== undefined ? `, Web UI http://127.0.0.1:${stack.temporal.uiPort}` : '';
    log(`stack up in ${((Date.now() - t0) / 1000).toFixed(1)} s: Temporal ${address}${ui}, S3 ${stack.env.NTML_S3_ENDPOINT} (store ${stack.env.NTML_STORE})`);
  }

  if (stack) {
    try {
      const left = await terminateLeftovers(address, opts.namespace);
      for (const id of left) log(`terminated run ${id}, left unfinished in ${dir} by an interrupted ntml command (its finished stages and checkpoints are kept)`);
    } catch (err) {
      await stack.stop();
      throw new UserError(`the embedded Temporal server at ${address} does not answer: ${(err as Error).message.split('\n')[0]}`);
    }
  }

  const workerLog = path.join(dir, 'workers.log');
  let connection: NativeConnection | undefined;
  const workers: Worker[] = [];
  const runs: Promise<void>[] = [];
  let children: TrainingProcesses | undefined;
  const stopAll = async (fast = false) => {
    for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
    // the children drain like the in-process worker: a 3 s grace, then their epoch is cancelled
    const childrenStopped = children?.stop(fast ? 1_500 : 10_000);
    if (fast) {
      // Interrupted: the servers already got the signal (infra/stack) and die with this process at
      // the latest (their watchdog), so neither their shutdown nor a worker drain, which would only
      // retry against them, is worth waiting for.
      const stopped = stack?.stop().catch(() => undefined);
      await Promise.race([Promise.allSettled([stopped, childrenStopped, ...runs]), new Promise((r) => setTimeout(r, 1_500))]);
      debug('fast stop done');
      return;
    }
    await Promise.allSettled([...runs, childrenStopped]);
    debug('workers stopped');
    await connection?.close().catch(() => undefined);
    await stack?.stop();
    debug('stack stopped');
  };
  try {
    await installQuietRuntime(workerLog);
    const processes = opts.trainingProcesses ?? 1;
    const { connectWorker, createOrchestrationWorker, ORCHESTRATION_TASK_QUEUE, TRAINING_TASK_QUEUE } = await import('../workers/createWorkers');
    const queues = opts.queues ?? { orchestration: ORCHESTRATION_TASK_QUEUE, training: TRAINING_TASK_QUEUE };
    // the local stack is plaintext, whatever NTML_TEMPORAL_TLS_* say about a remote cluster
    connection = await connectWorker(address, {});
    if (processes > 1) {
      children = await startTrainingProcesses({ count: processes, address, namespace: opts.namespace, taskQueue: queues.training, logFile: workerLog });
      log(
        `started an orchestration worker in this process and ${processes} training worker processes ` +
          `(pids ${children.pids.join(', ')}; ${children.threadsEach} TensorFlow thread${children.threadsEach === 1 ? '' : 's'} each; log: ${workerLog})`,
      );
    } else {
      log(`starting an orchestration and a training worker in this process (log: ${workerLog}) ...`);
    }
    workers.push(await createOrchestrationWorker({ connection, namespace: opts.namespace, taskQueue: queues.orchestration }));
    if (!children) workers.push(await createEmbeddedTrainingWorker(connection, opts.namespace, queues.training));
  } catch (err) {
    await stopAll();
    throw err;
  }
  const failures = workers.map((w, i) => {
    const run = w.run();
    runs.push(run.catch(() => undefined));
    return run.then(
      () => {
        throw new UserError(`the ${i === 0 ? 'orchestration' : 'training'} worker stopped unexpectedly (see ${workerLog})`);
      },
      (err: Error) => {
        throw new UserError(`the ${i === 0 ? 'orchestration' : 'training'} worker failed: ${err.message.split('\n')[0]} (see ${workerLog})`);
      },
    );
  });
  if (children) {
    failures.push(
      children.failed.catch((err: Error) => {
        throw new UserError(`${err.message} (see ${workerLog})`);
      }),
    );
  }
  const workersFailed = Promise.race(failures) as Promise<never>;
  workersFailed.catch(() => undefined);
  let stopping: Promise<void> | undefined;
  return {
    address,
    description,
    ownsStack: stack !== undefined,
    workerLog,
    workersFailed,
    stop(o) {
      stopping ??= stopAll(o?.fast ?? false);
      return stopping;
    },
  };
}

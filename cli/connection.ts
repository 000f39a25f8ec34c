/**
 * One way to connect, for every command that talks to Temporal: where it runs (a remote
 * server, the local stack "ntml stack start" left running, or an embedded stack this command
 * starts), which task queues it uses, and whether it starts workers of its own.
 *
 *   remote    --address, else $NTML_TEMPORAL_ADDRESS: nothing is started; the deployment's
 *             workers serve the queues.
 *   local     the running stack in .ntml/stack: a command whose workflow needs workers starts
 *             them in this process (the stack has none of its own).
 *   embedded  neither: a command that needs workers starts the stack and workers; one that only
 *             reads (status, cancel) says there is no server to ask.
 *
 * The queues are $NTML_ORCHESTRATION_TASK_QUEUE / $NTML_TRAINING_TASK_QUEUE (else the contract's
 * names) in all three setups, and workers this command starts poll those same queues.
 */
import type { Client, Connection } from '@temporalio/client';
import type { CallScope } from './callScope';
import { ORCHESTRATION_TASK_QUEUE, TRAINING_TASK_QUEUE } from '../workflows/contract';
import type { Embedded } from './embedded';
import { UsageError, debug } from './errors';
import { findTarget, namespaceFrom, recordedStack, requireTarget, type TemporalTarget } from './temporal';

export type Setup = 'remote' | 'local' | 'embedded';

export interface Queues {
  orchestration: string;
  training: string;
}

/** The task queues of this deployment: the environment's names, else the contract's. */
export function queuesFromEnv(env: NodeJS.ProcessEnv = process.env): Queues {
  return {
    orchestration: env.NTML_ORCHESTRATION_TASK_QUEUE?.trim() || ORCHESTRATION_TASK_QUEUE,
    training: env.NTML_TRAINING_TASK_QUEUE?.trim() || TRAINING_TASK_QUEUE,
  };
}

/** Workflow options that carry a non-default training queue to the workflow (purify, sweep, audit accept it). */
export function queueOptions(q: Queues): { trainingTaskQueue: string } | undefined {
  return q.training === TRAINING_TASK_QUEUE ? undefined : { trainingTaskQueue: q.training };
}


export interface Connected {
  client: Client;
  setup: Setup;
  address: string;
  /** where the address came from, for messages */
  source: string;
  namespace: string;
  queues: Queues;
  /** the stack and workers this command started (local or embedded with workers) */
  embedded?: Embedded;
  /** the waits (result, progress queries) that close() cancels before it closes the connection */
  calls: CallScope;
  close(opts?: { fast?: boolean }): Promise<void>;
}

export interface ConnectOptions {
  address?: string;
  namespace?: string;
  /** --local: ignore $NTML_TEMPORAL_ADDRESS and use the local or embedded stack */
  local?: boolean;
  /** the command starts a workflow and waits for it, so someone must serve its queues */
  needsWorkers: boolean;
  trainingProcesses?: number;
  log: (line: string) => void;
  /** the first Ctrl-C: cancels the waits under `calls` at once */
  signal?: AbortSignal;
}

/** How long close() gives cancelled calls to settle before it gives up closing the channel. */
const CALLS_SETTLE_MS = 1_000;

/**
 * Cancels the scope's calls, then closes the channel. A call that does not settle (one in the
 * gRPC retry backoff) keeps the channel open: closing it under that call would throw from the
 * retry timer, and the process ends with the command anyway.
 */
async function closeConnection(calls: CallScope, connection: Connection): Promise<void> {
  if (await calls.cancel(CALLS_SETTLE_MS)) await connection.close().catch(() => undefined);
  else debug('a Temporal call did not settle after its cancel: the connection stays open until the process exits');
}

/** Where this command runs, without connecting (no side effects): the target, or undefined for a new embedded stack. */
export function resolveSetup(o: { address?: string; local?: boolean }): { setup: Setup; target?: TemporalTarget } {
  if (o.local && o.address) throw new UsageError('--local and --address exclude each other');
  if (o.local) {
    const stack = recordedStack();
    return stack?.detached ? { setup: 'local' } : { setup: 'embedded' };
  }
  const target = findTarget(o.address);
  if (!target) return { setup: 'embedded' };
  return { setup: target.local ? 'local' : 'remote', target };
}

export async function connect(o: ConnectOptions): Promise<Connected> {
  const namespace = namespaceFrom(o.namespace);
  const queues = queuesFromEnv();
  const { connectClient } = await import('./temporal');
  const { callScope } = await import('./callScope');
  const { setup, target } = resolveSetup(o);
  if (setup === 'remote' || !o.needsWorkers) {
    // a command that only reads asks whatever server there is, and says how to get one otherwise
    const t = target ?? requireTarget(undefined);
    const { client, connection } = await connectClient(t, namespace);
    const calls = callScope(connection, o.signal);
    return { client, setup: t.local ? 'local' : 'remote', address: t.address, source: t.source, namespace, queues, calls, close: () => closeConnection(calls, connection) };
  }
  const { startEmbedded } = await import('./embedded');
  const embedded = await startEmbedded({ namespace, log: o.log, trainingProcesses: o.trainingProcesses, queues });
  const source = embedded.ownsStack ? 'the embedded stack' : 'the running local stack';
  let client: Client;
  let connection: Connection;
  try {
    ({ client, connection } = await connectClient({ address: embedded.address, source, local: true }, namespace));
  } catch (err) {
    await embedded.stop();
    throw err;
  }
  const calls = callScope(connection, o.signal);
  return {
    client,
    setup: embedded.ownsStack ? 'embedded' : 'local',
    address: embedded.address,
    source,
    namespace,
    queues,
    embedded,
    calls,
    async close(opts) {
      await closeConnection(calls, connection);
      await embedded.stop(opts);
    },
  };
}

/**
 * A live worker long-polls without pause (a poll returns empty after about a minute and is
 * renewed at once), so its last access is recent; the server lists a worker that is gone for a
 * few more minutes, with its last access getting older.
 */
export const LIVE_POLLER_SECONDS = 90;

/** Whether a live worker polls the task queue; undefined if the server would not say. */
export async function hasPollers(client: Client, taskQueue: string, kind: 'workflow' | 'activity'): Promise<boolean | undefined> {
  try {
    const r = await client.connection.withDeadline(Date.now() + 5_000, () =>
      client.workflowService.describeTaskQueue({
        namespace: client.options.namespace,
        taskQueue: { name: taskQueue, kind: 1 },
        taskQueueType: kind === 'workflow' ? 1 : 2,
      }),
    );
    const now = Date.now();
    return (r.pollers ?? []).some((p) => {
      const seconds = p.lastAccessTime?.seconds;
      // a server that does not say when is taken at its word
      return seconds === undefined || seconds === null || now - Number(seconds) * 1000 < LIVE_POLLER_SECONDS * 1000;
    });
  } catch {
    return undefined;
  }
}

/**
 * The queues nobody polls, as one message, or undefined when both have workers. Embedded workers
 * poll as soon as they run, so a miss there is a real problem too.
 */
export async function missingWorkers(c: Pick<Connected, 'client' | 'queues' | 'address'>): Promise<string | undefined> {
  const [wf, act] = await Promise.all([hasPollers(c.client, c.queues.orchestration, 'workflow'), hasPollers(c.client, c.queues.training, 'activity')]);
  const missing = [wf === false ? `orchestration queue ${c.queues.orchestration}` : '', act === false ? `training queue ${c.queues.training}` : '']
    .filter(Boolean)
    .join(' and ');
  if (!missing) return undefined;
  return (
    `no worker polls the ${missing} on ${c.address}; the workflow waits until one starts ` +
    `(node dist/workers/orchestration.js and node dist/workers/training.js with NTML_TEMPORAL_ADDRESS, NTML_STORE and the same queue variables)`
  );
}

/**
 * Resolves when the signal aborts (the first Ctrl-C), so a wait can race it. Never rejects.
 */
export function aborted(signal: AbortSignal): Promise<'aborted'> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve('aborted');
    else signal.addEventListener('abort', () => resolve('aborted'), { once: true });
  });
}

/** Waiting on a run ended by the first Ctrl-C while Temporal was unreachable. */
export class WaitAborted extends Error {
  constructor() {
    super('stopped waiting');
    this.name = 'WaitAborted';
  }
}

/** gRPC UNAVAILABLE (14): the server is down or restarting, not the request wrong. */
const GRPC_UNAVAILABLE = 14;
const UNREACHABLE_MESSAGE = /\b(14 UNAVAILABLE|ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|Connection dropped|No connection established|connection refused)\b/i;

/** Whether `err` (or its cause chain) says Temporal could not be reached: worth waiting for, unlike a failed run. */
export function isTemporalUnreachable(err: unknown, depth = 0): boolean {
  if (!err || typeof err !== 'object' || depth > 5) return false;
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; name?: unknown };
  // a run's own failure (WorkflowFailedError) says the server answered, whatever its message
  if (e.name === 'WorkflowFailedError') return false;
  if (e.code === GRPC_UNAVAILABLE) return true;
  if (typeof e.message === 'string' && UNREACHABLE_MESSAGE.test(e.message)) return true;
  return isTemporalUnreachable(e.cause, depth + 1);
}

export interface ReconnectOptions {
  /** how long one outage is waited out; default: NTML_OUTAGE_BUDGET_SECONDS (1800), as for the store */
  budgetMs?: number;
  /** first backoff (doubled after each failure up to maxDelayMs) */
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** the first Ctrl-C: stop waiting (rejects with WaitAborted) */
  signal?: AbortSignal;
  /** one line when the outage begins and one when it ends */
  say: (line: string) => void;
  /** the server, for the messages */
  address?: string;
}

/**
 * Runs `f` (a wait on the server: a run's result), calling it again while Temporal is unreachable
 * (the local stack's supervisor restarts a dead server on its port within seconds), with capped
 * exponential backoff, until the outage has lasted the budget; then the last error, in words.
 * Any other error is rethrown at once.
 */
export async function retryWhileUnreachable<T>(f: () => Promise<T>, o: ReconnectOptions): Promise<T> {
  const { outagePolicyFromEnv } = await import('../store/outage');
  const policy = outagePolicyFromEnv();
  const budgetMs = o.budgetMs ?? policy.budgetMs;
  const maxDelayMs = o.maxDelayMs ?? Math.min(policy.maxDelayMs, 10_000);
  let since: number | undefined;
  let delay = o.initialDelayMs ?? 500;
  const where = o.address ? ` at ${o.address}` : '';
  for (;;) {
    if (o.signal?.aborted) throw new WaitAborted();
    try {
      const value = await f();
      if (since !== undefined) o.say(`Temporal${where} reachable again after ${Math.round((Date.now() - since) / 1000)} s`);
      return value;
    } catch (err) {
      if (!isTemporalUnreachable(err)) throw err;
      const now = Date.now();
      if (since === undefined) {
        since = now;
        o.say(`Temporal${where} unreachable since ${new Date(now).toISOString().slice(11, 19)}Z, retrying for up to ${Math.round(budgetMs / 1000)} s (NTML_OUTAGE_BUDGET_SECONDS)`);
      }
      const left = since + budgetMs - now;
      if (left <= 0) {
        const { UserError, failureMessage } = await import('./errors');
        throw new UserError(
          `Temporal${where} unreachable since ${new Date(since).toISOString().slice(11, 19)}Z, for longer than the outage budget of ${Math.round(budgetMs / 1000)} s: ${failureMessage(err).split('\n')[0]}`,
        );
      }
      await pause(Math.min(left, delay), o.signal);
      delay = Math.min(maxDelayMs, delay * 2);
    }
  }
}

function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Whether the local stack (.ntml/stack) is up: recorded, not stopped, and every server running
 * and healthy. Said before "the stack keeps running", which is untrue of a stack that died.
 */
export async function localStackUp(): Promise<boolean> {
  try {
    const { stackStatus } = await import('../infra/stack/index');
    const { stackDir } = await import('./temporal');
    const s = await stackStatus(stackDir());
    return s.recorded && !s.stoppedAt && s.ok;
  } catch {
    return false;
  }
}

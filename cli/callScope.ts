/**
 * The Temporal calls a command keeps pending while it waits (a run's result long poll, progress
 * queries), so that closing its connection cannot leave one behind.
 *
 * Why: a call still pending when the connection closes fails (or had already failed, with the
 * stack going down at Ctrl-C) with UNAVAILABLE, and the client's gRPC retry interceptor tries it
 * again from a timer, on a channel that is shut down by then. grpc-js throws "Channel has been
 * shut down" from that timer: an uncaught exception that ended `ntml sweep start` with exit code 1
 * instead of 130 after Ctrl-C. A cancelled call (status CANCELLED) is not retried, so close()
 * cancels every call of the scope first (Connection.withAbortSignal), waits for them to settle,
 * and only then closes the channel.
 */
import type { Connection } from '@temporalio/client';
import { WaitAborted } from './connection';

export interface CallScope {
  /** aborted once cancel() begins, or when the command's own signal (the first Ctrl-C) aborts */
  readonly signal: AbortSignal;
  /**
   * Runs `fn`, whose Temporal calls cancel() ends; calls nested anywhere below `fn` belong to the
   * scope too (the client carries the signal in async context). Once cancelled, rejects at once.
   */
  run<T>(fn: () => Promise<T>): Promise<T>;
  /**
   * Cancels every call under run() and resolves true once all have settled, or false when some
   * did not within `settleMs`: a call created after the abort (gRPC subscribes a call to the
   * signal only when it starts) or one waiting in the retry interceptor's backoff, which a cancel
   * does not reach. Closing the channel under such a call is what crashes the process.
   */
  cancel(settleMs: number): Promise<boolean>;
}

export function callScope(connection: Pick<Connection, 'withAbortSignal'>, commandSignal?: AbortSignal): CallScope {
  const controller = new AbortController();
  const pending = new Set<Promise<unknown>>();
  const signal = commandSignal ? AbortSignal.any([controller.signal, commandSignal]) : controller.signal;
  return {
    signal,
    run<T>(fn: () => Promise<T>): Promise<T> {
      if (signal.aborted) return Promise.reject(new WaitAborted());
      // each call gets a signal of its own, linked to the scope's while it is pending: the client
      // adds an abort listener per call to the signal it is given and never removes it, so on the
      // scope's one signal a sweep's progress polls (every 2 s, for hours) would pile up listeners
      // and the calls they hold
      const own = new AbortController();
      const link = () => own.abort();
      signal.addEventListener('abort', link, { once: true });
      const call = connection.withAbortSignal(own.signal, fn);
      pending.add(call);
      const forget = () => {
        pending.delete(call);
        signal.removeEventListener('abort', link);
      };
      call.then(forget, forget);
      return call;
    },
    async cancel(settleMs: number): Promise<boolean> {
      controller.abort();
      if (pending.size === 0) return true;
      let timer: NodeJS.Timeout | undefined;
      const settled = await Promise.race([
        Promise.allSettled([...pending]).then(() => true),
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), settleMs))),
      ]);
      clearTimeout(timer);
      return settled;
    },
  };
}

/** What scopedResult needs of a Temporal client (a structural subset of Client). */
export interface HistoryClient {
  options: { namespace: string };
  workflowService: {
    getWorkflowExecutionHistory(req: {
      namespace: string;
      execution: { workflowId: string };
      skipArchival: boolean;
      waitNewEvent: boolean;
      historyEventFilterType: number;
      nextPageToken?: Uint8Array | null;
    }): Promise<{ history?: { events?: Array<{ workflowExecutionContinuedAsNewEventAttributes?: unknown | null }> | null } | null; nextPageToken?: Uint8Array | null }>;
  };
}

/** HISTORY_EVENT_FILTER_TYPE_CLOSE_EVENT (temporal.api.enums.v1.HistoryEventFilterType) */
const CLOSE_EVENT_FILTER = 2;

/**
 * A workflow's result, waited for under the scope one long poll at a time.
 *
 * Why not `scope.run(() => handle.result())`: result() is a loop of long polls (each returns after
 * ~20 s without news), all made under the one signal the run gives it, and the client adds an abort
 * listener per call that it never removes, so waiting hours for a sweep piled up listeners on that
 * signal (MaxListenersExceededWarning after ~4 minutes of a bench sitting, then a slow leak). Here each long poll is a run of
 * its own, with a fresh signal; once the close event is there (of the latest run: a continue-as-new
 * moves on to the next run), result() reads it at once.
 */
export async function scopedResult<T>(scope: CallScope, client: HistoryClient, handle: { workflowId: string; result(): Promise<unknown> }): Promise<T> {
  const req = {
    namespace: client.options.namespace,
    execution: { workflowId: handle.workflowId },
    skipArchival: true,
    waitNewEvent: true,
    historyEventFilterType: CLOSE_EVENT_FILTER,
    nextPageToken: undefined as Uint8Array | null | undefined,
  };
  for (;;) {
    const res = await scope.run(() => client.workflowService.getWorkflowExecutionHistory(req));
    const events = res.history?.events ?? [];
    if (events.length === 0) {
      req.nextPageToken = res.nextPageToken;
      continue;
    }
    // closed; a continue-as-new closes one run and starts the next: wait for that one (no runId: the current run)
    if (events[0].workflowExecutionContinuedAsNewEventAttributes) {
      req.nextPageToken = undefined;
      continue;
    }
    return (await scope.run(() => handle.result())) as T;
  }
}

/**
 * cli/callScope: a scope cancels its pending calls, and a long run of calls leaves no abort
 * listener behind on the scope's signal (a sweep polls progress every 2 s for hours).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { callScope, scopedResult } from '../cli/callScope';

/** The part of a Temporal Connection the scope uses: runs fn with the signal, and notes that signal. */
function fakeConnection() {
  const signals: AbortSignal[] = [];
  return {
    signals,
    withAbortSignal<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
      signals.push(signal);
      // like the client: a listener per call on the signal it was given, never removed
      signal.addEventListener('abort', () => undefined);
      return fn();
    },
  };
}

test('callScope: 100 finished calls leave no listener on the scope signal; each call had a signal of its own', async () => {
  const conn = fakeConnection();
  const scope = callScope(conn);
  for (let i = 0; i < 100; i++) assert.equal(await scope.run(async () => i), i);
  assert.equal(getEventListeners(scope.signal, 'abort').length, 0, 'no abort listener left on the scope signal');
  assert.equal(new Set(conn.signals).size, 100);
  assert.ok(!conn.signals.includes(scope.signal));
});

test('callScope: cancel() aborts a pending call through its own signal and reports it settled; later runs are refused', async () => {
  const conn = fakeConnection();
  const scope = callScope(conn);
  const pending = scope.run(
    () =>
      new Promise<string>((_resolve, reject) => {
        conn.signals[conn.signals.length - 1].addEventListener('abort', () => reject(new Error('cancelled')));
      }),
  );
  pending.catch(() => undefined);
  assert.equal(getEventListeners(scope.signal, 'abort').length, 1, 'one link while the call is pending');
  assert.equal(await scope.cancel(1000), true);
  await assert.rejects(pending, /cancelled/);
  await assert.rejects(scope.run(async () => 1), (e: Error) => e.name === 'WaitAborted');
});

test('callScope: the command signal (first Ctrl-C) aborts pending calls too', async () => {
  const conn = fakeConnection();
  const command = new AbortController();
  const scope = callScope(conn, command.signal);
  const pending = scope.run(
    () =>
      new Promise<string>((_resolve, reject) => {
        conn.signals[0].addEventListener('abort', () => reject(new Error('cancelled by Ctrl-C')));
      }),
  );
  command.abort();
  await assert.rejects(pending, /cancelled by Ctrl-C/);
  assert.equal(scope.signal.aborted, true);
});

/**
 * A client whose calls, like the real one's, add a listener to the signal of the run they are made
 * under (the connection's async context) and never remove it; its history long poll returns empty
 * `emptyPolls` times, then `closeEvents` one after another (a continue-as-new, then the close).
 */
function fakeHistoryClient(emptyPolls: number, closeEvents: Array<{ workflowExecutionContinuedAsNewEventAttributes?: object }>) {
  let current: AbortSignal | undefined;
  const tokens: Array<Uint8Array | null | undefined> = [];
  const signalsSeen: AbortSignal[] = [];
  let polls = 0;
  const call = <T>(value: T): Promise<T> => {
    current!.addEventListener('abort', () => undefined);
    signalsSeen.push(current!);
    return Promise.resolve(value);
  };
  const connection = {
    withAbortSignal<T>(signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
      current = signal;
      return fn();
    },
  };
  const client = {
    options: { namespace: 'default' },
    workflowService: {
      getWorkflowExecutionHistory(req: { nextPageToken?: Uint8Array | null }) {
        tokens.push(req.nextPageToken);
        polls++;
        if (polls <= emptyPolls) return call({ history: { events: [] }, nextPageToken: new Uint8Array([polls]) });
        const ev = closeEvents.shift();
        return call({ history: { events: ev ? [ev] : [] }, nextPageToken: null });
      },
    },
  };
  const handle = { workflowId: 'sweep-x', result: () => call('the outcome') };
  return { connection, client, handle, tokens, signalsSeen, polls: () => polls };
}

test('scopedResult: hours of long polls leave at most one listener per signal, pass each page token on, and follow a continue-as-new', async () => {
  const f = fakeHistoryClient(60, [{ workflowExecutionContinuedAsNewEventAttributes: {} }, {}]);
  const scope = callScope(f.connection);
  assert.equal(await scopedResult<string>(scope, f.client, f.handle), 'the outcome');
  assert.equal(f.polls(), 62, '60 empty polls, the continue-as-new, the close');
  // each poll (and the result read) under a signal of its own: no signal collects listeners
  for (const s of new Set(f.signalsSeen)) assert.ok(getEventListeners(s, 'abort').length <= 1);
  assert.equal(new Set(f.signalsSeen).size, 63);
  assert.equal(getEventListeners(scope.signal, 'abort').length, 0);
  // the page token of each empty poll is sent with the next; the next run starts without one
  assert.deepEqual([...(f.tokens[1] ?? [])], [1]);
  assert.deepEqual([...(f.tokens[60] ?? [])], [60]);
  assert.equal(f.tokens[61], undefined);
});

test('scopedResult: cancel() ends the wait', async () => {
  const scope = callScope({ withAbortSignal: <T>(_s: AbortSignal, fn: () => Promise<T>) => fn() });
  let polls = 0;
  const client = {
    options: { namespace: 'default' },
    workflowService: {
      getWorkflowExecutionHistory: async () => {
        polls++;
        await new Promise((r) => setTimeout(r, 1)); // a long poll takes time
        return { history: { events: [] }, nextPageToken: null };
      },
    },
  };
  const waiting = scopedResult(scope, client, { workflowId: 'w', result: async () => 'never' });
  waiting.catch(() => undefined);
  await new Promise((r) => setTimeout(r, 20));
  await scope.cancel(1000);
  await assert.rejects(waiting, (e: Error) => e.name === 'WaitAborted');
  assert.ok(polls > 0);
});

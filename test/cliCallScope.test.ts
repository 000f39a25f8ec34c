/**
 * cli/callScope: a scope cancels its pending calls, and a long run of calls leaves no abort
 * listener behind on the scope's signal (a sweep polls progress every 2 s for hours).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { callScope } from '../cli/callScope';

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

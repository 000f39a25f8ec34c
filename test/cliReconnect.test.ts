/**
 * The CLI waits out a Temporal restart: while it waits for a run's result, gRPC UNAVAILABLE (14)
 * or a refused connection is retried with backoff up to the outage budget, with one line when
 * the outage begins and one when it ends; a run's own failure and other errors end the wait at
 * once; the budget spent gives the error in words; Ctrl-C stops the wait. (A fake result call
 * stands in for the server here; test/faults.temporal.test.ts restarts a real one.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isTemporalUnreachable, retryWhileUnreachable, WaitAborted } from '../cli/connection';
import { UserError } from '../cli/errors';

/** The shape @temporalio/client gives a failed call: a ServiceError whose cause is the gRPC error. */
function unavailable(): Error {
  const grpc = Object.assign(new Error('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 127.0.0.1:7233'), { code: 14 });
  return Object.assign(new Error('Failed to query workflow'), { name: 'ServiceError', cause: grpc });
}

/** Fails with `errors` in turn, then answers `value`. */
function flaky<T>(errors: Error[], value: T): { call: () => Promise<T>; calls: () => number } {
  let n = 0;
  return {
    call: async () => {
      const err = errors[n++];
      if (err) throw err;
      return value;
    },
    calls: () => n,
  };
}

test('isTemporalUnreachable: gRPC 14 and connection errors anywhere in the cause chain; not a run failure or another gRPC status', () => {
  assert.equal(isTemporalUnreachable(unavailable()), true);
  assert.equal(isTemporalUnreachable(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:7233'), { code: 'ECONNREFUSED' })), true);
  assert.equal(isTemporalUnreachable(Object.assign(new Error('5 NOT_FOUND: workflow not found'), { code: 5 })), false);
  const failed = Object.assign(new Error('Workflow execution failed'), { name: 'WorkflowFailedError', cause: new Error('activity failed: connect ECONNREFUSED') });
  assert.equal(isTemporalUnreachable(failed), false);
  assert.equal(isTemporalUnreachable(undefined), false);
});

test('a wait that fails with UNAVAILABLE twice then answers returns the answer, saying the outage began and ended once each', async () => {
  const lines: string[] = [];
  const f = flaky([unavailable(), unavailable()], { summary: 'done' });
  const value = await retryWhileUnreachable(f.call, { budgetMs: 10_000, initialDelayMs: 5, maxDelayMs: 10, say: (l) => lines.push(l), address: '127.0.0.1:7233' });
  assert.deepEqual(value, { summary: 'done' });
  assert.equal(f.calls(), 3);
  assert.equal(lines.length, 2, lines.join('\n'));
  assert.match(lines[0], /^Temporal at 127\.0\.0\.1:7233 unreachable since \d\d:\d\d:\d\dZ, retrying for up to 10 s/);
  assert.match(lines[1], /^Temporal at 127\.0\.0\.1:7233 reachable again after \d+ s$/);
});

test('other errors end the wait at once, untouched', async () => {
  const notFound = Object.assign(new Error('5 NOT_FOUND'), { code: 5 });
  const f = flaky([notFound], 'never');
  await assert.rejects(
    retryWhileUnreachable(f.call, { budgetMs: 10_000, initialDelayMs: 5, say: () => undefined }),
    (err) => err === notFound,
  );
  assert.equal(f.calls(), 1);
});

test('an outage longer than the budget ends with the error in words, naming the budget', async () => {
  const f = flaky(Array.from({ length: 1000 }, unavailable), 'never');
  const t0 = Date.now();
  await assert.rejects(retryWhileUnreachable(f.call, { budgetMs: 200, initialDelayMs: 10, maxDelayMs: 20, say: () => undefined }), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /unreachable since .*longer than the outage budget of 0 s: .*UNAVAILABLE/);
    return true;
  });
  assert.ok(f.calls() >= 3, `retried (${f.calls()} calls)`);
  assert.ok(Date.now() - t0 < 5_000);
});

test('NTML_OUTAGE_BUDGET_SECONDS=0 gives up at the first UNAVAILABLE; Ctrl-C stops a wait in progress', async () => {
  const before = process.env.NTML_OUTAGE_BUDGET_SECONDS;
  process.env.NTML_OUTAGE_BUDGET_SECONDS = '0';
  try {
    const f = flaky([unavailable()], 'never');
    await assert.rejects(retryWhileUnreachable(f.call, { say: () => undefined }), UserError);
    assert.equal(f.calls(), 1);
  } finally {
    if (before === undefined) delete process.env.NTML_OUTAGE_BUDGET_SECONDS;
    else process.env.NTML_OUTAGE_BUDGET_SECONDS = before;
  }
  const ac = new AbortController();
  const f = flaky(Array.from({ length: 1000 }, unavailable), 'never');
  setTimeout(() => ac.abort(), 100);
  await assert.rejects(retryWhileUnreachable(f.call, { budgetMs: 60_000, initialDelayMs: 10_000, signal: ac.signal, say: () => undefined }), WaitAborted);
  assert.equal(f.calls(), 1);
});

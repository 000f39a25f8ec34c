/**
 * The progress texts `ntml purify` and `ntml sweep` print: epochs of training stages, rounds of
 * a learned trigger's optimisation, a store outage from the heartbeat, the sweep's cell labels and
 * ETA; and the one-at-a-time progress poll of `sweep start` and `audit run`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { epochText, outageText, pollInTurn } from '../cli/progress';
import { cellLabel } from '../schemas/sweep';
import { etaText, sweepEta } from '../cli/sweepEta';
import type { SweepProgress } from '../workflows/contract';

test('epochText: finished epochs, the batch under way when live, and trigger rounds', () => {
  assert.equal(epochText(undefined, true), '');
  assert.equal(epochText({ stage: 'standard', epoch: 0, epochs: 8 }, false), '8 epochs');
  assert.equal(epochText({ stage: 'standard', epoch: 3, epochs: 8, loss: 1.23456 }, false), 'epoch 3/8  loss 1.2346');
  assert.equal(
    epochText({ stage: 'inputaware', epoch: 9, epochs: 33, loss: 8.7, diagnostics: { meanMask: 0.03951, emptyMasks: 0 } }, false),
    'epoch 9/33  loss 8.7000  meanMask 0.0395  emptyMasks 0',
  );
  assert.equal(epochText({ stage: 'mutualLearning', epoch: 2, epochs: 60, diagnostics: { acc: 97.26, asr: 0.4 } }, false), 'epoch 2/60  acc 97.3  asr 0.4');
  assert.equal(epochText({ stage: 'standard', epoch: 3, epochs: 8, batch: 12, batches: 149 }, true), 'epoch 4/8  batch 12/149');
  // a Narcissus trigger: epoch is the last checkpointed round, round the one under way
  assert.equal(epochText({ stage: 'poisonTrigger', epoch: 25, epochs: 1000, round: 31 }, true), 'trigger round 31/1000');
  assert.equal(epochText({ stage: 'poisonTrigger', epoch: 25, epochs: 1000, round: 31 }, false), 'trigger rounds 25/1000 checkpointed');
});

test('cellLabel: attack, defense, budget and seed; the model only when it is not the tier default', () => {
  assert.equal(cellLabel({ attack: 'wanet', defense: 'none', cleanBudget: '100', seed: 2, model: 'tier default' }), 'wanet · none · D_c 100 · seed 2');
  assert.equal(cellLabel({ attack: 'badnets', defense: 'ntml', cleanBudget: '5%', seed: 1, model: 'resnet20' }), 'badnets · ntml · D_c 5% · resnet20 · seed 1');
});

test('sweepEta: finished cells\' mean for cells not started, less what running cells have spent (never below zero)', () => {
  const now = Date.parse('2026-03-01T12:00:00Z');
  const running = (...elapsedS: number[]) => elapsedS.map((s, i) => ({ id: `c${i}`, label: `cell ${i}`, workflowId: `w${i}`, startedAt: now - s * 1000 }));
  const base = { sweep: 's', total: 10, done: 6, failed: 0, reused: 0, continuedAsNew: 0, concurrency: 2, finishedCells: { count: 6, meanMs: 100_000 } };
  const progress = (p: Partial<SweepProgress>): SweepProgress => ({ ...base, running: (p.runningCells ?? []).map((c) => c.id), ...p });
  // 2 not started (200 s) + a cell 30 s in (70 s) + one past the mean (0 s, not -50 s): 270 s of work on 2 slots
  assert.deepEqual(sweepEta(progress({ runningCells: running(30, 150) }), now), { kind: 'seconds', seconds: 135 });
  assert.equal(etaText(sweepEta(progress({ runningCells: running(30, 150) }), now)), ', ETA 2m 15s');
  // nothing run yet of the running cells: each costs the whole mean
  assert.deepEqual(sweepEta(progress({ runningCells: running(0, 0) }), now), { kind: 'seconds', seconds: 200 });
  // the last cell, running alone, takes its own remainder: not a share of the window
  assert.deepEqual(sweepEta(progress({ done: 9, runningCells: running(40) }), now), { kind: 'seconds', seconds: 60 });
  // failed cells are settled too
  assert.deepEqual(sweepEta(progress({ done: 8, failed: 2, runningCells: [] }), now), { kind: 'none' });
  assert.equal(etaText({ kind: 'none' }), '');
});

test('sweepEta: says there is no estimate until a cell of this run has finished', () => {
  const now = Date.now();
  const p: SweepProgress = {
    sweep: 's', total: 4, done: 2, reused: 2, failed: 0, continuedAsNew: 0, concurrency: 2,
    running: ['c'], runningCells: [{ id: 'c', label: 'c', workflowId: 'w', startedAt: now - 60_000 }],
    // the two done cells were found in the store: they cost this run nothing, so they give no mean
    finishedCells: { count: 0, meanMs: 0 },
  };
  assert.deepEqual(sweepEta(p, now), { kind: 'tooFewFinished', finished: 0 });
  assert.equal(etaText(sweepEta(p, now)), ', ETA after the first cell finishes');
  // a worker of an earlier version sends its own estimate only
  assert.deepEqual(sweepEta({ ...p, finishedCells: undefined, etaSeconds: 90 }, now), { kind: 'seconds', seconds: 90 });
});

test('outageText: an S3 outage from the heartbeat details, with the time, the failed attempts and the last error code', () => {
  const checkpoint = { uri: 's3://ntml/cas/ab', sha256: 'ab', bytes: 1 };
  assert.equal(outageText(undefined), '');
  assert.equal(outageText({ stage: 'teacher', epoch: 3, epochs: 8, checkpoint } as never), '');
  const storeOutage = {
    since: '2026-03-01T12:03:07.412Z',
    attempts: 7,
    lastError: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9000',
    summary: 'S3 unreachable since 12:03:07Z, retrying (7 attempts failed; last: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9000)',
  };
  assert.equal(outageText({ stage: 'teacher', epoch: 3, epochs: 8, storeOutage }), 'S3 unreachable since 12:03:07Z, retrying (7 attempts failed; last: ECONNREFUSED)');
  assert.equal(outageText({ storeOutage: { ...storeOutage, attempts: 1, lastError: 'ServiceUnavailable: Please reduce your request rate.' } }), 'S3 unreachable since 12:03:07Z, retrying (1 attempt failed; last: ServiceUnavailable: Please reduce your request rate.)');
  // details written by another version (no since/attempts): its own summary line
  assert.equal(outageText({ storeOutage: { summary: 'S3 unreachable, retrying\nmore' } }), 'S3 unreachable, retrying');
});

test('pollInTurn: a poll slower than the interval is never overlapped by the next, and stop ends the polling', async () => {
  let running = 0;
  let most = 0;
  let calls = 0;
  const slowQuery = async () => {
    calls++;
    most = Math.max(most, ++running);
    await new Promise((r) => setTimeout(r, 60));
    running--;
    if (calls === 2) throw new Error('a failed query: the next poll still comes');
  };
  const poll = pollInTurn(slowQuery, 10);
  await new Promise((r) => setTimeout(r, 400));
  poll.stop();
  const atStop = calls;
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(most, 1, 'two progress queries were in flight at once');
  assert.ok(atStop >= 3, `only ${atStop} polls in 400 ms`);
  assert.ok(calls <= atStop + 1, 'polls went on after stop');
});

/**
 * Sweeps on the real Temporal server and S3 store: a 2 attacks x 2 defenses x 2 seeds grid
 * at a reduced ci budget, shared stages computed once, the concurrency cap held, a killed
 * worker survived, a re-run that trains nothing, malformed specs rejected up front, and the
 * progress query carrying what the ETA needs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, spawnTrainingWorker, taskQueues, testClient, waitForExit } from './support/temporal';
import { tinySweep } from './support/tinySweep';
import { storeFromEnv } from '../store';
import { expandSweep, parseSweepSpec, type SweepSpecInput } from '../schemas/sweep';
import type { SweepCellRecord, SweepOutcome, SweepProgress } from '../workflows/contract';
import { sweepEta } from '../cli/sweepEta';
import { assertFinishedNotRedone, cellRecords, midSweep } from './support/sweepFaults';

quietRuntime();

/** A ci-tier base with a reduced budget: the sweep mechanics, not the defense, are under test. */
function spec(name: string, overrides: Partial<SweepSpecInput> = {}): SweepSpecInput {
  const grid: SweepSpecInput['grid'] = {
    attack: [{ name: 'badnets', target: 0 }, { name: 'badnets', target: 3 }],
    defense: [{ name: 'ntml' }, { name: 'ft', steps: 20, rounds: 2 }],
    seed: [1, 2],
  };
  return { ...tinySweep(name, grid), ...overrides };
}

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

function maxOverlap(records: SweepCellRecord[]): number {
  const events = records.flatMap((r) => [
    { t: r.startedAt, d: 1 },
    { t: r.endedAt, d: -1 },
  ]);
  events.sort((a, b) => a.t - b.t || a.d - b.d);
  let now = 0;
  let max = 0;
  for (const e of events) max = Math.max(max, (now += e.d));
  return max;
}

test('a 2x2x2 grid completes, shares standard training, holds the cap, and a re-run trains nothing', { timeout: 900_000 }, async () => {
  const name = `grid-${Date.now().toString(36)}`;
  const queues = taskQueues('sweep');
  const workers = await inProcessWorkers(queues);
  const options = { trainingTaskQueue: queues.training };
  const run = () =>
    client.workflow.execute('sweep', { taskQueue: queues.orchestration, workflowId: `sweep-${name}`, args: [{ spec: spec(name), options }] }) as Promise<SweepOutcome>;
  const [first, second] = await workers.run(async () => [await run(), await run()]);

  assert.equal(first.total, 8);
  assert.equal(first.completed, 8, JSON.stringify(first.failed));
  assert.deepEqual(first.failed, []);
  const records = await cellRecords(name);
  assert.equal(records.length, 8);
  assert.ok(records.every((r) => r.status === 'completed' && r.metrics && r.purifiedModel));

  // standard training ran once per (attack, seed), not once per defense
  const groups = new Map<string, SweepCellRecord[]>();
  for (const r of records) {
    const key = `${JSON.stringify(r.config.attack)}|${r.axes.seed}`;
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  assert.equal(groups.size, 4);
  for (const [key, group] of groups) {
    const trained = group.filter((r) => r.stages!.find((s) => s.stage === 'standardTraining')!.cached !== true);
    assert.equal(trained.length, 1, `standard training of ${key} ran ${trained.length} times`);
  }
  // baseline cells ran the defense stage on the shared backdoored model
  const ftCells = records.filter((r) => r.axes.defense.startsWith('ft'));
  assert.equal(ftCells.length, 4);
  assert.ok(ftCells.every((r) => r.stages!.some((s) => s.stage === 'defense (FT)')));
  // the cap held at all times
  const overlap = maxOverlap(records);
  console.log(`max concurrent cells: ${overlap} (cap 2)`);
  assert.ok(overlap <= 2, `at most 2 cells at once, saw ${overlap}`);

  // the same spec again: every cell is found finished, nothing is trained
  assert.equal(second.completed, 8);
  assert.equal(second.reused, 8);
  const after = await cellRecords(name);
  assert.deepEqual(
    after.map((r) => r.startedAt).sort(),
    records.map((r) => r.startedAt).sort(),
    'no cell ran again',
  );
});

test('a single shared-stage group: the rest of the group starts once the first cell has stored standard training, not when it ends', { timeout: 900_000 }, async () => {
  const name = `group-${Date.now().toString(36)}`;
  const queues = taskQueues('sweep-group');
  const workers = await inProcessWorkers(queues);
  // target 7: a backdoored model no other test of this run trains, so the leader computes it;
  // more epochs after standard training keep the leader running well after the follower starts
  const grid: SweepSpecInput['grid'] = { attack: [{ name: 'badnets', target: 7 }], defense: [{ name: 'ntml', ntml: { ntEpochs: 6, mlEpochs: 8, splitEpochs: 2 } }, { name: 'ft', steps: 20, rounds: 2 }], seed: [1] };
  const outcome = await workers.run(
    () =>
      client.workflow.execute('sweep', {
        taskQueue: queues.orchestration,
        workflowId: `sweep-${name}`,
        args: [{ spec: spec(name, { grid }), options: { trainingTaskQueue: queues.training } }],
      }) as Promise<SweepOutcome>,
  );
  assert.equal(outcome.completed, 2, JSON.stringify(outcome.failed));
  const records = await cellRecords(name);
  const trained = (r: SweepCellRecord) => r.stages!.find((s) => s.stage === 'standardTraining')!.cached !== true;
  const leader = records.find(trained)!;
  const follower = records.find((r) => !trained(r))!;
  assert.ok(leader && follower, 'standard training ran once and the other cell reused it');
  const sharedSeconds = leader.stages!.filter((s) => s.stage === 'prepareData' || s.stage === 'standardTraining').reduce((a, s) => a + s.seconds, 0);
  const waited = (follower.startedAt - leader.startedAt) / 1000;
  const overlap = (leader.endedAt - follower.startedAt) / 1000;
  console.log(`leader's shared stages ${sharedSeconds.toFixed(1)} s; the follower started ${waited.toFixed(1)} s after it, ${overlap.toFixed(1)} s before it ended`);
  assert.ok(waited >= sharedSeconds, 'the follower waited for the shared stages');
  assert.ok(follower.startedAt < leader.endedAt, 'the follower started while the first cell was still running');
});

/** The progress query carries what the ETA needs: each running cell's launch time, the finished cells' mean, the concurrency. */
function assertEtaInputs(p: SweepProgress, launched: number): void {
  const now = Date.now();
  assert.equal(p.concurrency, 2);
  assert.equal(p.finishedCells?.count, p.done, 'every done cell ran in this sweep');
  assert.ok(p.finishedCells!.meanMs > 0);
  assert.equal(p.runningCells?.length, p.running.length);
  for (const c of p.runningCells!) assert.ok(c.startedAt! >= launched - 1000 && c.startedAt! <= now, `cell ${c.id} launched at ${c.startedAt}, the sweep at ${launched}`);
  const eta = sweepEta(p, now);
  assert.equal(eta.kind, 'seconds');
  // the same moment as if the running cells had only just started: their elapsed time is taken off
  const asIfJustStarted = sweepEta({ ...p, runningCells: p.runningCells!.map((c) => ({ ...c, startedAt: now })) }, now);
  assert.ok(eta.kind === 'seconds' && asIfJustStarted.kind === 'seconds' && eta.seconds <= asIfJustStarted.seconds, `${JSON.stringify(eta)} vs ${JSON.stringify(asIfJustStarted)}`);
}

test('killing the training worker mid-sweep: a new worker finishes it without redoing finished cells', { timeout: 900_000 }, async () => {
  const name = `kill-${Date.now().toString(36)}`;
  const queues = taskQueues('sweep-kill');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  let worker = spawnTrainingWorker(queues.training);
  try {
    const launched = Date.now();
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('sweep', {
        taskQueue: queues.orchestration,
        workflowId: `sweep-${name}`,
        args: [
          {
            spec: spec(name, { grid: { attack: [{ name: 'badnets' }], defense: [{ name: 'ntml' }, { name: 'ntml', ntml: { ntLabel: 'hard' } }], seed: [1, 2] } }),
            options: { trainingTaskQueue: queues.training, heartbeatTimeoutSeconds: 4 },
          },
        ],
      });
      assertEtaInputs(await midSweep(handle), launched);
      const finishedBefore = await cellRecords(name);
      worker.kill('SIGKILL');
      await waitForExit(worker);
      worker = spawnTrainingWorker(queues.training);
      const result = (await handle.result()) as SweepOutcome;
      return { result, finishedBefore };
    });
    assert.equal(outcome.result.completed, 4, JSON.stringify(outcome.result.failed));
    await assertFinishedNotRedone(name, outcome.finishedBefore);
  } finally {
    worker.kill('SIGKILL');
  }
});

test('malformed sweep specs are rejected before anything starts', async () => {
  assert.throws(() => parseSweepSpec({ ...spec('x'), colour: 'red' }), /colour|Unrecognized key/);
  assert.throws(() => parseSweepSpec(spec('x', { grid: { seed: [] } })), /grid\.seed/);
  assert.throws(
    () =>
      expandSweep(
        parseSweepSpec(spec('x', { grid: { attack: [{ name: 'badnets' }], defense: [{ name: 'ntml' }, { name: 'ntml', ntml: { ntLabel: 'soft' } }] } })),
      ),
    /duplicates cell/,
  );
  assert.throws(() => expandSweep(parseSweepSpec(spec('x', { grid: { attack: [{ name: 'badnets', rate: 3 }] } }))), /attack\.rate/);
  // and through the workflow: a non-retryable failure, no cell started
  const queues = taskQueues('sweep-bad');
  const workers = await inProcessWorkers(queues);
  const name = `bad-${Date.now().toString(36)}`;
  const err = await workers.run(() =>
    client.workflow
      .execute('sweep', { taskQueue: queues.orchestration, workflowId: `sweep-${name}`, args: [{ spec: spec(name, { grid: { seed: [] } }) }] })
      .then(
        () => assert.fail('should fail'),
        (e: unknown) => e,
      ),
  );
  assert.ok(err instanceof WorkflowFailedError);
  assert.match(String((err.cause as Error).message), /grid\.seed/);
  assert.deepEqual(await cellRecords(name), []);
});

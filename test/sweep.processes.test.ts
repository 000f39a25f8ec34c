/**
 * The embedded stack's training worker processes (cli/trainingProcesses.ts), as `ntml sweep`
 * starts them: two single-slot child processes with a share of the cores each run two cells'
 * training at the same time (asserted from the worker identities and times in the cells'
 * Temporal histories), a process that dies is reported, and stopping leaves no process behind.
 * Its own embedded stack in a temporary folder, as the CLI would start it there.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { startEmbedded, type Embedded } from '../cli/embedded';
import { defaultTrainingProcesses, threadsPerProcess } from '../cli/trainingProcesses';
import { ORCHESTRATION_TASK_QUEUE } from '../workers/createWorkers';
import { expandSweep, parseSweepSpec, type SweepSpecInput } from '../schemas/sweep';
import type { SweepOutcome, SweepProgress } from '../workflows/contract';
import { runningCellLines } from '../cli/sweep';

const repoCwd = process.cwd();
const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-processes-'));
let embedded: Embedded;
let connection: Connection;
let client: Client;
const lines: string[] = [];

before(async () => {
  // the embedded stack lives in ./.ntml/stack of the command's folder
  process.chdir(dir);
  embedded = await startEmbedded({ namespace: 'default', log: (l) => lines.push(l), trainingProcesses: 2 });
  connection = await Connection.connect({ address: embedded.address });
  client = new Client({ connection });
});

after(async () => {
  await connection?.close();
  await embedded?.stop();
  process.chdir(repoCwd);
  rmSync(dir, { recursive: true, force: true });
});

function childPids(): number[] {
  const line = lines.find((l) => l.includes('training worker processes'));
  assert.ok(line, `no start line among:\n${lines.join('\n')}`);
  return line.match(/pids ([\d, ]+);/)![1].split(', ').map(Number);
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

interface ActivityRun {
  type: string;
  identity: string;
  started: number;
  ended: number;
}

/** Every activity of a workflow: its type, the worker identity that ran it, start and end. */
async function activityRuns(workflowId: string): Promise<ActivityRun[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const ms = (t: unknown) => {
    const ts = t as { seconds?: { toNumber(): number } | number; nanos?: number };
    const s = typeof ts.seconds === 'number' ? ts.seconds : (ts.seconds?.toNumber() ?? 0);
    return s * 1000 + (ts.nanos ?? 0) / 1e6;
  };
  const scheduled = new Map<number, string>();
  const started = new Map<number, { scheduledId: number; identity: string; t: number }>();
  const runs: ActivityRun[] = [];
  for (const e of history.events ?? []) {
    const id = Number(e.eventId);
    if (e.activityTaskScheduledEventAttributes) scheduled.set(id, e.activityTaskScheduledEventAttributes.activityType!.name!);
    if (e.activityTaskStartedEventAttributes) {
      const a = e.activityTaskStartedEventAttributes;
      started.set(id, { scheduledId: Number(a.scheduledEventId), identity: a.identity!, t: ms(e.eventTime) });
    }
    if (e.activityTaskCompletedEventAttributes) {
      const s = started.get(Number(e.activityTaskCompletedEventAttributes.startedEventId))!;
      runs.push({ type: scheduled.get(s.scheduledId)!, identity: s.identity, started: s.t, ended: ms(e.eventTime) });
    }
  }
  return runs;
}

test('the default: one training process per cell that may run at once, at most one per core, none on GPU workers', () => {
  assert.equal(defaultTrainingProcesses(1, {}, 2), 1);
  assert.equal(defaultTrainingProcesses(2, {}, 2), 2);
  assert.equal(defaultTrainingProcesses(8, {}, 2), 2);
  assert.equal(defaultTrainingProcesses(8, {}, 16), 8);
  assert.equal(defaultTrainingProcesses(4, { NTML_BACKEND: 'gpu' }, 16), 1);
  assert.equal(threadsPerProcess(2, {}, 2), 1);
  assert.equal(threadsPerProcess(3, {}, 16), 5);
  assert.equal(threadsPerProcess(2, { TF_NUM_INTRAOP_THREADS: '4' }, 2), 4, 'an explicit thread count wins');
});

test('two training processes run two cells at the same time, and this process runs none of their activities', { timeout: 600_000 }, async () => {
  const pids = childPids();
  assert.equal(pids.length, 2);
  assert.ok(pids.every(alive) && !pids.includes(process.pid));
  const name = `processes-${Date.now().toString(36)}`;
  const input: SweepSpecInput = {
    name,
    concurrency: 2,
    base: {
      mode: 'evaluation',
      tier: 'ci',
      data: { format: 'synthetic', trainSize: 1000, testSize: 200 },
      cleanBudget: 50,
      defense: { name: 'none' },
    },
    // different attacks: no shared stage, so both cells start at once
    grid: { attack: [{ name: 'badnets' }, { name: 'blended' }], seed: [1] },
  };
  const handle = await client.workflow.start('sweep', {
    taskQueue: ORCHESTRATION_TASK_QUEUE,
    workflowId: `sweep-${name}`,
    args: [{ spec: input }],
  });
  // the live display: one line per running cell with its stage and epoch, as `ntml sweep` prints it
  const seen = new Set<string>();
  const result = handle.result() as Promise<SweepOutcome>;
  let ended = false;
  void result.finally(() => (ended = true)).catch(() => undefined);
  while (!ended) {
    try {
      for (const l of await runningCellLines(client, await handle.query<SweepProgress>('progress'), true)) seen.add(l);
    } catch {
      // between workflow tasks: the next poll answers
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  const outcome = await result;
  assert.equal(outcome.completed, 2, JSON.stringify(outcome.failed));
  const training = [...seen].filter((l) => /standardTraining {2}epoch \d+\/\d+ {2}batch \d+\/\d+/.test(l));
  for (const attack of ['badnets', 'blended']) {
    assert.ok(
      training.some((l) => l.startsWith(`  ${attack} · none · D_c 50 · seed 1: standardTraining`)),
      `a live line for the ${attack} cell in standard training among:\n${[...seen].join('\n')}`,
    );
  }

  const identities = new Set(pids.map((p) => `${p}@${os.hostname()}`));
  const cells = expandSweep(parseSweepSpec(input));
  const standardRuns: ActivityRun[] = [];
  for (const cell of cells) {
    const runs = await activityRuns(`sweep-${name}--${cell.id}`);
    assert.ok(runs.length > 0, `cell ${cell.id} ran no activity`);
    for (const r of runs) assert.ok(identities.has(r.identity), `${r.type} ran on ${r.identity}, not on a training process (${[...identities].join(', ')})`);
    const t = runs.find((r) => r.type === 'trainStandardModel');
    assert.ok(t, `cell ${cell.id}: no trainStandardModel activity among ${runs.map((r) => r.type).join(', ')}`);
    standardRuns.push(t);
  }
  const [a, b] = standardRuns;
  console.log(
    `standard training: ${a.identity} ${((a.ended - a.started) / 1000).toFixed(1)} s, ${b.identity} ${((b.ended - b.started) / 1000).toFixed(1)} s, ` +
      `overlap ${((Math.min(a.ended, b.ended) - Math.max(a.started, b.started)) / 1000).toFixed(1)} s`,
  );
  assert.notEqual(a.identity, b.identity, 'the two cells trained in different processes');
  assert.ok(a.started < b.ended && b.started < a.ended, 'the two standard trainings overlapped in time');
});

test('a training process that dies is reported, and stopping leaves no process behind', { timeout: 120_000 }, async () => {
  const pids = childPids();
  process.kill(pids[0], 'SIGKILL');
  await assert.rejects(
    Promise.race([embedded.workersFailed, new Promise((_, reject) => setTimeout(() => reject(new Error('no failure reported within 30 s')), 30_000))]),
    /training process 1 of 2 \(pid \d+\) (killed by SIGKILL|exited with code 137)/,
  );
  await embedded.stop();
  for (const pid of pids) assert.ok(!alive(pid), `training process ${pid} still running after stop()`);
});

/**
 * Test helpers for the real Temporal server and S3 store that the test runner started
 * (their addresses arrive in the environment): clients, in-process workers on private
 * task queues, training workers as child processes that a test can SIGKILL, and the
 * shared reference purification that several test files compare against.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { DefaultLogger, Runtime, type Worker } from '@temporalio/worker';
import { connectWorker, createOrchestrationWorker, createTrainingWorker } from '../../workers/createWorkers';
import type { PurifyInput } from '../../workflows/contract';
import type { PurifyOutcome, PurifyReport, SweepOutcome } from '../../workflows/contract';
import { storeFromEnv, type ArtifactStore } from '../../store';
import type { CheckpointEntry } from '../../activities/checkpointing';
import { useArtifactStore } from '../../activities/context';
import { toolPath } from '../../infra/stack';
import { repoRoot, sleep } from './processes';
import { fixturesDir } from './fixtures';

export { repoRoot };

let runtimeInstalled = false;
export function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // already installed by another helper in this process
  }
}

export function temporalAddress(): string {
  const address = process.env.NTML_TEMPORAL_ADDRESS;
  if (!address) {
    throw new Error('NTML_TEMPORAL_ADDRESS is not set: run the tests with `npm test` (it starts Temporal and S3)');
  }
  return address;
}

export async function testClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const connection = await Connection.connect({ address: temporalAddress() });
  return { client: new Client({ connection }), close: () => connection.close() };
}

/**
 * One purify workflow on fresh in-process workers; its stored report and Markdown read back.
 * `options` go to the workflow beside the training queue (e.g. `cache: false`, so that its
 * checkpoints are filed under this run's id rather than a stage key).
 */
export async function runPurifyWorkflow(
  tag: string,
  config: Record<string, unknown>,
  options: Omit<NonNullable<PurifyInput['options']>, 'trainingTaskQueue'> = {},
): Promise<{ workflowId: string; outcome: PurifyOutcome; report: PurifyReport; markdown: string; seconds: number }> {
  const queues = taskQueues(tag);
  const workers = await inProcessWorkers(queues);
  const { client, close } = await testClient();
  const workflowId = `${tag}-${Date.now()}`;
  const t0 = Date.now();
  const outcome = await workers
    .run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId,
        args: [{ config, options: { ...options, trainingTaskQueue: queues.training } }],
      });
      return (await handle.result()) as PurifyOutcome;
    })
    .finally(close);
  const seconds = (Date.now() - t0) / 1000;
  const store = storeFromEnv();
  const report = JSON.parse(Buffer.from(await store.get(outcome.report)).toString('utf8')) as PurifyReport;
  const markdown = Buffer.from(await store.get(outcome.markdown)).toString('utf8');
  return { workflowId, outcome, report, markdown, seconds };
}

/**
 * One sweep workflow run to its end on `store` (the activities' store from now on) by fresh
 * in-process workers on queues tagged `tag`: the bundle and bench-state tests run a spec against
 * one store, then against another.
 */
export async function runSweepOnStore(client: Client, store: ArtifactStore, spec: unknown, tag: string, workflowId: string): Promise<SweepOutcome> {
  useArtifactStore(store);
  const queues = taskQueues(tag);
  const workers = await inProcessWorkers(queues);
  return workers.run(
    () => client.workflow.execute('sweep', { taskQueue: queues.orchestration, workflowId, args: [{ spec, options: { trainingTaskQueue: queues.training } }] }) as Promise<SweepOutcome>,
  );
}

/** Unique task queues per test so that workers of other tests never take its tasks. */
export function taskQueues(tag: string) {
  const id = `${tag}-${process.pid}-${Date.now().toString(36)}`;
  return { orchestration: `orch-${id}`, training: `train-${id}` };
}

export interface InProcessWorkers {
  run<T>(f: () => Promise<T>): Promise<T>;
}

export async function inProcessWorkers(queues: { orchestration: string; training?: string }): Promise<InProcessWorkers> {
  quietRuntime();
  const connection = await connectWorker(temporalAddress());
  const workers: Worker[] = [await createOrchestrationWorker({ connection, taskQueue: queues.orchestration })];
  if (queues.training) workers.push(await createTrainingWorker({ connection, taskQueue: queues.training, shutdownGraceSeconds: 1 }));
  return {
    async run<T>(f: () => Promise<T>): Promise<T> {
      let p: Promise<T> = f();
      for (const w of workers) {
        const inner = p;
        p = w.runUntil(inner);
      }
      try {
        return await p;
      } finally {
        await connection.close();
      }
    },
  };
}

/** A training worker in its own process, as deployed (node dist/workers/training.js). */
export function spawnTrainingWorker(taskQueue: string, extraEnv: Record<string, string> = {}): ChildProcess & { output: () => string } {
  const child = spawn(process.execPath, [path.join(repoRoot, 'dist', 'workers', 'training.js')], {
    env: { ...process.env, NTML_TRAINING_TASK_QUEUE: taskQueue, NTML_SHUTDOWN_GRACE_SECONDS: '5', ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  return Object.assign(child, { output: () => output });
}

export async function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => child.once('exit', () => resolve()));
}

/**
 * The checkpoints a run's `phase` (e.g. "standard") has stored so far, oldest first: the one
 * record under `prefix` (checkpoints/<workflow id>/, or .../<run id>/) whose key ends in
 * -<phase>; none before its first epoch is checkpointed. What a fault test polls to strike
 * mid-stage: the store, not the server's throttled heartbeats, says how far training got.
 */
export async function storedCheckpoints(store: ArtifactStore, prefix: string, phase: string): Promise<CheckpointEntry[]> {
  const keys = (await store.listRecords(prefix)).filter((k) => k.endsWith(`-${phase}`));
  assert.ok(keys.length <= 1, `one ${phase} checkpoint record under ${prefix}: ${JSON.stringify(keys)}`);
  return keys[0] ? ((await store.getRecord<CheckpointEntry[]>(keys[0])) ?? []) : [];
}

/**
 * The standard-training epochs a purify run (workflow `handle`, run `runId`) has checkpointed, once
 * there is at least one: the fault tests kill a server only after that, so the kill falls mid-stage.
 * Polls every 50 ms for up to 5 min; `detail` is added to the failure (a worker's output).
 */
export async function firstStandardCheckpoints(store: ArtifactStore, handle: { workflowId: string }, runId: string, detail = () => ''): Promise<number[]> {
  const standardEpochs = async () => (await storedCheckpoints(store, `checkpoints/${handle.workflowId}/${runId}/`, 'standard')).map((e) => e.epoch);
  let epochs: number[] = [];
  for (let i = 0; i < 6000 && epochs.length < 1; i++) {
    await sleep(50);
    epochs = await standardEpochs();
  }
  assert.ok(epochs.length >= 1, `standard training stored no checkpoint${detail()}`);
  return epochs;
}

/** The ci-tier config every purify test shares (so the reference run is computed once). */
export function ciConfig(overrides: Record<string, unknown> = {}) {
  return {
    name: 'ci-badnets',
    mode: 'evaluation',
    tier: 'ci',
    seed: 1,
    data: { format: 'synthetic', trainSize: 2000, testSize: 1000 },
    attack: { name: 'badnets', target: 0, rate: 0.1 },
    cleanBudget: 100,
    ntml: { diagnosticSamples: 200 },
    ...overrides,
  };
}

export interface ReferenceRun {
  workflowId: string;
  outcome: PurifyOutcome;
  seconds: number;
}

/**
 * The uninterrupted ci-tier purification, run once per test run (by whichever test needs
 * it first) and shared through a fixture file; re-run if its artifacts are gone.
 */
export async function referenceRun(): Promise<ReferenceRun> {
  const file = path.join(fixturesDir(), 'reference-purify.json');
  try {
    const cached = JSON.parse(await fs.readFile(file, 'utf8')) as ReferenceRun & { store: string };
    const store = storeFromEnv();
    if (cached.store === store.location && (await store.verify(cached.outcome.purifiedModel))) return cached;
  } catch {
    // no fixture yet
  }
  const queues = taskQueues('reference');
  const workers = await inProcessWorkers(queues);
  const { client, close } = await testClient();
  const workflowId = `reference-${Date.now()}`;
  const t0 = Date.now();
  try {
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId,
        args: [{ config: ciConfig(), options: { trainingTaskQueue: queues.training } } satisfies PurifyInput],
      });
      const result = (await handle.result()) as PurifyOutcome;
      await saveHistory(handle, 'purify-evaluation');
      return result;
    });
    const run: ReferenceRun = { workflowId, outcome, seconds: (Date.now() - t0) / 1000 };
    await fs.mkdir(fixturesDir(), { recursive: true });
    await fs.writeFile(file, JSON.stringify({ ...run, store: storeFromEnv().location }));
    return run;
  } finally {
    await close();
  }
}

/**
 * Keeps a workflow's event history for replay tests (committed copies live in test/histories).
 * The Temporal CLI writes the standard JSON history format that `Worker.runReplayHistory` reads.
 */
export async function saveHistory(handle: WorkflowHandle, name: string): Promise<void> {
  const out = spawnSync(
    toolPath('temporal'),
    ['workflow', 'show', '--workflow-id', handle.workflowId, '--address', temporalAddress(), '--output', 'json'],
    { encoding: 'utf8', maxBuffer: 64 << 20 },
  );
  if (out.status !== 0) throw new Error(`temporal workflow show failed: ${out.stderr}`);
  await fs.mkdir(fixturesDir(), { recursive: true });
  await fs.writeFile(path.join(fixturesDir(), `${name}.history.json`), out.stdout);
  if (process.env.NTML_RECORD_HISTORIES === '1') {
    await fs.writeFile(path.join(repoRoot, 'test', 'histories', `${name}.json`), out.stdout);
  }
}

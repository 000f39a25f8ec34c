/**
 * A sweep survives its servers crashing: once one cell is finished and another runs, the
 * Temporal dev server and then versitygw of a private stack (supervised by this process) are
 * SIGKILLed; the supervisor brings each back on its port with its data, and the sweep finishes
 * every cell without redoing the finished ones.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { inProcessWorkers, quietRuntime, spawnTrainingWorker, taskQueues, testClient, waitForExit } from './support/temporal';
import { tinySweep } from './support/tinySweep';
import { startLocalStack, type LocalStack } from '../infra/stack/index';
import { storeFromEnv } from '../store/index';
import type { SweepSpecInput } from '../schemas/sweep';
import type { SweepOutcome } from '../workflows/contract';
import { assertFinishedNotRedone, cellRecords, midSweep } from './support/sweepFaults';
import { sleep } from './support/processes';

quietRuntime();

/** The reduced ci budget of test/sweep.test.ts: the sweep mechanics, not the defense, are under test. */
function spec(name: string): SweepSpecInput {
  return tinySweep(name, { attack: [{ name: 'badnets' }], defense: [{ name: 'ntml' }, { name: 'ntml', ntml: { ntLabel: 'hard' } }], seed: [1, 2] });
}

async function killAndAwaitRestart(stack: LocalStack, server: 'temporal' | 's3'): Promise<number> {
  const victim = stack[server]!.pid;
  const t0 = Date.now();
  process.kill(victim, 'SIGKILL');
  while (stack[server]!.pid === victim && Date.now() - t0 < 120_000) await sleep(100);
  assert.notEqual(stack[server]!.pid, victim, `the supervisor restarted ${server}`);
  return Date.now() - t0;
}

test('Temporal and versitygw SIGKILLed mid-sweep: the sweep finishes every cell without redoing finished ones', { timeout: 900_000 }, async () => {
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-sweep-'));
  const stack = await startLocalStack({ dir: path.join(tmp, 'stack'), log: (m) => console.log(`[private stack] ${m}`) });
  // this file runs in its own process: its helpers, workers and store all use the private stack
  for (const [k, v] of Object.entries(stack.env)) if (v !== undefined) process.env[k] = v;
  const name = `faults-${Date.now().toString(36)}`;
  const queues = taskQueues('faults-sweep');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  const worker = spawnTrainingWorker(queues.training, { ...(stack.env as Record<string, string>) });
  try {
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('sweep', {
        taskQueue: queues.orchestration,
        workflowId: `sweep-${name}`,
        args: [{ spec: spec(name), options: { trainingTaskQueue: queues.training, heartbeatTimeoutSeconds: 10 } }],
      });
      const progress = await midSweep(handle);
      const finishedBefore = await cellRecords(name);
      const temporalMs = await killAndAwaitRestart(stack, 'temporal');
      await sleep(2_000);
      const s3Ms = await killAndAwaitRestart(stack, 's3');
      console.log(`mid-sweep (${progress.done} done, ${progress.running.length} running): Temporal back in ${temporalMs} ms, versitygw in ${s3Ms} ms`);
      const result = (await handle.result()) as SweepOutcome;
      return { result, finishedBefore };
    });
    assert.equal(outcome.result.completed, 4, JSON.stringify(outcome.result.failed));
    await assertFinishedNotRedone(name, outcome.finishedBefore);
  } finally {
    worker.kill('SIGKILL');
    await waitForExit(worker);
    await close();
    await stack.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});

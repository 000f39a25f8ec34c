/**
 * The task queue names are a deployment choice: a sweep on workers that poll custom queues
 * (neither of the contract's defaults) completes, its cells run on the sweep's own queue and
 * every activity (the sweep's bookkeeping and each cell's stages) is scheduled on the custom
 * training queue, read back from the workflow histories.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, testClient } from './support/temporal';
import { tinySweep } from './support/tinySweep';
import { ORCHESTRATION_TASK_QUEUE, TRAINING_TASK_QUEUE, type SweepInput, type SweepOutcome } from '../workflows/contract';

quietRuntime();

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

interface QueueUse {
  activities: string[];
  children: string[];
}

/** The task queues a workflow's history scheduled activities and child workflows on. */
async function queuesUsed(workflowId: string): Promise<QueueUse> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const use: QueueUse = { activities: [], children: [] };
  for (const e of history.events ?? []) {
    const activity = e.activityTaskScheduledEventAttributes?.taskQueue?.name;
    if (activity) use.activities.push(activity);
    const child = e.startChildWorkflowExecutionInitiatedEventAttributes;
    if (child?.taskQueue?.name) use.children.push(`${child.workflowId}@${child.taskQueue.name}`);
  }
  return use;
}

test('a sweep on custom task queue names completes, with every cell and activity on those queues', { timeout: 600_000 }, async () => {
  const id = `${process.pid}-${Date.now().toString(36)}`;
  const queues = { orchestration: `custom-orchestration-${id}`, training: `custom-training-${id}` };
  assert.notEqual(queues.orchestration, ORCHESTRATION_TASK_QUEUE);
  assert.notEqual(queues.training, TRAINING_TASK_QUEUE);
  const name = `queues-${id}`;
  // the smallest sweep with two cells sharing one backdoored model: no defense and a short FT
  const spec = tinySweep(name, { attack: [{ name: 'badnets', target: 5 }], defense: [{ name: 'none' }, { name: 'ft', steps: 10, rounds: 2 }], seed: [1] }, { epochs: 1, mlEpochs: null });
  const input: SweepInput = { spec, options: { trainingTaskQueue: queues.training } };
  const workers = await inProcessWorkers(queues);
  const workflowId = `sweep-${name}`;
  const outcome = await workers.run(
    () => client.workflow.execute('sweep', { taskQueue: queues.orchestration, workflowId, args: [input] }) as Promise<SweepOutcome>,
  );

  assert.equal(outcome.total, 2);
  assert.equal(outcome.completed, 2, JSON.stringify(outcome.failed));
  assert.deepEqual(outcome.failed, []);

  const sweepUse = await queuesUsed(workflowId);
  assert.equal(sweepUse.children.length, 2, 'one child workflow per cell');
  for (const child of sweepUse.children) assert.ok(child.endsWith(`@${queues.orchestration}`), `${child} runs on the sweep's queue`);
  assert.ok(sweepUse.activities.length >= 3, 'the sweep stored its spec and both cells');
  const cellActivities: string[] = [];
  for (const child of sweepUse.children) cellActivities.push(...(await queuesUsed(child.slice(0, child.lastIndexOf('@')))).activities);
  assert.ok(cellActivities.length >= 2 * 4, `each cell ran its stages (${cellActivities.length} activities)`);
  const elsewhere = [...sweepUse.activities, ...cellActivities].filter((q) => q !== queues.training);
  assert.deepEqual(elsewhere, [], 'every activity was scheduled on the custom training queue');
});

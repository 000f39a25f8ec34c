/**
 * Audits as a Temporal Schedule on the real server: it fires at every interval, an audit
 * still running when the next one is due makes the schedule skip it (overlap SKIP), pause
 * stops the firing, and trigger starts an audit at once even while paused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, taskQueues, testClient } from './support/temporal';
import { auditRequest, hookServer, tempDir, TEST_SIGNING_SECRET, writeReferenceSet } from './support/auditHarness';
import { cleanModelBytes } from './support/auditFixtures';
import { storeFromEnv } from '../store';
import { readHistory } from '../core/audit/history';
import type { AuditInput } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, f: () => Promise<boolean>, timeoutMs = 90_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(250);
  }
}

test('a 2 s audit schedule fires repeatedly, skips an overlapping audit, pauses, and triggers on demand', { timeout: 300_000 }, async () => {
  const store = storeFromEnv();
  const dir = await tempDir('audit-schedule');
  const { client, close } = await testClient();
  const model = await store.put(await cleanModelBytes());
  // the first audit's notification is held for 6 s: the audit is still running at the next firings
  let release!: () => void;
  const held = new Promise<number>((resolve) => (release = () => resolve(200)));
  const hook = await hookServer((n) => (n === 1 ? held : 200));
  process.env.NTML_WEBHOOK_SCHEDULE_HOOK = `${hook.url}/schedule`;
  process.env.NTML_WEBHOOK_SCHEDULE_HOOK_SIGNING_SECRET = TEST_SIGNING_SECRET;
  const modelId = `scheduled-${Date.now().toString(36)}`;
  const request = auditRequest({
    modelId,
    model: { artifact: model },
    referenceSet: { format: 'ntml', location: await writeReferenceSet(dir) },
    // the schedule's mechanics are under test: no scan, so an audit takes about a second
    policy: { neuralCleanse: { enabled: false }, webhook: { secret: 'SCHEDULE_HOOK', maxAttempts: 1 } },
  });
  const queues = taskQueues('audit-schedule');
  const workers = await inProcessWorkers(queues);
  const handle = await client.schedule.create({
    scheduleId: `audit-${modelId}`,
    spec: { intervals: [{ every: '2s' }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'audit',
      workflowId: `audit-${modelId}`,
      taskQueue: queues.orchestration,
      args: [{ request, options: { trainingTaskQueue: queues.training } } satisfies AuditInput],
    },
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1m' },
  });
  const audits = async () => (await readHistory(store, modelId)).length;
  try {
    await workers.run(async () => {
      // 1. the first audit waits on its webhook while the schedule comes due twice or more
      await hook.waitFor(1);
      await sleep(6000);
      let d = await handle.describe();
      assert.equal(d.info.runningActions.length, 1, 'one audit running');
      assert.ok(d.info.numActionsSkippedOverlap >= 2, `overlapping firings skipped: ${d.info.numActionsSkippedOverlap}`);
      assert.equal(d.policies.overlap, 'SKIP');
      assert.equal(d.policies.catchupWindow, 60_000);
      release();

      // 2. it keeps firing: three more audits finish
      const t0 = Date.now();
      await waitUntil('four audits are recorded', async () => (await audits()) >= 4);
      console.log(`measured: 3 scheduled audits in ${((Date.now() - t0) / 1000).toFixed(1)} s after the held one`);
      const history = await readHistory(store, modelId);
      assert.ok(history.every((h) => h.status === 'completed' && h.verdict === 'clean'));
      assert.deepEqual(
        history.slice(0, 4).map((h) => h.integrity),
        ['first', 'unchanged', 'unchanged', 'unchanged'],
      );

      // 3. paused: nothing starts
      await handle.pause('schedule test');
      await waitUntil('no audit is running', async () => (await handle.describe()).info.runningActions.length === 0);
      const taken = (await handle.describe()).info.numActionsTaken;
      const recorded = await audits();
      await sleep(5000);
      d = await handle.describe();
      assert.equal(d.state.paused, true);
      assert.equal(d.state.note, 'schedule test');
      assert.equal(d.info.numActionsTaken, taken, 'no audit while paused');
      assert.equal(await audits(), recorded);

      // 4. trigger: one audit now, paused or not
      await handle.trigger();
      await waitUntil('the triggered audit is recorded', async () => (await audits()) === recorded + 1);
      assert.equal((await handle.describe()).info.numActionsTaken, taken + 1);

      // 5. unpaused, it fires again on its own
      await handle.unpause();
      await waitUntil('the schedule fires after unpause', async () => (await audits()) >= recorded + 2);
      await handle.pause('test done');
      await waitUntil('no audit is running', async () => (await handle.describe()).info.runningActions.length === 0);
    });
  } finally {
    release();
    delete process.env.NTML_WEBHOOK_SCHEDULE_HOOK;
    delete process.env.NTML_WEBHOOK_SCHEDULE_HOOK_SIGNING_SECRET;
    await handle.delete().catch(() => undefined);
    await hook.close();
    await close();
    await fs.rm(dir, { recursive: true, force: true });
  }
});

/**
 * A ci-tier purification survives losing its S3 server mid-training: versitygw is SIGKILLed
 * after standard training stored a checkpoint, its port is held by something else for 20 s
 * (so the supervisor's restarts fail and back off, and the worker's requests are reset), then
 * the supervisor brings it back on the same port with the same data. The store rides out the
 * outage inside the activity (no attempt fails, no stage restarts), and the final weights are
 * exactly those of an uninterrupted run.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ciConfig, inProcessWorkers, quietRuntime, referenceRun, spawnTrainingWorker, firstStandardCheckpoints, taskQueues, testClient, waitForExit } from './support/temporal';
import { isAlive, startLocalStack } from '../infra/stack/index';
import { storeFromEnv } from '../store/index';
import { parsePurifyConfig } from '../schemas/purify';
import type { PurifyOutcome } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OUTAGE_MS = 20_000;

/** Holds `port` (resetting every connection) from the moment the killed server releases it. */
async function holdPort(port: number): Promise<net.Server> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const server = net.createServer((socket) => socket.resetAndDestroy());
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
      });
      return server;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(5);
    }
  }
}

test('versitygw SIGKILLed and kept down for at least 20 s mid-training: the run completes without a failed attempt, with the uninterrupted weights', { timeout: 900_000 }, async () => {
  const reference = await referenceRun();
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-e2e-'));
  // a private S3 server, supervised by this process, so that killing it touches no other test
  const s3 = await startLocalStack({ dir: path.join(tmp, 'stack'), temporal: false, log: (m) => console.log(`[private stack] ${m}`) });
  const env = { ...s3.env } as Record<string, string>;
  const store = storeFromEnv(env);
  const queues = taskQueues('faults-s3');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  const worker = spawnTrainingWorker(queues.training, { ...env, NTML_OUTAGE_BUDGET_SECONDS: '600', NTML_OUTAGE_MAX_BACKOFF_SECONDS: '2' });
  let blocker: net.Server | undefined;
  try {
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId: `faults-s3-${Date.now()}`,
        args: [{ config: ciConfig(), options: { trainingTaskQueue: queues.training, cache: false } }],
      });
      const { runId } = await handle.describe();
      const epochs = await firstStandardCheckpoints(store, handle, runId);

      const victim = s3.s3!;
      const killedAt = Date.now();
      process.kill(victim.pid, 'SIGKILL');
      blocker = await holdPort(victim.port);
      await sleep(OUTAGE_MS);
      assert.equal(isAlive(victim.pid), false);
      assert.equal(s3.s3!.pid, victim.pid, 'the supervisor could not restart versitygw while its port was held');
      const epochsAtKill = epochs;
      await new Promise((resolve) => blocker!.close(resolve));
      const t0 = Date.now();
      while (s3.s3!.pid === victim.pid && Date.now() - t0 < 60_000) await sleep(100);
      assert.notEqual(s3.s3!.pid, victim.pid, 'the supervisor restarted versitygw');
      assert.equal(s3.s3!.endpoint, victim.endpoint);
      const downSeconds = (Date.now() - killedAt) / 1000;
      console.log(`versitygw down for ${downSeconds.toFixed(1)} s (killed after standard-training epochs ${epochsAtKill.join(',')})`);

      const result = (await handle.result()) as PurifyOutcome;
      const history = await handle.fetchHistory();
      return { result, history, downSeconds, epochsAtKill };
    });

    // the outage was ridden out inside the activities: no attempt failed or timed out, none was retried
    const events = outcome.history.events ?? [];
    const failed = events.filter((e) => e.activityTaskFailedEventAttributes || e.activityTaskTimedOutEventAttributes);
    assert.deepEqual(failed.map((e) => e.eventType), [], 'no activity attempt failed');
    const retried = events.filter((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1);
    assert.equal(retried.length, 0, 'no activity ran a second attempt');
    // standard training was still running when the server died (it had epochs left to store)
    assert.ok(outcome.epochsAtKill.at(-1)! < parsePurifyConfig(ciConfig()).training.epochs, `killed mid-stage: ${outcome.epochsAtKill.join(',')}`);
    assert.ok(outcome.downSeconds >= OUTAGE_MS / 1000);
    assert.equal(outcome.result.purifiedModel.sha256, reference.outcome.purifiedModel.sha256, 'the same weights as the uninterrupted run');
  } finally {
    blocker?.close();
    worker.kill('SIGKILL');
    await waitForExit(worker);
    await close();
    await s3.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});

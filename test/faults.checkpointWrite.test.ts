/**
 * versitygw SIGKILLed in the middle of a checkpoint write and kept down for 60 s (the issue's
 * number), then restarted on the same port with the same data: the training worker's store
 * rides the outage out inside the activity (the outage budget is 30 min by default), the
 * interrupted checkpoint is written once the server is back, and the run ends with exactly the
 * weights of an uninterrupted one.
 *
 * Timing the kill at a checkpoint write: the training worker reaches versitygw through a byte
 * relay in this process (the server is real; the relay only passes bytes on). Once standard
 * training has stored its first checkpoint, the relay kills versitygw when it sees the next
 * request line `PUT .../cas/...` (a checkpoint's object) and drops that request unforwarded,
 * so the write is in flight when the server dies.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { ciConfig, firstStandardCheckpoints, inProcessWorkers, quietRuntime, referenceRun, spawnTrainingWorker, taskQueues, testClient, waitForExit } from './support/temporal';
import { freePort, isAlive, startS3Server, type S3Server } from '../infra/stack/index';
import { outagePolicyFromEnv, storeFromEnv } from '../store/index';
import { parsePurifyConfig } from '../schemas/purify';
import type { CheckpointEntry } from '../activities/checkpointing';
import type { PurifyOutcome } from '../workflows/contract';

quietRuntime();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const OUTAGE_MS = 60_000;

/** What the relay saw: the request it dropped when it killed the server. */
interface Relay {
  port: number;
  /** from now on, the next PUT of a content-addressed object kills the server */
  arm(kill: () => void): void;
  interrupted(): { path: string; at: number } | undefined;
  close(): Promise<void>;
}

const REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.1\r\n/;

/** A TCP relay to 127.0.0.1:`upstream` that can kill the server on a checkpoint's PUT. */
async function startRelay(upstream: number): Promise<Relay> {
  let armed: (() => void) | undefined;
  let interrupted: { path: string; at: number } | undefined;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const up = net.connect(upstream, '127.0.0.1');
    sockets.add(client).add(up);
    const end = () => {
      client.destroy();
      up.destroy();
      sockets.delete(client);
      sockets.delete(up);
    };
    client.on('data', (chunk: Buffer) => {
      // the SDK writes a request's head in one piece after the previous response, so a
      // request line starts a chunk; a body chunk is never mistaken for one (binary, no "HTTP/1.1\r\n" line)
      const line = REQUEST_LINE.exec(chunk.toString('latin1', 0, Math.min(chunk.length, 4096)));
      if (armed && line && line[1] === 'PUT' && /\/cas\/[0-9a-f]{2}\/[0-9a-f]{64}/.test(line[2])) {
        const kill = armed;
        armed = undefined;
        interrupted = { path: line[2], at: Date.now() };
        kill();
        end(); // the request dies with the server: never forwarded, its client sees the connection reset
        return;
      }
      up.write(chunk);
    });
    up.on('data', (d: Buffer) => client.write(d));
    client.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: (kill) => (armed = kill),
    interrupted: () => interrupted,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

test('versitygw SIGKILLed during a checkpoint write and down for 60 s: the write completes after its restart and the run ends with the uninterrupted weights', { timeout: 900_000 }, async () => {
  const reference = await referenceRun();
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-faults-ckpt-'));
  const dataDir = path.join(tmp, 's3');
  const port = await freePort();
  // a private versitygw without a supervisor: this test decides when it comes back
  let s3: S3Server = await startS3Server({ dataDir, port, log: (m) => console.log(`[private s3] ${m}`) });
  const relay = await startRelay(port);
  const storeEnv = { NTML_STORE: 's3://ntml/ntml', NTML_S3_REGION: s3.region, NTML_S3_CREDENTIALS_FILE: s3.credentialsFile };
  const store = storeFromEnv({ ...storeEnv, NTML_S3_ENDPOINT: s3.endpoint }); // this test reads past the relay
  const workerEnv = { ...storeEnv, NTML_S3_ENDPOINT: `http://127.0.0.1:${relay.port}`, NTML_OUTAGE_MAX_BACKOFF_SECONDS: '2' };
  const budgetMs = outagePolicyFromEnv({ ...process.env, ...workerEnv }).budgetMs;
  assert.ok(budgetMs > OUTAGE_MS * 2, `the default outage budget (${budgetMs} ms) covers a 60 s outage`);
  const queues = taskQueues('faults-ckpt');
  const workers = await inProcessWorkers({ orchestration: queues.orchestration });
  const { client, close } = await testClient();
  const worker = spawnTrainingWorker(queues.training, workerEnv);
  try {
    const outcome = await workers.run(async () => {
      const handle = await client.workflow.start('purify', {
        taskQueue: queues.orchestration,
        workflowId: `faults-ckpt-${Date.now()}`,
        args: [{ config: ciConfig(), options: { trainingTaskQueue: queues.training, cache: false } }],
      });
      const { runId } = await handle.describe();
      const recordKey = async () => (await store.listRecords(`checkpoints/${handle.workflowId}/${runId}/`)).find((k) => k.endsWith('-standard'));
      const epochs = await firstStandardCheckpoints(store, handle, runId, () => `:\n${worker.output()}`);

      const victim = s3.pid;
      let killed!: () => void;
      const killedNow = new Promise<void>((resolve) => (killed = resolve));
      relay.arm(() => {
        process.kill(victim, 'SIGKILL');
        killed();
      });
      await killedNow;
      const cut = relay.interrupted()!;
      for (let i = 0; i < 100 && isAlive(victim); i++) await sleep(50);
      assert.equal(isAlive(victim), false);
      await sleep(Math.max(0, OUTAGE_MS - (Date.now() - cut.at)));
      s3 = await startS3Server({ dataDir, port, log: (m) => console.log(`[private s3] ${m}`) }); // same port, same data
      const downSeconds = (Date.now() - cut.at) / 1000;
      console.log(`versitygw killed at ${cut.path} (standard-training epochs stored before: ${epochs.join(',')}), back after ${downSeconds.toFixed(1)} s`);

      const result = (await handle.result()) as PurifyOutcome;
      const history = await handle.fetchHistory();
      const entries = (await store.getRecord<CheckpointEntry[]>((await recordKey())!)) ?? [];
      return { result, history, downSeconds, epochsBefore: epochs, cut, entries };
    });

    // the write in flight at the kill was a checkpoint of standard training, written once the server was back
    const sha = /\/cas\/[0-9a-f]{2}\/([0-9a-f]{64})/.exec(outcome.cut.path)![1];
    const written = outcome.entries.find((e) => e.checkpoint.sha256 === sha);
    assert.ok(written, `the interrupted object ${sha} is a stored standard-training checkpoint (${outcome.entries.map((e) => `${e.epoch}:${e.checkpoint.sha256.slice(0, 8)}`).join(' ')})`);
    assert.ok(written.epoch > outcome.epochsBefore.at(-1)!, `the next epoch's checkpoint (${written.epoch}) was cut`);
    assert.ok(written.epoch <= parsePurifyConfig(ciConfig()).training.epochs);
    assert.deepEqual(outcome.entries.map((e) => e.epoch), outcome.entries.map((_, i) => i + 1), 'one checkpoint per epoch, none lost');
    assert.ok(outcome.downSeconds >= OUTAGE_MS / 1000, `down ${outcome.downSeconds} s`);
    // ridden out inside the activity: no attempt failed or timed out, none ran twice
    const events = outcome.history.events ?? [];
    const failed = events.filter((e) => e.activityTaskFailedEventAttributes || e.activityTaskTimedOutEventAttributes);
    assert.deepEqual(failed.map((e) => e.eventType), [], 'no activity attempt failed');
    assert.equal(events.filter((e) => (e.activityTaskStartedEventAttributes?.attempt ?? 1) > 1).length, 0, 'no activity ran a second attempt');
    assert.equal(outcome.result.purifiedModel.sha256, reference.outcome.purifiedModel.sha256, 'the same weights as the uninterrupted run');
  } finally {
    worker.kill('SIGKILL');
    await waitForExit(worker);
    await close();
    await relay.close();
    await s3.stop();
    await fsp.rm(tmp, { recursive: true, force: true });
  }
});

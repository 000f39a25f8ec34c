/**
 * Bad input through the real workflow: each fails once, clearly, naming the field or file,
 * without retries (no crash loop) and without touching anything already stored.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure, ActivityFailure } from '@temporalio/common';
import { ciConfig, inProcessWorkers, quietRuntime, taskQueues, testClient, type InProcessWorkers } from './support/temporal';
import { storeFromEnv } from '../store';
import { encodeDataset } from '../core/data/codec';
import { encodeCifar10Batch } from '../core/data/cifar10';
import { generateSyntheticDataset } from '../core/data/synthetic';

quietRuntime();

let client: Client;
let close: () => Promise<void>;
let queues: ReturnType<typeof taskQueues>;
let dir: string;

before(async () => {
  ({ client, close } = await testClient());
  queues = taskQueues('bad-input');
  dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-bad-input-'));
});
after(async () => {
  await close();
  await fs.rm(dir, { recursive: true, force: true });
});

/** Runs the workflow with in-process workers and returns its failure and history. */
async function runExpectingFailure(config: unknown) {
  const workers: InProcessWorkers = await inProcessWorkers(queues);
  return workers.run(async () => {
    const handle = await client.workflow.start('purify', {
      taskQueue: queues.orchestration,
      workflowId: `bad-input-${Date.now()}-${Math.random().toString(36).slice(2, 8)}`,
      args: [{ config, options: { trainingTaskQueue: queues.training } }],
    });
    const err = await handle.result().then(
      () => assert.fail('the workflow should have failed'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError, `expected WorkflowFailedError, got ${err}`);
    const history = await handle.fetchHistory();
    const attempts = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.attempt ?? 1);
    let cause: unknown = err.cause;
    while (cause instanceof ActivityFailure) cause = cause.cause;
    return { cause: cause as ApplicationFailure, attempts };
  });
}

test('a malformed config fails the workflow at once, naming the field, before any activity', async () => {
  const { cause, attempts } = await runExpectingFailure(ciConfig({ attack: { name: 'badnets', rate: 2 }, cleanBudget: 0 }));
  assert.ok(cause instanceof ApplicationFailure);
  assert.equal(cause.type, 'InvalidConfig');
  assert.equal(cause.nonRetryable, true);
  assert.match(cause.message, /attack\.rate/);
  assert.match(cause.message, /cleanBudget/);
  assert.deepEqual(attempts, [], 'no activity ran');
});

test('a location with ".." fails the workflow at once, naming the field, before any activity (not retried into a bare S3 Bad Request)', async () => {
  const { cause, attempts } = await runExpectingFailure({
    mode: 'protection',
    trainingSet: { format: 'ntml', location: 's3://ntml/../x' },
    cleanSet: { format: 'ntml', location: 's3://ntml/clean.ntds' },
  });
  assert.equal(cause.type, 'InvalidConfig');
  assert.equal(cause.nonRetryable, true);
  assert.match(cause.message, /trainingSet\.location: s3 key must not contain '\.\.' segments/);
  assert.deepEqual(attempts, [], 'no activity ran');
});

test('an unknown attack is rejected with the list of known attacks', async () => {
  const { cause, attempts } = await runExpectingFailure(ciConfig({ attack: { name: 'nosuch' } }));
  assert.equal(cause.type, 'InvalidConfig');
  assert.match(cause.message, /attack\.name/);
  assert.match(cause.message, /badnets/);
  assert.deepEqual(attempts, []);
});

test('an unknown NT-ML switch value is rejected by name', async () => {
  const bad = await runExpectingFailure(ciConfig({ ntml: { ntLabel: 'fuzzy' } }));
  assert.match(bad.cause.message, /ntml\.ntLabel/);
});

test('a label out of range in a user data set fails once (non-retryable), naming the file', async () => {
  const ds = generateSyntheticDataset({ size: 60, seed: 3, height: 16, width: 16 });
  const bytes = Buffer.from(encodeDataset(ds));
  // patch the first stored label (int32 LE, after the header) to 42
  const good = Buffer.from(encodeDataset({ ...ds, labels: Int32Array.from(ds.labels, () => 7) }));
  const labelOffset = good.indexOf(Buffer.from(Int32Array.of(7, 7, 7, 7).buffer));
  assert.ok(labelOffset > 0);
  bytes.writeInt32LE(42, labelOffset);
  const file = path.join(dir, 'train-bad-label.ntds');
  await fs.writeFile(file, bytes);
  await fs.writeFile(path.join(dir, 'clean.ntds'), encodeDataset(generateSyntheticDataset({ size: 30, seed: 4, height: 16, width: 16 })));
  const { cause, attempts } = await runExpectingFailure({
    mode: 'protection',
    seed: 1,
    trainingSet: { format: 'ntml', location: file },
    cleanSet: { format: 'ntml', location: path.join(dir, 'clean.ntds') },
  });
  assert.equal(cause.nonRetryable, true);
  assert.equal(cause.type, 'DatasetError');
  assert.match(cause.message, /trainingSet/);
  assert.match(cause.message, /train-bad-label\.ntds/);
  assert.match(cause.message, /42/);
  assert.deepEqual(attempts, [1], 'exactly one attempt: no crash loop');
});

test('a truncated CIFAR-10 batch fails once with the file, its size and the record size', async () => {
  const ds = generateSyntheticDataset({ size: 40, seed: 5 });
  const full = Buffer.from(encodeCifar10Batch(ds));
  const file = path.join(dir, 'data_batch_truncated.bin');
  await fs.writeFile(file, full.subarray(0, full.length - 1000));
  await fs.writeFile(path.join(dir, 'clean.bin'), encodeCifar10Batch(generateSyntheticDataset({ size: 30, seed: 6 })));
  const { cause, attempts } = await runExpectingFailure({
    mode: 'protection',
    seed: 1,
    trainingSet: { format: 'cifar10Batch', location: file },
    cleanSet: { format: 'cifar10Batch', location: path.join(dir, 'clean.bin') },
  });
  assert.equal(cause.nonRetryable, true);
  assert.match(cause.message, /data_batch_truncated\.bin/);
  assert.match(cause.message, /3073/);
  assert.deepEqual(attempts, [1]);
});

test('failed runs leave every stored artifact intact', async () => {
  const store = storeFromEnv();
  let checked = 0;
  for await (const obj of store.list()) {
    assert.ok(await store.verify({ uri: '', sha256: obj.sha256, bytes: obj.bytes }), `${obj.sha256} still verifies`);
    if (++checked >= 200) break;
  }
});

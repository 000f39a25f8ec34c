/**
 * Portable cell ids on the real Temporal server and S3 store: a sweep's finished cell is found
 * again when the same CIFAR-10 bytes sit in another folder (a bench/state bundle on another
 * machine), and not when one byte differs.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, taskQueues, testClient } from './support/temporal';
import { storeFromEnv } from '../store';
import { expandSweep, parseSweepSpec, type SweepSpecInput } from '../schemas/sweep';
import { dataContentFingerprint } from '../core/data/contentFingerprint';
import { CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES } from '../core/data/cifar10';
import type { SweepOutcome } from '../workflows/contract';

quietRuntime();

/** A tiny valid cifar-10-batches-bin folder: 30 records per training batch, 30 test records, every class present. */
function tinyCifar(root: string): string {
  const dir = path.join(root, 'cifar-10-batches-bin');
  mkdirSync(dir, { recursive: true });
  let x = 12345;
  const rand = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 16) & 0xff;
  for (const file of [...CIFAR10_TRAIN_FILES, ...CIFAR10_TEST_FILES]) {
    const records = Array.from({ length: 30 }, (_, i) => {
      const label = i % 10;
      // a class-dependent mean so the tiny model has something to learn
      return Buffer.from([label, ...Array.from({ length: 3072 }, () => (rand() >> 1) + label * 12)]);
    });
    writeFileSync(path.join(dir, file), Buffer.concat(records));
  }
  return dir;
}

const spec = (dataPath: string): SweepSpecInput => ({
  name: 'portable-ids',
  base: {
    mode: 'evaluation',
    tier: 'ci',
    data: { format: 'cifar10', path: dataPath },
    cleanReserve: { fraction: 0.25 },
    cleanBudget: 20,
    training: { epochs: 1 },
    attack: { name: 'badnets' },
    defense: { name: 'none' },
  },
  grid: { seed: [1] },
  concurrency: 1,
});

let client: Client;
let close: () => Promise<void>;
before(async () => ({ client, close } = await testClient()));
after(async () => close());

test('a finished cell is found again with its data in another folder, and recomputed when a byte differs', { timeout: 600_000 }, async () => {
  const a = tinyCifar(mkdtempSync(path.join(tmpdir(), 'ntml-ids-a-')));
  const b = path.join(mkdtempSync(path.join(tmpdir(), 'ntml-ids-b-')), 'other', 'place');
  cpSync(a, b, { recursive: true });
  const c = path.join(mkdtempSync(path.join(tmpdir(), 'ntml-ids-c-')), 'cifar');
  cpSync(a, c, { recursive: true });
  const changed = readFileSync(path.join(c, 'test_batch.bin'));
  changed[5] ^= 0x40;
  writeFileSync(path.join(c, 'test_batch.bin'), changed);

  const queues = taskQueues('sweep-ids');
  const workers = await inProcessWorkers(queues);
  const run = (dataPath: string, i: number) =>
    client.workflow.execute('sweep', {
      taskQueue: queues.orchestration,
      workflowId: `sweep-portable-ids-${Date.now().toString(36)}-${i}`,
      args: [{ spec: spec(dataPath), options: { trainingTaskQueue: queues.training } }],
    }) as Promise<SweepOutcome>;
  // the workers serve one run of sweeps in a row (they close their connection after it)
  const [first, second, third] = await workers.run(async () => [await run(a, 1), await run(b, 2), await run(c, 3)]);
  assert.equal(first.completed, 1, JSON.stringify(first));
  assert.equal(first.reused, 0);
  assert.deepEqual({ completed: second.completed, reused: second.reused }, { completed: 1, reused: 1 }, 'the copy elsewhere finds the finished cell');
  assert.deepEqual({ completed: third.completed, reused: third.reused }, { completed: 1, reused: 0 }, 'one changed byte is other data');

  // the stored records sit under the ids expandSweep gives with the data's content digest
  const keys = (await storeFromEnv().listRecords('sweeps/portable-ids/cells/')).map((k) => k.split('/').pop()).sort();
  const idOf = async (p: string) => expandSweep(parseSweepSpec(spec(p)), { dataContent: await dataContentFingerprint({ format: 'cifar10', path: p }) })[0].id;
  assert.deepEqual(keys, [await idOf(a), await idOf(c)].sort());
  assert.equal(await idOf(b), await idOf(a));
});

/**
 * Portable cell ids: a cell's id hashes its data's content digest, not the folder it lies in,
 * so a bench/state bundle's cells are found again on a machine with another CIFAR-10 path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { expandSweep, parseSweepSpec } from '../../schemas/sweep';
import { dataContentFingerprint } from '../../core/data/contentFingerprint';
import { CIFAR10_TEST_FILES, CIFAR10_TRAIN_FILES } from '../../core/data/cifar10';

/** A folder shaped like cifar-10-batches-bin: small batch files of seeded bytes (the digest reads bytes, not records). */
function fakeCifar(root: string, seed: number): string {
  const dir = path.join(root, 'cifar-10-batches-bin');
  mkdirSync(dir, { recursive: true });
  for (const [i, f] of [...CIFAR10_TRAIN_FILES, ...CIFAR10_TEST_FILES].entries()) {
    writeFileSync(path.join(dir, f), Buffer.from(Array.from({ length: 3073 }, (_, j) => (seed * 31 + i * 7 + j) % 256)));
  }
  writeFileSync(path.join(dir, 'readme.html'), 'not read by the loader');
  return dir;
}

const spec = (dataPath: string) =>
  parseSweepSpec({
    name: 'ids',
    base: { mode: 'evaluation', tier: 'ci', data: { format: 'cifar10', path: dataPath, trainSubset: 100 }, attack: { name: 'badnets' } },
    grid: { defense: [{ name: 'none' }, { name: 'ft' }], seed: [1, 2] },
  });

async function ids(dataPath: string): Promise<string[]> {
  const content = await dataContentFingerprint({ format: 'cifar10', path: dataPath });
  assert.ok(content, `a digest for ${dataPath}`);
  return expandSweep(spec(dataPath), { dataContent: content }).map((c) => c.id);
}

test('cell ids: the same CIFAR-10 bytes at two paths give the same ids; one changed byte gives other ids', async () => {
  const a = fakeCifar(mkdtempSync(path.join(tmpdir(), 'ntml-ids-a-')), 1);
  const b = path.join(mkdtempSync(path.join(tmpdir(), 'ntml-ids-b-')), 'elsewhere', 'copy');
  cpSync(a, b, { recursive: true });
  const idsA = await ids(a);
  assert.equal(new Set(idsA).size, 4, 'four distinct cells');
  assert.deepEqual(await ids(b), idsA, 'a copy elsewhere names the same cells');
  // hashing the path, as before content digests, the copy's cells would not be found
  assert.notDeepEqual(expandSweep(spec(b)).map((c) => c.id), expandSweep(spec(a)).map((c) => c.id));

  // a file the loader does not read changes nothing
  writeFileSync(path.join(b, 'readme.html'), 'edited');
  assert.deepEqual(await ids(b), idsA);

  // one byte of one batch file, same size (the memo of digests sees the write by its mtime)
  const batch = path.join(b, 'data_batch_3.bin');
  const bytes = readFileSync(batch);
  bytes[100] ^= 1;
  writeFileSync(batch, bytes);
  utimesSync(batch, new Date(), new Date(Date.now() + 5000));
  const changed = await ids(b);
  for (const id of changed) assert.ok(!idsA.includes(id), `cell ${id} of the changed data is not a cell of the original`);
  // the other axes still tell the cells apart, and in the same order
  assert.equal(new Set(changed).size, 4);
});

test('cell ids: data without a local location (synthetic) hash as before; a missing folder has no digest', async () => {
  const synthetic = parseSweepSpec({ name: 's', base: { mode: 'evaluation', tier: 'ci', data: { format: 'synthetic' }, attack: { name: 'badnets' } }, grid: { seed: [1, 2] } });
  assert.equal(await dataContentFingerprint({ format: 'synthetic' }), undefined);
  assert.deepEqual(
    expandSweep(synthetic, { dataContent: 'sha256:ignored' }).map((c) => c.id),
    expandSweep(synthetic).map((c) => c.id),
  );
  assert.equal(await dataContentFingerprint({ format: 'cifar10', path: path.join(tmpdir(), 'ntml-no-such-folder', 'x') }), undefined);
});

test('cell ids: an image folder hashes every file under train and test, not the folders names', async () => {
  const make = (root: string, pixel: number) => {
    for (const split of ['train', 'test'])
      for (const cls of ['cat', 'dog']) {
        mkdirSync(path.join(root, split, cls), { recursive: true });
        writeFileSync(path.join(root, split, cls, '0.ppm'), Buffer.from(`P6 1 1 255\n${String.fromCharCode(pixel, 0, 0)}`, 'latin1'));
      }
    return { format: 'imageFolder', size: 32, train: { dir: path.join(root, 'train') }, test: { dir: path.join(root, 'test') } };
  };
  const a = make(mkdtempSync(path.join(tmpdir(), 'ntml-if-a-')), 10);
  const b = make(mkdtempSync(path.join(tmpdir(), 'ntml-if-b-')), 10);
  const c = make(mkdtempSync(path.join(tmpdir(), 'ntml-if-c-')), 11);
  const [fa, fb, fc] = await Promise.all([a, b, c].map((d) => dataContentFingerprint(d)));
  assert.match(fa ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.equal(fa, fb);
  assert.notEqual(fa, fc);
  const imageSpec = (data: object) =>
    parseSweepSpec({ name: 'if', base: { mode: 'evaluation', tier: 'ci', data, attack: { name: 'badnets' } }, grid: { seed: [1] } });
  assert.equal(expandSweep(imageSpec(a), { dataContent: fa })[0].id, expandSweep(imageSpec(b), { dataContent: fb })[0].id);
  assert.notEqual(expandSweep(imageSpec(a), { dataContent: fa })[0].id, expandSweep(imageSpec(c), { dataContent: fc })[0].id);
});

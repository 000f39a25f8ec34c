/** Garbage collection on a real FileArtifactStore in a temporary directory. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { FileArtifactStore, type ArtifactRef } from '../store/index';
import { collectGarbage, findArtifactRefs, GcError } from '../store/gc';

const rand = (n: number) => new Uint8Array(randomBytes(n));
const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

async function listed(store: FileArtifactStore): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for await (const o of store.list()) out.set(o.sha256, o.bytes);
  return out;
}

interface Fixture {
  store: FileArtifactStore;
  dir: string;
  /** referenced through records, directly or transitively */
  kept: Record<string, ArtifactRef>;
  /** referenced by nothing (an unreferenced JSON artifact's refs included) */
  garbage: Record<string, ArtifactRef>;
  /** referenced only by the checkpoints/ record */
  checkpointOnly: ArtifactRef;
  /** referenced by the checkpoints/ record and by a run record */
  checkpointShared: ArtifactRef;
  danglingSha: string;
}

async function fixture(): Promise<Fixture> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-gc-'));
  const store = new FileArtifactStore(dir);
  // transitively referenced: run record -> report JSON -> models, and report -> manifest JSON -> weights
  const modelStd = await store.put(rand(3000));
  const modelFinal = await store.put(rand(2500));
  const weights = await store.put(rand(1200));
  const manifest = await store.put(new TextEncoder().encode(`  \n[${JSON.stringify({ weights })}]`)); // leading blanks, array
  const report = await store.put(json({ runId: 'r1', models: { standard: modelStd, final: modelFinal }, extra: [[{ manifest }]] }));
  // directly referenced by records
  const dataset = await store.put(rand(5000));
  const braceBinary = await store.put(new Uint8Array([0x7b, 0xff, 0x00, 0x01, 0x02])); // starts with '{', not JSON
  const wrongSizeClaim = await store.put(rand(700));
  // checkpoints
  const checkpointOnly = await store.put(rand(4000));
  const checkpointShared = await store.put(rand(4100));
  // garbage: a random blob, and an unreferenced JSON artifact plus the only object it references
  const orphan = await store.put(rand(900));
  const orphanTarget = await store.put(rand(800));
  const orphanJson = await store.put(json({ ref: orphanTarget }));
  const danglingSha = 'ab'.repeat(32);

  await store.putRecord('runs/purify/r1', { runId: 'r1', report, purifiedModel: modelFinal });
  await store.putRecord('cache/prepareData/k1', { stage: 'prepareData', output: { train: dataset, odd: braceBinary } });
  await store.putRecord('sweeps/s1/cells/c1', {
    report,
    lastCheckpoint: checkpointShared,
    weird: { ...wrongSizeClaim, bytes: 1 },
    gone: { uri: 'file:///nowhere', sha256: danglingSha, bytes: 10 },
  });
  await store.putRecord('checkpoints/wf1/run1/3-standardTraining', [
    { epoch: 1, checkpoint: checkpointOnly },
    { epoch: 2, checkpoint: checkpointShared },
  ]);
  return {
    store,
    dir,
    kept: { modelStd, modelFinal, weights, manifest, report, dataset, braceBinary, wrongSizeClaim, checkpointShared },
    garbage: { orphan, orphanTarget, orphanJson },
    checkpointOnly,
    checkpointShared,
    danglingSha,
  };
}

const shas = (refs: ArtifactRef[]) => refs.map((r) => r.sha256).sort();
const bytes = (refs: ArtifactRef[]) => refs.reduce((s, r) => s + r.bytes, 0);

test('findArtifactRefs finds ref-shaped objects at any depth and nothing else', () => {
  const a = { uri: 'file:///x', sha256: 'a'.repeat(64), bytes: 1 };
  const b = { uri: 's3://b/k', sha256: 'b'.repeat(64), bytes: 2, extra: { uri: 'u', sha256: 'c'.repeat(64), bytes: 3 } };
  let deep: unknown = a;
  for (let i = 0; i < 50_000; i++) deep = { next: deep };
  const found = findArtifactRefs({ deep, list: [null, 1, 'x', [b]], notRef: { uri: 'u', sha256: 'short', bytes: 1 }, noBytes: { uri: 'u', sha256: 'd'.repeat(64) } });
  assert.deepEqual(found.map((r) => r.sha256[0]).sort(), ['a', 'b', 'c']);
});

test('dry run: reports the unreferenced objects and their bytes, deletes nothing', async () => {
  const f = await fixture();
  try {
    const before = await listed(f.store);
    const r = await collectGarbage(f.store, { dryRun: true });
    const garbage = Object.values(f.garbage);
    assert.deepEqual(r.unreferenced.map((o) => o.sha256), shas(garbage));
    assert.equal(r.freedBytes, bytes(garbage));
    assert.deepEqual(
      r.unreferenced.map((o) => o.bytes),
      [...garbage].sort((x, y) => (x.sha256 < y.sha256 ? -1 : 1)).map((g) => g.bytes),
    );
    assert.equal(r.deleted, 0);
    // kept objects + the checkpoint-only one (checkpoints are roots by default) + the dangling sha
    assert.equal(r.referenced, Object.keys(f.kept).length + 2);
    assert.deepEqual(r.missing, [f.danglingSha]);
    assert.equal(r.roots, 4);
    assert.deepEqual(r.checkpointRecords, []);
    assert.equal(r.scannedArtifacts, 2); // report and manifest
    assert.deepEqual(await listed(f.store), before);
    assert.equal((await f.store.listRecords('')).length, 4);
  } finally {
    await fsp.rm(f.dir, { recursive: true, force: true });
  }
});

test('real run: deletes exactly the unreferenced objects; every referenced one still verifies', async () => {
  const f = await fixture();
  try {
    const before = await listed(f.store);
    const logs: string[] = [];
    const r = await collectGarbage(f.store, { dryRun: false, log: (m) => logs.push(m) });
    const garbage = Object.values(f.garbage);
    assert.equal(r.deleted, garbage.length);
    assert.equal(r.freedBytes, bytes(garbage));
    const after = await listed(f.store);
    assert.deepEqual([...before.keys()].filter((s) => !after.has(s)).sort(), shas(garbage));
    for (const ref of [...Object.values(f.kept), f.checkpointOnly]) assert.equal(await f.store.verify(ref), true, `kept ${ref.sha256}`);
    for (const ref of garbage) assert.equal(await f.store.has(ref), false);
    assert.equal(logs.filter((l) => l.startsWith('gc: deleted ')).length, garbage.length);
    assert.equal((await f.store.listRecords('')).length, 4, 'records are never deleted with keepCheckpoints');
    // idempotent
    const again = await collectGarbage(f.store, { dryRun: false });
    assert.deepEqual(again.unreferenced, []);
    assert.equal(again.deleted, 0);
    assert.equal(again.freedBytes, 0);
  } finally {
    await fsp.rm(f.dir, { recursive: true, force: true });
  }
});

test('keepCheckpoints false reclaims checkpoint objects (not those another record references) and their records', async () => {
  const f = await fixture();
  try {
    const dry = await collectGarbage(f.store, { dryRun: true, keepCheckpoints: false });
    const expected = [...Object.values(f.garbage), f.checkpointOnly];
    assert.deepEqual(dry.unreferenced.map((o) => o.sha256), shas(expected));
    assert.equal(dry.freedBytes, bytes(expected));
    assert.deepEqual(dry.checkpointRecords, ['checkpoints/wf1/run1/3-standardTraining']);
    assert.equal(dry.roots, 3);
    assert.equal(await f.store.has(f.checkpointOnly), true);
    assert.ok((await f.store.listRecords('checkpoints/')).length === 1, 'dry run keeps the record');

    const r = await collectGarbage(f.store, { dryRun: false, keepCheckpoints: false });
    assert.equal(r.deleted, expected.length);
    assert.equal(await f.store.has(f.checkpointOnly), false);
    assert.equal(await f.store.verify(f.checkpointShared), true);
    for (const ref of Object.values(f.kept)) assert.equal(await f.store.verify(ref), true);
    assert.deepEqual(await f.store.listRecords('checkpoints/'), []);
    assert.deepEqual(await f.store.listRecords(''), ['cache/prepareData/k1', 'runs/purify/r1', 'sweeps/s1/cells/c1']);
  } finally {
    await fsp.rm(f.dir, { recursive: true, force: true });
  }
});

test('an unreadable record aborts the collection before anything is deleted', async () => {
  const f = await fixture();
  try {
    await fsp.writeFile(path.join(f.dir, 'records', 'broken.json'), '{"report": ');
    const before = await listed(f.store);
    await assert.rejects(collectGarbage(f.store, { dryRun: false }), (err: unknown) => err instanceof GcError && /broken/.test((err as Error).message));
    assert.deepEqual(await listed(f.store), before);
  } finally {
    await fsp.rm(f.dir, { recursive: true, force: true });
  }
});

test('an empty store collects nothing', async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-gc-empty-'));
  try {
    const r = await collectGarbage(new FileArtifactStore(dir), { dryRun: false, keepCheckpoints: false });
    assert.deepEqual(r, { referenced: 0, unreferenced: [], freedBytes: 0, deleted: 0, missing: [], roots: 0, checkpointRecords: [], scannedArtifacts: 0 });
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
});

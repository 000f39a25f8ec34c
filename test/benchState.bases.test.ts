/**
 * Bench state that scales (bench/state/README.md, "Bases and the budget"): bundles exported against
 * base bundles, superseded cells left out, and the --keep-stages policy, on filesystem stores laid
 * out as the workflows write them (records named as the S3 store names them). The same paths on the
 * real stack, through bench/run-cpu.sh: test/benchState.bases.e2e.test.ts.
 *
 * Two sweeps share a backdoored model (a standardTraining entry and its weights), as the cpu-tier
 * specs share attacks-cpu's: "base" has the cell without defense, plus a superseded cell record
 * (an id its spec no longer lists) reaching an entry of its own; "dep" adds an FT cell.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { BundleBaseError, BundleError, FileArtifactStore, decodeBundle, importBundle, type ArtifactRef } from '../store/index';
import { checkStateDir, collectBenchState, exportBenchState } from '../bench/stateBundle';
import { encodeCheckpoint } from '../core/train/checkpoint';
import { readBaseBundles as readBases } from '../cli/storeBundle';

const key64 = () => randomBytes(32).toString('hex');

async function fixture() {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bench-bases-'));
  const store = new FileArtifactStore(path.join(root, 'store'));
  const put = async (data: Uint8Array): Promise<ArtifactRef> => {
    const r = await store.put(data);
    return { ...r, uri: `s3://ntml/ntml/artifacts/${r.sha256}` };
  };
  const backdoored = await put(randomBytes(3000));
  const ftModel = await put(randomBytes(2500));
  const oldModel = await put(randomBytes(2800));
  const keys = { standard: key64(), ft: key64(), old: key64() };
  const entry = (stage: string, key: string, model: ArtifactRef) => ({ stage, version: 4, key, createdAt: '2026-01-01T00:00:00.000Z', output: { model } });
  await store.putRecord(`cache/standardTraining/${keys.standard}`, entry('standardTraining', keys.standard, backdoored));
  await store.putRecord(`cache/defense/${keys.ft}`, entry('defense', keys.ft, ftModel));
  await store.putRecord(`cache/standardTraining/${keys.old}`, entry('standardTraining', keys.old, oldModel));
  const cell = async (sweep: string, cellId: string, stages: Array<[string, string]>, purifiedModel: ArtifactRef) => {
    const report = await put(Buffer.from(JSON.stringify({ runId: `${sweep}--${cellId}`, metrics: { final: { acc: 70 } } })));
    await store.putRecord(`sweeps/${sweep}/cells/${cellId}`, {
      sweep,
      cellId,
      status: 'completed',
      config: {},
      stages: stages.map(([stage, cacheKey]) => ({ stage, seconds: 1, cacheKey })),
      report,
      purifiedModel,
    });
  };
  await store.putRecord('sweeps/base/spec', { spec: { name: 'base' }, cellIds: ['b1'] });
  await cell('base', 'b1', [['standardTraining', keys.standard]], backdoored);
  // an older protocol's cell: its record is still in the store, its spec no longer lists it
  await cell('base', 'old1', [['standardTraining', keys.old]], oldModel);
  await store.putRecord('sweeps/dep/spec', { spec: { name: 'dep' }, cellIds: ['b1', 'd2'] });
  await cell('dep', 'b1', [['standardTraining', keys.standard]], backdoored);
  await cell('dep', 'd2', [['standardTraining', keys.standard], ['defense', keys.ft]], ftModel);
  const dir = path.join(root, 'state');
  await fsp.mkdir(dir);
  return { root, store, dir, backdoored, ftModel, oldModel, keys };
}

const freshStore = async (root: string, name: string) => new FileArtifactStore(path.join(root, name));
const read = async (file: string) => decodeBundle(await fsp.readFile(file), file);
async function storeContents(store: FileArtifactStore): Promise<number> {
  let n = 0;
  for await (const _ of store.list()) n++;
  return n + (await store.listRecords('')).length;
}

test('superseded cell records, and what only they reach, stay out of bench state', async () => {
  const f = await fixture();
  const state = await collectBenchState(f.store, 'base');
  const keys = state.content.records.map((r) => r.key);
  assert.deepEqual(keys, [`cache/standardTraining/${f.keys.standard}`, 'sweeps/base/cells/b1', 'sweeps/base/spec']);
  const shas = new Set(state.content.artifacts.map((a) => a.sha256));
  assert.ok(!shas.has(f.oldModel.sha256), "the superseded cell's backdoored model");
  assert.ok(shas.has(f.backdoored.sha256));
});

test('a bundle exported against a base leaves out what the base carries, and imports only after it', async () => {
  const f = await fixture();
  const baseFile = path.join(f.dir, 'base.ntmlb');
  const depFile = path.join(f.dir, 'dep.ntmlb');
  await exportBenchState(f.store, 'base', baseFile);
  const bases = await readBases([baseFile], f.dir);
  const dep = await exportBenchState(f.store, 'dep', depFile, { bases });
  const depBundle = await read(depFile);
  const shas = depBundle.artifacts.map((a) => a.sha256);
  assert.ok(!shas.includes(f.backdoored.sha256), 'the shared backdoored model is left to the base');
  assert.ok(shas.includes(f.ftModel.sha256), "FT's model is the dependent's own");
  assert.ok(!depBundle.records.some((r) => r.key === `cache/standardTraining/${f.keys.standard}`), 'so is the shared cache entry');
  const standardRecord = (await read(baseFile)).manifest.records.find((r) => r.key === `cache/standardTraining/${f.keys.standard}`)!;
  assert.deepEqual(depBundle.manifest.selection.bases, [
    { bundle: 'base.ntmlb', sweep: 'base', artifacts: [f.backdoored.sha256], records: [{ key: standardRecord.key, sha256: standardRecord.sha256 }] },
  ]);
  assert.equal(dep.cells, 2);

  // a fresh store without the base: refused before anything is written, naming the base
  const lone = await freshStore(f.root, 'lone');
  await assert.rejects(importBundle(lone, depBundle), (e: unknown) => e instanceof BundleError && /relies on its base base\.ntmlb \(sweep base\)/.test(e.message) && /import base\.ntmlb first/.test(e.message));
  assert.equal(await storeContents(lone), 0, 'nothing was written');
  // base first, then the dependent: every record and artifact of dep's state is there
  await importBundle(lone, await read(baseFile));
  await importBundle(lone, depBundle);
  assert.ok(await lone.has(f.backdoored.sha256));
  assert.ok((await lone.getRecord('sweeps/dep/cells/d2')) !== undefined);
  // exported again from that store, against the same base: the same bytes
  const again = path.join(f.dir, 'again');
  await fsp.mkdir(again);
  await fsp.copyFile(baseFile, path.join(again, 'base.ntmlb'));
  const reexport = await exportBenchState(lone, 'dep', path.join(again, 'dep.ntmlb'), { bases: await readBases([path.join(again, 'base.ntmlb')], again) });
  assert.equal(reexport.sha256, dep.sha256);

  assert.deepEqual((await checkStateDir(f.dir)).problems, []);
  // the base exported against its dependent: refused, the bases would form a cycle
  await assert.rejects(
    exportBenchState(f.store, 'base', baseFile, { bases: await readBases([depFile], f.dir) }),
    (e: unknown) => e instanceof BundleBaseError && /cannot export base\.ntmlb against dep\.ntmlb: dep\.ntmlb relies on base\.ntmlb/.test(e.message),
  );
  await assert.rejects(readBases([path.join(again, 'base.ntmlb')], f.dir), /a base must lie in the folder/);

  // the base exported again without the shared model (records only): the check names the dependent
  await exportBenchState(f.store, 'base', baseFile, { keepStages: [] });
  const { problems } = await checkStateDir(f.dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0].bundle, 'dep.ntmlb');
  assert.match(problems[0].message, /dep\.ntmlb relies on 1 artifacts and 1 records that its base base\.ntmlb no longer carries \(first: artifact [0-9a-f]{64}\)/);
  // ... and exporting dep again from this store against the new base makes the set whole
  await exportBenchState(f.store, 'dep', depFile, { bases: await readBases([baseFile], f.dir) });
  assert.deepEqual((await checkStateDir(f.dir)).problems, []);
  assert.ok((await read(depFile)).artifacts.some((a) => a.sha256 === f.backdoored.sha256), 'dep carries the model itself now');
});

test('--keep-stages none keeps the cell records and leaves out purified models; a fresh store finds the cells and exports them again', async () => {
  const f = await fixture();
  const file = path.join(f.dir, 'dep.ntmlb');
  const state = await exportBenchState(f.store, 'dep', file, { keepStages: [] });
  const bundle = await read(file);
  assert.deepEqual(bundle.records.map((r) => r.key), ['sweeps/dep/cells/b1', 'sweeps/dep/cells/d2', 'sweeps/dep/spec']);
  assert.deepEqual(
    state.leftOutModels.map((m) => m.sha256).sort(),
    [f.backdoored.sha256, f.ftModel.sha256].sort(),
  );
  assert.deepEqual(bundle.manifest.selection.keepStages, []);
  assert.equal(bundle.artifacts.length, 2, 'the two reports alone');
  await assert.rejects(collectBenchState(f.store, 'dep', { keepStages: ['splitplan'] }), /--keep-stages: unknown stage "splitplan"/);

  const fresh = await freshStore(f.root, 'fresh');
  await importBundle(fresh, bundle);
  const d2 = await fresh.getRecord<{ status: string; purifiedModel: ArtifactRef }>('sweeps/dep/cells/d2');
  assert.equal(d2?.status, 'completed');
  assert.equal(await fresh.has(d2!.purifiedModel.sha256), false, 'its purified model is not there');
  const again = await exportBenchState(fresh, 'dep', path.join(f.root, 'again.ntmlb'), { keepStages: [] });
  assert.equal(again.sha256, state.sha256, 'a later sitting on the fresh store exports the same bytes');
  // without the policy's list, such a bundle's dangling references are refused
  const { leftOutModels: _, ...selection } = bundle.manifest.selection;
  await assert.rejects(importBundle(await freshStore(f.root, 'strict'), { ...bundle, manifest: { ...bundle.manifest, selection } }), /references artifact .* neither in the bundle nor in the store/);
});

test("a store that imported bench state exports the final checkpoints of the entries the bundle left out again", async () => {
  const f = await fixture();
  // Input-Aware's attacker run as a fresh machine holds it after an import: the cell names the
  // entry, the entry itself was left out (its output carries data sets), its final checkpoint came in its place
  const iaKey = key64();
  // a real checkpoint, already cut (finished): the export passes it on as it is (bench/finishedCheckpoints.ts)
  const checkpoint = await f.store.put(
    encodeCheckpoint({ epoch: 33, rngState: [1, 2, 3, 4], arrays: { mask: [{ shape: [2], values: Float32Array.of(1, 2) }] }, extra: {}, finished: true }),
  );
  const list = [{ epoch: 33, checkpoint: { ...checkpoint, uri: `s3://ntml/ntml/artifacts/${checkpoint.sha256}` }, workflowId: 'sweep-base--b1' }];
  await f.store.putRecord(`checkpoints/stage/${iaKey}/inputaware`, list);
  const b1 = await f.store.getRecord<{ stages: unknown[] }>('sweeps/base/cells/b1');
  await f.store.putRecord('sweeps/base/cells/b1', { ...b1, stages: [...b1!.stages, { stage: 'standardTraining', seconds: 1, cacheKey: iaKey }] });
  const state = await collectBenchState(f.store, 'base');
  assert.deepEqual(state.leftOutCheckpoints, [
    { record: `checkpoints/stage/${iaKey}/inputaware`, entry: `cache/standardTraining/${iaKey}`, epoch: 33, sha256: checkpoint.sha256, bytes: checkpoint.bytes },
  ]);
  assert.ok(state.content.artifacts.some((a) => a.sha256 === checkpoint.sha256));
});

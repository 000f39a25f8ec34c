/**
 * Bundles (`ntml store export|import`) on real stores: a filesystem store in a temporary folder
 * and S3 on the test run's versitygw (a fresh prefix per store). A sweep's state is laid out as
 * the workflows write it (spec, cell records naming their stage-cache keys, cache entries, JSON
 * artifacts referencing others); the bundle is exported, imported, re-imported, tampered with and
 * truncated, and the import must refuse bad bundles without writing anything.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';
import {
  BundleError,
  FileArtifactStore,
  collectBundle,
  decodeBundle,
  encodeBundle,
  importBundle,
  openStore,
  parseS3Location,
  s3OptionsFromEnv,
  sha256Hex,
  sweepRecordKeys,
  type ArtifactRef,
  type ArtifactStore,
} from '../store/index';
import { storeExport, storeImport } from '../cli/storeBundle';
import { UserError } from '../cli/errors';
import { captureIo, withStoreEnv } from './support/cliIo';

const rand = (n: number) => new Uint8Array(randomBytes(n));
const json = (v: unknown) => Buffer.from(JSON.stringify(v));
const key64 = () => randomBytes(32).toString('hex');

async function fsStore(): Promise<FileArtifactStore> {
  return new FileArtifactStore(await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-')));
}

function s3Store(): ArtifactStore {
  const location = process.env.NTML_STORE;
  assert.ok(location?.startsWith('s3://') && process.env.NTML_S3_ENDPOINT, 'run through test/support/runTests.js: it starts the S3 server');
  const { bucket } = parseS3Location(location!);
  return openStore(`s3://${bucket}/bundle-test-${key64().slice(0, 12)}`, { s3: s3OptionsFromEnv() });
}

async function contents(store: ArtifactStore): Promise<{ artifacts: string[]; records: string[] }> {
  const artifacts: string[] = [];
  for await (const o of store.list()) artifacts.push(o.sha256);
  return { artifacts: artifacts.sort(), records: await store.listRecords('') };
}

interface SweepFixture {
  store: FileArtifactStore;
  sweep: string;
  /** artifacts of the standard-training entry (the backdoored model) */
  model: ArtifactRef;
  /** the prepareData entry's poisoned training set */
  train: ArtifactRef;
  /** referenced only from inside the report JSON artifact */
  weights: ArtifactRef;
  /** named only by a bare digest field (an Input-Aware run's generatorsSha256) */
  generators: ArtifactRef;
  /** in the store, referenced by no record of the sweep */
  unrelated: ArtifactRef;
  keys: { prepareData: string; standardTraining: string; defense: string };
}

/** A two-cell sweep as the sweep and purify workflows store it. */
async function sweepFixture(): Promise<SweepFixture> {
  const store = await fsStore();
  const sweep = 'bundle-demo';
  const train = await store.put(rand(4000));
  const model = await store.put(rand(3000));
  const weights = await store.put(rand(1500));
  const finalModel = await store.put(json({ format: 'layers-model', weights }));
  const generators = await store.put(rand(700));
  const defended = await store.put(rand(2000));
  const unrelated = await store.put(rand(900));
  const keys = { prepareData: key64(), standardTraining: key64(), defense: key64() };
  const entry = (stage: string, key: string, output: unknown) => ({ stage, version: 1, key, createdAt: '2026-01-01T00:00:00.000Z', output });
  await store.putRecord(`cache/prepareData/${keys.prepareData}`, entry('prepareData', keys.prepareData, { train, summary: { trainSize: 400 } }));
  await store.putRecord(
    `cache/standardTraining/${keys.standardTraining}`,
    entry('standardTraining', keys.standardTraining, { model, history: [], triggerParameters: { generators: generators.uri, generatorsSha256: generators.sha256 } }),
  );
  await store.putRecord(`cache/defense/${keys.defense}`, entry('defense', keys.defense, { model: defended }));
  // an entry of another sweep: never exported with this one
  await store.putRecord(`cache/standardTraining/${key64()}`, entry('standardTraining', 'other', { model: unrelated }));
  const report = await store.put(json({ models: { standard: model, final: finalModel } }));
  const cell = (cellId: string, stages: unknown[], purifiedModel: ArtifactRef) => ({
    sweep,
    cellId,
    status: 'completed',
    stages,
    report: { report, markdown: report },
    purifiedModel,
  });
  await store.putRecord(`sweeps/${sweep}/spec`, { spec: { name: sweep }, cellIds: ['c1', 'c2', 'c3'] });
  await store.putRecord(
    `sweeps/${sweep}/cells/c1`,
    cell('c1', [
      { stage: 'prepareData', seconds: 1, cacheKey: keys.prepareData },
      { stage: 'standardTraining', seconds: 2, cacheKey: keys.standardTraining },
      { stage: 'evaluation', seconds: 1 },
    ], finalModel),
  );
  await store.putRecord(
    `sweeps/${sweep}/cells/c2`,
    cell('c2', [
      { stage: 'prepareData', seconds: 1, cached: true, cacheKey: keys.prepareData },
      { stage: 'standardTraining', seconds: 2, cached: true, cacheKey: keys.standardTraining },
      { stage: 'defense (FT)', seconds: 3, cacheKey: keys.defense },
      { stage: 'evaluation', seconds: 1 },
    ], defended),
  );
  await store.putRecord(`sweeps/${sweep}/cells/c3`, { sweep, cellId: 'c3', status: 'failed', error: 'boom' });
  return { store, sweep, model, train, weights, generators, unrelated, keys };
}

async function bundleOf(f: SweepFixture, stages?: string[]): Promise<Buffer> {
  const selection = await sweepRecordKeys(f.store, f.sweep, stages ? new Set(stages) : undefined);
  return encodeBundle(await collectBundle(f.store, selection.recordKeys, { sweep: f.sweep, stages: stages ?? 'all' }));
}

/** Rewrites the bundle's body (as a tamperer who re-gzips would) at `offset` from the start of an entry. */
function tamperBody(file: Buffer, at: (body: Buffer, manifestEnd: number) => number): Buffer {
  const body = Buffer.from(gunzipSync(file));
  const manifestEnd = 16 + body.readUInt32BE(12);
  const i = at(body, manifestEnd);
  body[i] ^= 0x01;
  return gzipSync(body);
}

const capture = () => { const c = captureIo(); return { io: c.io, out: c.printed }; };

describe('store bundles', () => {
  it('exports exactly the sweep: spec, completed cells, their cache entries and every artifact they reach', async () => {
    const f = await sweepFixture();
    const content = await decodeBundle(await bundleOf(f), 'all.ntmlb');
    assert.deepEqual(
      content.manifest.records.map((r) => r.key),
      [
        `cache/defense/${f.keys.defense}`,
        `cache/prepareData/${f.keys.prepareData}`,
        `cache/standardTraining/${f.keys.standardTraining}`,
        `sweeps/${f.sweep}/cells/c1`,
        `sweeps/${f.sweep}/cells/c2`,
        `sweeps/${f.sweep}/spec`,
      ],
    );
    const shas = new Set(content.manifest.artifacts.map((a) => a.sha256));
    for (const ref of [f.model, f.train, f.weights, f.generators]) assert.ok(shas.has(ref.sha256), `artifact ${ref.sha256} is in the bundle`);
    assert.ok(!shas.has(f.unrelated.sha256), 'an artifact of another sweep stays out');
    // train, backdoored model, final model and its weights, generators, defended model, report
    assert.equal(shas.size, 7);
  });

  it('selects stages: standardTraining alone carries the model and its generators, not the data or the cells', async () => {
    const f = await sweepFixture();
    const content = await decodeBundle(await bundleOf(f, ['standardTraining']), 'std.ntmlb');
    assert.deepEqual(content.manifest.records.map((r) => r.key), [`cache/standardTraining/${f.keys.standardTraining}`]);
    assert.deepEqual(content.manifest.artifacts.map((a) => a.sha256).sort(), [f.model.sha256, f.generators.sha256].sort());
  });

  it('is deterministic: the same state gives the same bytes, also re-exported from the store it was imported into', async () => {
    const f = await sweepFixture();
    const a = await bundleOf(f);
    const b = await bundleOf(f);
    assert.equal(sha256Hex(a), sha256Hex(b));
    const copy = await fsStore();
    await importBundle(copy, await decodeBundle(a, 'a'));
    const again = encodeBundle(await collectBundle(copy, (await sweepRecordKeys(copy, f.sweep)).recordKeys, { sweep: f.sweep, stages: 'all' }));
    assert.equal(sha256Hex(again), sha256Hex(a));
  });

  for (const [name, target] of [
    ['a filesystem store', fsStore],
    ['an S3 store', async () => s3Store()],
  ] as const) {
    it(`imports into ${name}, and a second import skips everything`, async () => {
      const f = await sweepFixture();
      const file = await bundleOf(f);
      const content = await decodeBundle(file, 'x');
      const store = await target();
      const first = await importBundle(store, content);
      assert.equal(first.artifactsWritten, content.artifacts.length);
      assert.equal(first.recordsWritten, content.records.length);
      assert.equal(first.artifactsSkipped + first.recordsSkipped, 0);
      for (const a of content.manifest.artifacts) assert.ok(await store.verify({ uri: '', ...a }), `artifact ${a.sha256} verifies in the target`);
      assert.deepEqual(await store.getRecord(`sweeps/${f.sweep}/cells/c2`), await f.store.getRecord(`sweeps/${f.sweep}/cells/c2`));
      const second = await importBundle(store, content);
      assert.deepEqual(
        second,
        { artifactsWritten: 0, artifactsSkipped: content.artifacts.length, recordsWritten: 0, recordsSkipped: content.records.length, recordsKept: [], checkpointsAdvanced: [], bytesWritten: 0 },
      );
    });
  }

  it('keeps a record the target holds with other content, and says so', async () => {
    const f = await sweepFixture();
    const store = await fsStore();
    const mine = { sweep: f.sweep, cellId: 'c1', status: 'completed', stages: [], note: 'computed here' };
    await store.putRecord(`sweeps/${f.sweep}/cells/c1`, mine);
    const r = await importBundle(store, await decodeBundle(await bundleOf(f), 'x'));
    assert.deepEqual(r.recordsKept, [`sweeps/${f.sweep}/cells/c1`]);
    assert.deepEqual(await store.getRecord(`sweeps/${f.sweep}/cells/c1`), mine);
  });

  it('refuses a bundle with one tampered artifact byte, naming the artifact, and writes nothing (CLI)', async () => {
    const f = await sweepFixture();
    const file = await bundleOf(f);
    const manifest = (await decodeBundle(file, 'x')).manifest;
    const recordBytes = manifest.records.reduce((n, r) => n + r.bytes, 0);
    const victim = manifest.artifacts[2];
    const before = manifest.artifacts.slice(0, 2).reduce((n, a) => n + a.bytes, 0);
    const tampered = tamperBody(file, (_b, end) => end + recordBytes + before + Math.floor(victim.bytes / 2));
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-cli-'));
    const bundlePath = path.join(dir, 'tampered.ntmlb');
    await fsp.writeFile(bundlePath, tampered);
    const target = await fsStore();
    const { io } = capture();
    await assert.rejects(
      withStoreEnv(target.root, () => storeImport({ options: {}, positionals: [bundlePath], help: false }, io)),
      (err: Error) => err instanceof UserError && err.message.includes(`artifact ${victim.sha256} does not match its sha256`) && /nothing was written/.test(err.message),
    );
    assert.deepEqual(await contents(target), { artifacts: [], records: [] });
  });

  it('refuses a tampered record, naming its key', async () => {
    const f = await sweepFixture();
    const file = await bundleOf(f);
    const first = (await decodeBundle(file, 'x')).manifest.records[0];
    await assert.rejects(
      decodeBundle(tamperBody(file, (_b, end) => end + 3), 'rec.ntmlb'),
      (err: Error) => err instanceof BundleError && err.entry === `record ${first.key}` && err.message.includes(`record ${first.key} does not match its sha256`),
    );
  });

  it('refuses a damaged compressed stream and a truncated file, naming the cut entry, and writes nothing', async () => {
    const f = await sweepFixture();
    const file = await bundleOf(f);
    const flipped = Buffer.from(file);
    flipped[Math.floor(file.length * 0.7)] ^= 0xff;
    await assert.rejects(decodeBundle(flipped, 'flipped.ntmlb'), (err: Error) => err instanceof BundleError && /flipped\.ntmlb/.test(err.message));

    const cut = file.subarray(0, Math.floor(file.length * 0.6));
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-cut-'));
    const bundlePath = path.join(dir, 'cut.ntmlb');
    await fsp.writeFile(bundlePath, cut);
    const target = await fsStore();
    const { io } = capture();
    await assert.rejects(
      withStoreEnv(target.root, () => storeImport({ options: {}, positionals: [bundlePath], help: false }, io)),
      (err: Error) => err instanceof UserError && /(artifact [0-9a-f]{64}|record \S+) is truncated: \d+ of \d+ bytes present/.test(err.message),
    );
    assert.deepEqual(await contents(target), { artifacts: [], records: [] });
  });

  it('refuses a bundle whose records reference an artifact it lacks and the target does not hold', async () => {
    const f = await sweepFixture();
    const content = await decodeBundle(await bundleOf(f, ['standardTraining']), 'x');
    const withoutModel = {
      manifest: { ...content.manifest, artifacts: content.manifest.artifacts.filter((a) => a.sha256 !== f.model.sha256) },
      records: content.records,
      artifacts: content.artifacts.filter((a) => a.sha256 !== f.model.sha256),
    };
    const target = await fsStore();
    await assert.rejects(
      importBundle(target, await decodeBundle(encodeBundle(withoutModel), 'partial.ntmlb')),
      (err: Error) => err instanceof BundleError && err.message.includes(f.model.sha256) && /nothing was written/.test(err.message),
    );
    assert.deepEqual(await contents(target), { artifacts: [], records: [] });
    // a target that already holds the model accepts it
    await target.put(await f.store.get(f.model));
    const r = await importBundle(target, await decodeBundle(encodeBundle(withoutModel), 'partial.ntmlb'));
    assert.equal(r.recordsWritten, 1);
  });

  it('the export command writes the file and refuses an unknown sweep or stage', async () => {
    const f = await sweepFixture();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-out-'));
    const out = path.join(dir, 'sweep.ntmlb');
    const { io, out: printed } = capture();
    const code = await withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out }, positionals: [], help: false }, io));
    assert.equal(code, 0);
    assert.match(printed(), /6 records \(2 cells; stage-cache entries: /);
    const written = await fsp.readFile(out);
    assert.equal(sha256Hex(written), sha256Hex(await bundleOf(f)));
    // --force lets a bad request through to its own error, and the file stays as it was
    await assert.rejects(
      withStoreEnv(f.store.root, () => storeExport({ options: { sweep: 'nope', out, force: true }, positionals: [], help: false }, io)),
      (err: Error) => err instanceof UserError && /no sweep named "nope"/.test(err.message),
    );
    await assert.rejects(
      withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out, stages: 'cells,poisonedData', force: true }, positionals: [], help: false }, io)),
      /unknown stage "poisonedData"/,
    );
    assert.deepEqual(await fsp.readFile(out), written);
  });

  it('the export command keeps an existing file unless --force, naming it', async () => {
    const f = await sweepFixture();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-out-'));
    const out = path.join(dir, 'sweep.ntmlb');
    const { io } = capture();
    const earlier = Buffer.from('an earlier bundle, maybe the only copy of a sweep');
    await fsp.writeFile(out, earlier);
    await assert.rejects(
      withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out }, positionals: [], help: false }, io)),
      (err: Error) => err instanceof UserError && err.message === `${out} exists; pass --force to replace it` && (err as UserError).exitCode === 2,
    );
    assert.deepEqual(await fsp.readFile(out), earlier, 'the existing file is untouched');
    assert.deepEqual(await fsp.readdir(dir), ['sweep.ntmlb'], 'nothing else written');
    assert.equal(await withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out, force: true }, positionals: [], help: false }, io)), 0);
    assert.equal(sha256Hex(await fsp.readFile(out)), sha256Hex(await bundleOf(f)), '--force replaces it with the export');
  });

  it('--base leaves out what a base bundle carries; the dependent imports only after it', async () => {
    const f = await sweepFixture();
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bundle-base-'));
    const base = path.join(dir, 'models.ntmlb');
    const dep = path.join(dir, 'all.ntmlb');
    const { io, printed } = captureIo();
    await withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out: base, stages: 'standardTraining' }, positionals: [], help: false }, io));
    await withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out: dep, base }, positionals: [], help: false }, io));
    assert.match(printed(), /relies on models\.ntmlb: \d+ artifacts and 1 records it carries are left out \(import models\.ntmlb first\)/);
    const bundle = await decodeBundle(await fsp.readFile(dep), dep);
    assert.ok(!bundle.artifacts.some((a) => a.sha256 === f.model.sha256), 'the backdoored model is left to the base');
    assert.ok(!bundle.records.some((r) => r.key.startsWith('cache/standardTraining/')));
    const target = await fsStore();
    await assert.rejects(
      withStoreEnv(target.root, () => storeImport({ options: {}, positionals: [dep], help: false }, io)),
      (err: Error) => err instanceof UserError && /relies on its base models\.ntmlb \(sweep bundle-demo\).*import models\.ntmlb first; nothing was written/.test(err.message),
    );
    assert.deepEqual(await contents(target), { artifacts: [], records: [] });
    await withStoreEnv(target.root, () => storeImport({ options: {}, positionals: [base], help: false }, io));
    await withStoreEnv(target.root, () => storeImport({ options: {}, positionals: [dep], help: false }, io));
    assert.deepEqual(await contents(target), await contents(await (async () => {
      // what importing the whole sweep in one bundle gives
      const whole = path.join(dir, 'whole.ntmlb');
      await withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out: whole }, positionals: [], help: false }, io));
      const t = await fsStore();
      await withStoreEnv(t.root, () => storeImport({ options: {}, positionals: [whole], help: false }, io));
      return t;
    })()));
    // the base exported again (--force) against its dependent: refused
    await assert.rejects(
      withStoreEnv(f.store.root, () => storeExport({ options: { sweep: f.sweep, out: base, base: dep, force: true }, positionals: [], help: false }, io)),
      (err: Error) => err instanceof UserError && /all\.ntmlb relies on models\.ntmlb, so the bases would form a cycle/.test(err.message),
    );
  });

  it('refuses to guess the cache entries of cells recorded without stage keys', async () => {
    const f = await sweepFixture();
    await f.store.putRecord(`sweeps/${f.sweep}/cells/old`, { sweep: f.sweep, cellId: 'old', status: 'completed', stages: [{ stage: 'prepareData', seconds: 1, cached: true }] });
    await assert.rejects(sweepRecordKeys(f.store, f.sweep), /cell old .* names no stage-cache keys/);
    const cellsOnly = await sweepRecordKeys(f.store, f.sweep, new Set(['cells']));
    assert.ok(cellsOnly.recordKeys.includes(`sweeps/${f.sweep}/cells/old`));
  });
});

/**
 * The benchmark's own state (bench/run-cpu.sh, bench/stateBundle.ts, bench/state/README.md).
 *
 * The script itself, on a ci-tier spec of the test's own, twice, each sitting on a fresh embedded
 * stack (its own Temporal and S3, as two machines would have): the first runs the cells and
 * exports bench state without data sets; the second imports it, finds every cell finished, and
 * exports the same bytes again. Then the exporter's filters on a hand-made store: an entry whose
 * output carries data sets (Input-Aware's attacker run) is left out, its newest verifying
 * checkpoint exported in its place, and a record naming a file:// location is refused.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import assert from 'node:assert/strict';
import { promises as fsp, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { DATASET_MAGIC } from '../core/data/codec';
import { decodeCheckpoint, encodeCheckpoint } from '../core/train/checkpoint';
import { decodeBundle, FileArtifactStore, type ArtifactRef } from '../store/index';
import { BenchStateError, collectBenchState } from '../bench/stateBundle';
import { benchSitting, tinyBenchSpec } from './support/benchSitting';

/** bench/run-cpu.sh with its folders moved into `dir` and a stack of its own in `stackDir`. */
const sitting = (dir: string, stackDir: string) => benchSitting(dir, stackDir, ['tiny-state']);

const SPEC = tinyBenchSpec('tiny-state', '[{ name: none }, { name: ft, steps: 10, rounds: 2 }]');

test('run-cpu.sh: a sitting exports state without data; a sitting on a fresh stack imports it, reuses every cell and exports the same bytes', { timeout: 900_000 }, async () => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bench-state-'));
  await fsp.mkdir(path.join(dir, 'specs'));
  await fsp.writeFile(path.join(dir, 'specs', 'tiny-state.yaml'), SPEC);
  const state = path.join(dir, 'state', 'tiny-state.ntmlb');

  const first = await sitting(dir, path.join(dir, 'stack-a'));
  assert.equal(first.code, 0, first.out);
  assert.match(first.out, /2\/2 cells completed \(0 found finished\)/);
  assert.match(first.out, /MiB of the 60\.0 MiB budget/);
  const bytes = readFileSync(state);
  const bundle = await decodeBundle(bytes, state);
  const keys = bundle.records.map((r) => r.key);
  assert.equal(keys.filter((k) => k.startsWith('cache/prepareData/')).length, 0, 'prepareData (the data sets) stays out');
  assert.equal(keys.filter((k) => k.startsWith('sweeps/tiny-state/cells/')).length, 2, keys.join('\n'));
  assert.ok(keys.some((k) => k.startsWith('cache/standardTraining/')), 'the backdoored model is kept');
  assert.ok(keys.some((k) => k.startsWith('cache/defense/')), "FT's trained model is kept");
  const magic = Buffer.from(DATASET_MAGIC, 'latin1');
  assert.ok(bundle.artifacts.every((a) => !Buffer.from(a.data).subarray(0, magic.length).equals(magic)), 'no data set in the bundle');
  assert.ok(bundle.records.every((r) => !Buffer.from(r.data).includes('file://')), 'no file:// location in a record');
  const report = readFileSync(path.join(dir, 'results', 'tiny-state', 'report.md'), 'utf8');
  assert.match(report, /tiny-state/);

  // another machine: nothing but the committed state and results
  await fsp.rm(path.join(dir, 'results'), { recursive: true });
  const second = await sitting(dir, path.join(dir, 'stack-b'));
  assert.equal(second.code, 0, second.out);
  assert.match(second.out, /importing .*tiny-state\.ntmlb/);
  assert.match(second.out, /2\/2 cells completed \(2 found finished\)/);
  assert.ok(readFileSync(state).equals(bytes), 'the second sitting exported other bytes from the same state');
  assert.equal(readFileSync(path.join(dir, 'results', 'tiny-state', 'report.md'), 'utf8'), report, 'the regenerated report differs');
});

test('the exporter leaves out entries whose output carries data sets (their final checkpoint in their place), and refuses file:// locations', async () => {
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-bench-filter-'));
  const store = new FileArtifactStore(root);
  // refs named as the S3 store names them (the store finds objects by sha256 alone)
  const put = async (data: Uint8Array): Promise<ArtifactRef> => {
    const r = await store.put(data);
    return { ...r, uri: `s3://ntml/ntml/artifacts/${r.sha256}` };
  };
  const dataset = await put(Buffer.concat([Buffer.from(DATASET_MAGIC, 'latin1'), Buffer.alloc(64, 7)]));
  const model = await put(Buffer.from('weights of f_std'));
  const iaModel = await put(Buffer.from('weights of the attacker-trained f_std'));
  const report = await put(Buffer.from(JSON.stringify({ models: { standard: iaModel, final: iaModel } })));
  const keys = { plain: 'a'.repeat(64), ia: 'b'.repeat(64), data: 'c'.repeat(64) };
  await store.putRecord(`cache/prepareData/${keys.data}`, { stage: 'prepareData', version: 5, output: { train: dataset } });
  await store.putRecord(`cache/standardTraining/${keys.plain}`, { stage: 'standardTraining', version: 4, output: { model } });
  await store.putRecord(`cache/standardTraining/${keys.ia}`, { stage: 'standardTraining', version: 4, output: { model: iaModel, data: { train: dataset } } });
  const cell = (id: string, key: string) => ({
    sweep: 's',
    cellId: id,
    status: 'completed',
    config: {},
    report,
    stages: [
      { stage: 'prepareData', seconds: 1, cacheKey: keys.data },
      { stage: 'standardTraining', seconds: 1, cacheKey: key },
    ],
  });
  await store.putRecord('sweeps/s/spec', { spec: { name: 's' }, cellIds: ['c1', 'c2'] });
  await store.putRecord('sweeps/s/cells/c1', cell('c1', keys.plain));
  await store.putRecord('sweeps/s/cells/c2', cell('c2', keys.ia));

  // the checkpoint lists both runs left in the store; the attacker run's newest (epoch 4) does not verify
  // (generators and an optimiser's buffers; no classifier group here, so nothing is referenced)
  const iadCheckpoint = (epoch: number) =>
    encodeCheckpoint({
      epoch,
      rngState: [epoch, 2, 3, 4],
      arrays: { mask: [{ shape: [2], values: Float32Array.of(epoch, 1) }], 'optimizer:pattern': [{ shape: [3], values: new Float32Array(3) }] },
      extra: { phase: 'joint' },
    });
  const checkpoints = await Promise.all([1, 2, 3].map((e) => put(iadCheckpoint(e))));
  const lost = { uri: 's3://ntml/ntml/artifacts/lost', sha256: 'd'.repeat(64), bytes: 9 };
  const iaList = [...checkpoints.map((checkpoint, i) => ({ epoch: i + 1, checkpoint, workflowId: 'sweep-s--c2' })), { epoch: 4, checkpoint: lost, workflowId: 'sweep-s--c2' }];
  await store.putRecord(`checkpoints/stage/${keys.ia}/inputaware`, iaList);
  const plainCheckpoint = await put(Buffer.from('standard checkpoint'));
  await store.putRecord(`checkpoints/stage/${keys.plain}/standard`, [{ epoch: 1, checkpoint: plainCheckpoint, workflowId: 'sweep-s--c1' }]);

  const state = await collectBenchState(store, 's');
  assert.deepEqual(state.leftOut, [`cache/standardTraining/${keys.ia}`]);
  const finalRecord = `checkpoints/stage/${keys.ia}/inputaware`;
  assert.deepEqual(state.content.records.map((r) => r.key), [`cache/standardTraining/${keys.plain}`, finalRecord, 'sweeps/s/cells/c1', 'sweeps/s/cells/c2', 'sweeps/s/spec']);
  const shas = state.content.artifacts.map((a) => a.sha256);
  assert.ok(shas.includes(iaModel.sha256), "the attacker-trained model still comes with the cells' reports");
  assert.ok(!shas.includes(dataset.sha256), 'no data set');
  // in the left-out entry's place: its newest verifying checkpoint alone, cut to what materialising
  // the run's outputs needs (no optimiser buffers), listed in the manifest
  const [cut] = state.leftOutCheckpoints;
  const carried = state.content.artifacts.find((a) => a.sha256 === cut.sha256)!;
  const final = { record: finalRecord, entry: `cache/standardTraining/${keys.ia}`, epoch: 3, sha256: carried.sha256, bytes: carried.data.byteLength };
  assert.deepEqual(state.leftOutCheckpoints, [final]);
  assert.deepEqual(state.content.manifest.selection.leftOutCheckpoints, [final]);
  const decoded = decodeCheckpoint(carried.data, 'cut');
  assert.deepEqual([decoded.epoch, decoded.finished, Object.keys(decoded.arrays), decoded.rngState], [3, true, ['mask'], [3, 2, 3, 4]]);
  assert.deepEqual(Array.from(decoded.arrays.mask[0].values), [3, 1]);
  const checkpointRef = { ...checkpoints[2], uri: checkpoints[2].uri.replace(checkpoints[2].sha256, cut.sha256), sha256: cut.sha256, bytes: cut.bytes };
  assert.deepEqual(JSON.parse(Buffer.from(state.content.records.find((r) => r.key === finalRecord)!.data).toString('utf8')), [{ ...iaList[2], checkpoint: checkpointRef, finished: true }]);
  assert.ok(!shas.includes(checkpoints[2].sha256), 'not the full checkpoint');
  assert.ok(!shas.includes(checkpoints[0].sha256) && !shas.includes(checkpoints[1].sha256), 'not the earlier epochs');
  assert.ok(!shas.includes(plainCheckpoint.sha256), "a stage whose entry is in the bundle brings no checkpoint");

  // a data set reached through a JSON artifact is refused, naming it
  const sneaky = await put(Buffer.from(JSON.stringify({ models: { standard: model, final: model }, extra: dataset })));
  await store.putRecord('sweeps/s/cells/c1', { ...cell('c1', keys.plain), report: sneaky });
  await assert.rejects(collectBenchState(store, 's'), (e: unknown) => e instanceof BenchStateError && e.message.includes(`artifact ${dataset.sha256}`) && /is a data set/.test(e.message));

  // a filesystem store's location in a record is refused
  await store.putRecord('sweeps/s/cells/c1', { ...cell('c1', keys.plain), purifiedModel: { ...model, uri: `file://${root}/artifacts/x` } });
  await assert.rejects(collectBenchState(store, 's'), (e: unknown) => e instanceof BenchStateError && /record sweeps\/s\/cells\/c1 names a file:\/\/ location/.test(e.message));
});

/**
 * Stages in progress in a bundle (`ntml store export --in-progress`, store/inProgress.ts), on
 * stores laid out as the checkpointing activities write them: which checkpoint lists belong to
 * the sweep's unfinished cells, that only the newest verifying checkpoint of each goes in, that a
 * finished stage's does not, and how an import verifies, skips and advances them.
 * The real-stack resume from such a bundle is test/storeBundle.inProgress.e2e.test.ts.
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
  FileArtifactStore,
  advanceCheckpointList,
  checkpointListHolds,
  decodeBundle,
  importBundle,
  openStore,
  parseS3Location,
  s3OptionsFromEnv,
  type ArtifactRef,
  type ArtifactStore,
} from '../store/index';
import { collectBenchState } from '../bench/stateBundle';
import { storeExport, storeImport } from '../cli/storeBundle';
import { UserError } from '../cli/errors';
import { captureIo, withStoreEnv } from './support/cliIo';

const key64 = () => randomBytes(32).toString('hex');
const rand = (n: number) => new Uint8Array(randomBytes(n));

async function fsStore(): Promise<FileArtifactStore> {
  return new FileArtifactStore(await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-inprogress-')));
}

const io = captureIo;

async function contents(store: ArtifactStore): Promise<{ artifacts: string[]; records: string[] }> {
  const artifacts: string[] = [];
  for await (const o of store.list()) artifacts.push(o.sha256);
  return { artifacts: artifacts.sort(), records: await store.listRecords('') };
}

interface Fixture {
  store: FileArtifactStore;
  sweep: string;
  /** c2's standard training, in progress: epochs 1 and 2 checkpointed */
  running: { key: string; epoch1: ArtifactRef; epoch2: ArtifactRef };
  /** c3's teacher phase: its newest checkpoint was corrupted in the store, epoch 1 still verifies */
  damaged: { key: string; epoch1: ArtifactRef; epoch2: ArtifactRef };
  /** c3's checkpoints of a computation whose cache entry was stored since */
  finished: string;
  /** a completed cell's and another sweep's checkpoints */
  others: string[];
}

/**
 * Sweep `s` of cells c1 (completed), c2 and c3 (interrupted), run as workflow `sweep-s`, whose
 * children are `sweep-s--<cell id>`.
 */
async function fixture(): Promise<Fixture> {
  const store = await fsStore();
  const sweep = 's';
  const owner = (cell: string) => `sweep-${sweep}--${cell}`;
  const list = async (key: string, cell: string, epochs: number[]) => {
    const refs = [];
    for (const epoch of epochs) refs.push({ epoch, checkpoint: await store.put(rand(1000 + epoch)), workflowId: owner(cell) });
    await store.putRecord(key, refs);
    return refs.map((r) => r.checkpoint);
  };
  const model = await store.put(rand(500));
  const doneKey = key64();
  await store.putRecord(`cache/standardTraining/${doneKey}`, { stage: 'standardTraining', version: 1, key: doneKey, createdAt: 'x', output: { model } });
  await store.putRecord(`sweeps/${sweep}/spec`, { spec: { name: sweep }, cellIds: ['c1', 'c2', 'c3'] });
  await store.putRecord(`sweeps/${sweep}/cells/c1`, {
    sweep,
    cellId: 'c1',
    status: 'completed',
    stages: [{ stage: 'standardTraining', seconds: 1, cacheKey: doneKey }],
    purifiedModel: model,
  });

  const runningKey = `checkpoints/stage/${key64()}/standard`;
  const [r1, r2] = await list(runningKey, 'c2', [1, 2]);
  const damagedKey = `checkpoints/stage/${key64()}/teacher`;
  const [d1, d2] = await list(damagedKey, 'c3', [1, 2]);
  await fsp.writeFile(store.objectPath(d2.sha256), rand(d2.bytes)); // bit rot
  assert.equal(await store.verify(d2), false, 'the fixture damaged the epoch-2 checkpoint');
  const finished = `checkpoints/stage/${doneKey}/standard`;
  await list(finished, 'c3', [1, 2]);
  const ofCompleted = `checkpoints/stage/${key64()}/student`;
  await list(ofCompleted, 'c1', [1]);
  const ofOther = `checkpoints/stage/${key64()}/standard`;
  await store.putRecord(ofOther, [{ epoch: 3, checkpoint: await store.put(rand(900)), workflowId: 'sweep-other--c9' }]);
  const legacy = `checkpoints/stage/${key64()}/standard`;
  await store.putRecord(legacy, [{ epoch: 1, checkpoint: await store.put(rand(800)) }]); // written before entries named their workflow
  return {
    store,
    sweep,
    running: { key: runningKey, epoch1: r1, epoch2: r2 },
    damaged: { key: damagedKey, epoch1: d1, epoch2: d2 },
    finished,
    others: [ofCompleted, ofOther, legacy],
  };
}

async function exportTo(f: Fixture, inProgress: boolean): Promise<{ file: string; printed: string }> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ntml-inprogress-out-'));
  const file = path.join(dir, 'sweep.ntmlb');
  const { io: out, printed } = io();
  const options: Record<string, string | true> = { sweep: f.sweep, out: file, ...(inProgress ? { 'in-progress': true } : {}) };
  assert.equal(await withStoreEnv(f.store.root, () => storeExport({ options, positionals: [], help: false }, out)), 0);
  return { file, printed: printed() };
}

describe('stages in progress in a bundle', () => {
  it("carries the learned trigger an unfinished cell made (its trigger done, its later stages not), not another sweep's", async () => {
    const f = await fixture();
    const entry = (workflowId: string) => ({ stage: 'learnedTrigger', version: 1, key: 'k', madeBy: { stage: 'prepareData', key: key64(), workflowId }, triggerParameters: { perturbation: 'AAAA' } });
    const ours = `cache/learnedTrigger/${key64()}`;
    const theirs = `cache/learnedTrigger/${key64()}`;
    await f.store.putRecord(ours, entry('sweep-s--c2'));
    await f.store.putRecord(theirs, entry('sweep-other--c9'));
    const records = async (inProgress: boolean) => (await decodeBundle(await fsp.readFile((await exportTo(f, inProgress)).file), 'x')).manifest.records.map((r) => r.key);
    const withRunning = await records(true);
    assert.ok(withRunning.includes(ours), 'the unfinished cell c2 made it: its only portable form');
    assert.ok(!withRunning.includes(theirs), "another sweep's cell made that one");
    assert.ok(!(await records(false)).includes(ours), 'without --in-progress only finished cells count');
  });

  it('exports the newest verifying checkpoint of each stage the unfinished cells were running, and nothing else', async () => {
    const f = await fixture();
    const { file, printed } = await exportTo(f, true);
    const content = await decodeBundle(await fsp.readFile(file), 'x');
    const checkpointRecords = content.manifest.records.map((r) => r.key).filter((k) => k.startsWith('checkpoints/'));
    assert.deepEqual(checkpointRecords, [f.running.key, f.damaged.key].sort(), 'only the unfinished cells\' stages in progress');
    const value = (key: string) => JSON.parse(Buffer.from(content.records.find((r) => r.key === key)!.data).toString('utf8'));
    assert.deepEqual(value(f.running.key), [{ epoch: 2, checkpoint: f.running.epoch2, workflowId: 'sweep-s--c2' }], 'cut to the newest checkpoint');
    assert.deepEqual(value(f.damaged.key), [{ epoch: 1, checkpoint: f.damaged.epoch1, workflowId: 'sweep-s--c3' }], 'the newest that verifies');
    const shas = new Set(content.manifest.artifacts.map((a) => a.sha256));
    assert.ok(shas.has(f.running.epoch2.sha256) && shas.has(f.damaged.epoch1.sha256));
    assert.ok(!shas.has(f.running.epoch1.sha256), 'not the history');
    assert.deepEqual(
      content.manifest.selection.inProgress,
      [
        { record: f.damaged.key, cell: 'c3', epoch: 1, sha256: f.damaged.epoch1.sha256, bytes: f.damaged.epoch1.bytes },
        { record: f.running.key, cell: 'c2', epoch: 2, sha256: f.running.epoch2.sha256, bytes: f.running.epoch2.bytes },
      ].sort((a, b) => (a.record < b.record ? -1 : 1)),
    );
    assert.match(printed, new RegExp(`in progress: ${f.running.key} at epoch 2 \\(cell c2, checkpoint 1002 bytes\\)`));
    assert.match(printed, new RegExp(`note: ${f.finished} belongs to a stage that has finished since`));
    assert.match(printed, /stages in progress: 2 checkpoints, 0\.0 MiB/);

    const without = await decodeBundle(await fsp.readFile((await exportTo(f, false)).file), 'y');
    assert.deepEqual(without.manifest.records.filter((r) => r.key.startsWith('checkpoints/')), [], 'without --in-progress: no checkpoints');
  });

  it('imports them into a fresh store, skips them the second time, and advances a list that is behind', async () => {
    const f = await fixture();
    const content = await decodeBundle(await fsp.readFile((await exportTo(f, true)).file), 'x');
    const fresh = await fsStore();
    await importBundle(fresh, content);
    assert.deepEqual(await fresh.getRecord(f.running.key), [{ epoch: 2, checkpoint: f.running.epoch2, workflowId: 'sweep-s--c2' }]);
    assert.ok(await fresh.verify(f.running.epoch2));
    const again = await importBundle(fresh, content);
    assert.equal(again.recordsWritten + again.artifactsWritten + again.checkpointsAdvanced.length, 0);

    // back into the store it came from (the same machine's next sitting): its full history already lists the newest entry
    const home = await importBundle(f.store, content);
    assert.deepEqual({ kept: home.recordsKept, advanced: home.checkpointsAdvanced }, { kept: [], advanced: [] });
    assert.equal(((await f.store.getRecord(f.running.key)) as unknown[]).length, 2, 'the history stays');

    // a store that ran the stage to epoch 1 itself gets epoch 2; one that is further keeps its own
    const behind = await fsStore();
    const own1 = { epoch: 1, checkpoint: await behind.put(rand(77)), workflowId: 'elsewhere' };
    await behind.putRecord(f.running.key, [own1]);
    const ahead = { epoch: 3, checkpoint: await behind.put(rand(78)), workflowId: 'elsewhere' };
    await behind.putRecord(f.damaged.key, [own1, ahead]);
    const r = await importBundle(behind, content);
    assert.deepEqual(r.checkpointsAdvanced, [f.running.key]);
    assert.deepEqual(r.recordsKept, [f.damaged.key]);
    assert.deepEqual(await behind.getRecord(f.running.key), [own1, { epoch: 2, checkpoint: f.running.epoch2, workflowId: 'sweep-s--c2' }]);
    assert.deepEqual(await behind.getRecord(f.damaged.key), [own1, ahead]);
  });

  it('refuses a bundle with a tampered checkpoint, naming it, and writes nothing', async () => {
    const f = await fixture();
    const { file } = await exportTo(f, true);
    const bytes = await fsp.readFile(file);
    const manifest = (await decodeBundle(bytes, 'x')).manifest;
    const body = Buffer.from(gunzipSync(bytes));
    const recordsEnd = 16 + body.readUInt32BE(12) + manifest.records.reduce((n, r) => n + r.bytes, 0);
    const victim = manifest.artifacts.findIndex((a) => a.sha256 === f.running.epoch2.sha256);
    const at = recordsEnd + manifest.artifacts.slice(0, victim).reduce((n, a) => n + a.bytes, 0) + 100;
    body[at] ^= 0x01;
    const tampered = path.join(path.dirname(file), 'tampered.ntmlb');
    await fsp.writeFile(tampered, gzipSync(body));
    const target = await fsStore();
    await assert.rejects(
      withStoreEnv(target.root, () => storeImport({ options: {}, positionals: [tampered], help: false }, io().io)),
      (err: Error) =>
        err instanceof UserError &&
        err.message.includes(`artifact ${f.running.epoch2.sha256} (the epoch 2 checkpoint of ${f.running.key}) does not match its sha256`) &&
        /nothing was written/.test(err.message),
    );
    assert.deepEqual(await contents(target), { artifacts: [], records: [] });
  });

  it('bench state (S3, as run-cpu.sh exports it) carries the stages in progress with --in-progress only', async () => {
    const location = process.env.NTML_STORE;
    assert.ok(location?.startsWith('s3://') && process.env.NTML_S3_ENDPOINT, 'run through test/support/runTests.js: it starts the S3 server');
    const store = openStore(`s3://${parseS3Location(location!).bucket}/inprogress-bench-${key64().slice(0, 12)}`, { s3: s3OptionsFromEnv() });
    await store.putRecord('sweeps/b/spec', { spec: { name: 'b' }, cellIds: ['c1'] });
    const key = `checkpoints/stage/${key64()}/standard`;
    const entries = [1, 2].map((epoch) => ({ epoch, workflowId: 'sweep-b--c1' }));
    const refs = [await store.put(rand(600)), await store.put(rand(700))];
    await store.putRecord(key, entries.map((e, i) => ({ ...e, checkpoint: refs[i] })));
    const plain = await collectBenchState(store, 'b');
    assert.deepEqual(plain.content.manifest.records.map((r) => r.key), ['sweeps/b/spec']);
    const withRunning = await collectBenchState(store, 'b', { inProgress: true });
    assert.deepEqual(withRunning.content.manifest.records.map((r) => r.key), [key, 'sweeps/b/spec']);
    assert.deepEqual(withRunning.content.manifest.artifacts, [{ sha256: refs[1].sha256, bytes: 700 }]);
    assert.equal(withRunning.inProgress?.bytes, 700);
  });

  it('advances a checkpoint list only when the imported one reaches further', () => {
    const ref = (n: number) => ({ uri: `x${n}`, sha256: String(n).repeat(64).slice(0, 64).replace(/[^0-9a-f]/g, 'a'), bytes: n });
    const e = (epoch: number) => ({ epoch, checkpoint: ref(epoch) });
    assert.deepEqual(advanceCheckpointList([e(1), e(2)], [e(4)]), [e(1), e(2), e(4)]);
    assert.deepEqual(advanceCheckpointList([e(1), e(2), e(3)], [e(2), e(4)]), [e(1), e(2), e(4)]);
    assert.equal(advanceCheckpointList([e(1), e(5)], [e(4)]), undefined);
    assert.equal(advanceCheckpointList([e(4)], [e(4)]), undefined);
    assert.deepEqual(advanceCheckpointList('not a list', [e(1)]), [e(1)]);
    assert.equal(advanceCheckpointList([e(1)], [{ epoch: 2 }]), undefined, 'an entry without a checkpoint is no advance');
  });

  it("finds a finished run's cut final checkpoint held where the store lists the full one of that epoch", () => {
    const ref = (c: string) => ({ uri: `x${c}`, sha256: c.repeat(64), bytes: 1 });
    const full = [1, 2, 3, 4].map((epoch) => ({ epoch, checkpoint: ref(String(epoch)) }));
    const cut = { epoch: 4, checkpoint: ref('c'), finished: true };
    assert.equal(checkpointListHolds(full, [cut]), true, 'the store it was cut from keeps its own list (an import there writes nothing)');
    assert.equal(checkpointListHolds(full.slice(0, 3), [cut]), false, 'a store that has not reached its epoch takes it');
    assert.equal(checkpointListHolds(full, [{ ...cut, finished: undefined }]), false, 'an unmarked entry must be the same checkpoint');
    assert.deepEqual(advanceCheckpointList(full.slice(0, 3), [cut]), [...full.slice(0, 3), cut]);
  });
});

/**
 * The audit-detection harness's inputs, on the real S3 store with records written by hand (no
 * training): which cells it takes, which it lists as not audited, and the errors that name the
 * sweep, the cell or the file when the store or the output folder holds something else.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { testClient } from './support/temporal';
import { tempDir } from './support/auditHarness';
import { storeFromEnv } from '../store';
import { encodeDataset } from '../core/data/codec';
import { generateSyntheticDataset } from '../core/data/synthetic';
import { auditOrder, nonDefaultSettings, runAuditDetection, sweepTargets } from '../bench/auditDetection';
import { goals, type DetectionRow } from '../bench/auditDetectionRows';
import { parsePurifyConfig } from '../schemas/purify';
import { prepareData } from '../core/experiment/prepareData';

let client: Client;
let close: () => Promise<void>;
let dir: string;
before(async () => {
  ({ client, close } = await testClient());
  dir = await tempDir('audit-detection-inputs');
});
after(async () => {
  await close();
  await fs.rm(dir, { recursive: true, force: true });
});

const unique = (tag: string) => `${tag}-${process.pid}-${Date.now().toString(36)}`;
const evaluationConfig = (seed: number) => ({ mode: 'evaluation', tier: 'ci', seed, data: { format: 'synthetic' }, attack: { name: 'wanet', target: 3 }, defense: { name: 'none' } });

/** A completed cell as a sweep records it, with its report and prepareData entry (and optionally standard training's). */
async function completedCell(sweep: string, cellId: string, config: Record<string, unknown>, opts: { trainingBackdoorTest?: boolean; prepareKey?: boolean } = {}) {
  const store = storeFromEnv();
  const test = await store.put(encodeDataset(generateSyntheticDataset({ size: 60, seed: 1, name: 'test' })));
  const triggered = await store.put(encodeDataset(generateSyntheticDataset({ size: 20, seed: 2, name: 'triggered' })));
  const model = await store.put(Buffer.from(`model of ${cellId}`));
  const report = await store.put(Buffer.from(JSON.stringify({ models: { standard: model, final: model } })));
  const prepareKey = `${cellId}-prepare`;
  const standardKey = `${cellId}-standard`;
  await store.putRecord(`cache/prepareData/${prepareKey}`, { output: { test } });
  if (opts.trainingBackdoorTest) await store.putRecord(`cache/standardTraining/${standardKey}`, { output: { data: { backdoorTest: triggered } } });
  await store.putRecord(`sweeps/${sweep}/cells/${cellId}`, {
    sweep,
    cellId,
    axes: { attack: 'wanet', defense: 'none', seed: config.seed, cleanBudget: '100', model: 'tier default' },
    config,
    status: 'completed',
    workflowId: `cell-${cellId}`,
    startedAt: 0,
    endedAt: 1,
    report,
    stages: [
      ...(opts.prepareKey === false ? [] : [{ stage: 'prepareData', seconds: 1, cacheKey: prepareKey }]),
      { stage: 'standardTraining', seconds: 1, cacheKey: standardKey },
    ],
  });
  return { model, test, triggered };
}

test('takes the completed cells with their f_std, test split, true target and triggered inputs; lists the cells that did not complete', async () => {
  const sweep = unique('inputs');
  const { model, test, triggered } = await completedCell(sweep, 'c1', evaluationConfig(2), { trainingBackdoorTest: true });
  await storeFromEnv().putRecord(`sweeps/${sweep}/cells/c2`, {
    sweep,
    cellId: 'c2',
    axes: { attack: 'badnets', defense: 'none', seed: 1, cleanBudget: '100', model: 'tier default' },
    config: {},
    status: 'failed',
    error: 'boom',
    workflowId: 'cell-c2',
    startedAt: 0,
    endedAt: 1,
  });
  const { targets, unfinished } = await sweepTargets(storeFromEnv(), sweep, 'backdoored');
  assert.equal(targets.length, 1);
  const t = targets[0];
  assert.deepEqual(
    { ...t.source, model: t.source.model.sha256 },
    { sweep, cellId: 'c1', role: 'backdoored', attack: 'wanet', seed: 2, trueTarget: 3, model: model.sha256 },
  );
  assert.equal(t.test.sha256, test.sha256);
  // a training-controlled attack's triggered test set comes from its standard-training stage
  assert.equal(t.backdoorTest?.sha256, triggered.sha256);
  assert.deepEqual(unfinished, [`${sweep}/c2 (badnets seed 1, failed)`]);
});

test('refuses a missing sweep, a cell without its prepareData key, and an attack cell given as the clean sweep, naming each', async () => {
  const store = storeFromEnv();
  await assert.rejects(sweepTargets(store, 'no-such-sweep-here', 'backdoored'), /no cells of sweep "no-such-sweep-here"/);
  const noKey = unique('nokey');
  await completedCell(noKey, 'k1', evaluationConfig(1), { prepareKey: false });
  await assert.rejects(sweepTargets(store, noKey, 'backdoored'), new RegExp(`sweep ${noKey}, cell k1: names no prepareData stage-cache key`));
  const attacked = unique('attacked');
  await completedCell(attacked, 'a1', evaluationConfig(1));
  await assert.rejects(sweepTargets(store, attacked, 'clean'), new RegExp(`--clean-sweep ${attacked}: cell a1 trains with attack wanet`));
});

test('refuses an output folder whose report.json is not a detection report, and a policy the audit schema refuses', async () => {
  const sweep = unique('out');
  await completedCell(sweep, 'o1', evaluationConfig(1));
  const options = (outDir: string, policy: unknown = {}) => ({
    client,
    queues: { orchestration: 'unused' },
    store: storeFromEnv(),
    sweeps: { backdoored: sweep },
    policy,
    referenceSize: 50,
    referenceSeed: 0,
    outDir,
    command: 'test',
  });
  const broken = path.join(dir, 'broken');
  await fs.mkdir(broken, { recursive: true });
  await fs.writeFile(path.join(broken, 'report.json'), '{ not json');
  await assert.rejects(runAuditDetection(options(broken)), /report\.json: not valid JSON/);
  await fs.writeFile(path.join(broken, 'report.json'), JSON.stringify({ something: 'else' }));
  await assert.rejects(runAuditDetection(options(broken)), /report\.json: not an audit-detection report/);
  await assert.rejects(runAuditDetection(options(path.join(dir, 'fresh'), { probes: { asrThreshold: 0 } })), /--policy is invalid:\n {2}probes\.asrThreshold/);
});


test('models are audited seed by seed, every attack before the clean models, so a stopped run covers each attack', () => {
  const t = (role: 'backdoored' | 'clean', attack: string, seed: number) => ({ source: { role, attack, seed } });
  const targets = [t('backdoored', 'badnets', 1), t('backdoored', 'badnets', 2), t('backdoored', 'wanet', 1), t('backdoored', 'wanet', 2), t('clean', 'none', 2), t('clean', 'none', 1)];
  const order = auditOrder(targets).map((x) => `${x.source.attack}:${x.source.seed}`);
  assert.deepEqual(order, ['badnets:1', 'wanet:1', 'none:1', 'badnets:2', 'wanet:2', 'none:2']);
  // the input is left as it was
  assert.equal(targets[1].source.seed, 2);
});

test('a cell whose prepareData entry is not in the store (an imported bundle carries no data sets) gets its splits regenerated from its config; superseded cells are left out', async () => {
  const store = storeFromEnv();
  const sweep = unique('regen');
  const config = { mode: 'evaluation', tier: 'ci', seed: 4, data: { format: 'synthetic', trainSize: 200, testSize: 40, height: 8, width: 8, numClasses: 4 }, attack: { name: 'badnets', target: 1 }, cleanBudget: 20, defense: { name: 'none' } };
  await completedCell(sweep, 'r1', config);
  // the entry the cell names is gone, as on a store that imported the sweep's bundle
  await store.deleteRecord(`cache/prepareData/r1-prepare`);
  await completedCell(sweep, 'old1', config);
  await store.putRecord(`sweeps/${sweep}/spec`, { cellIds: ['r1'] });
  const { targets, unfinished } = await sweepTargets(store, sweep, 'backdoored');
  assert.deepEqual(targets.map((t) => t.source.cellId), ['r1'], 'the superseded record old1 is not audited');
  assert.deepEqual(unfinished, []);
  const fresh = await prepareData(parsePurifyConfig(config));
  const { decodeDataset } = await import('../core/data/codec');
  const test = decodeDataset(await store.get(targets[0].test), 'test');
  assert.deepEqual(test.images, fresh.test!.images, 'the regenerated test split is the one prepareData gives');
  assert.ok(targets[0].backdoorTest, 'a poison-only attack gets its triggered test set back too');
  const triggered = decodeDataset(await store.get(targets[0].backdoorTest!), 'triggered');
  assert.deepEqual(triggered.images, fresh.backdoorTest!.images.images);
});

test('an attack at other settings than the library default is its own group of rows (Narcissus at the tier rate beside attacks.md rate)', () => {
  const narcissus = (rate?: number) => parsePurifyConfig({ ...evaluationConfig(1), attack: { name: 'narcissus', target: 0, ...(rate ? { rate } : {}) } }).attack!;
  assert.equal(nonDefaultSettings(narcissus()), undefined);
  assert.equal(nonDefaultSettings(narcissus(0.0005)), undefined, 'the default rate written out is the default');
  assert.equal(nonDefaultSettings(narcissus(0.01)), 'rate=0.01');
  assert.equal(nonDefaultSettings(parsePurifyConfig(evaluationConfig(1)).attack!), undefined, 'the target is shown apart, not as a setting');
  const row = (settings: string | undefined, flagged: boolean) =>
    ({ attack: 'narcissus', settings, role: 'backdoored', seed: 1, verdict: flagged ? 'suspicious' : 'clean', probe: { fired: flagged, hits: [] } }) as unknown as DetectionRow;
  const lines = goals([row(undefined, false), row('rate=0.01', true)]);
  assert.ok(lines.some((l) => l.startsWith('- narcissus: 0 of 1 flagged')), lines.join('\n'));
  assert.ok(lines.some((l) => l.startsWith('- narcissus(rate=0.01): 1 of 1 flagged')), lines.join('\n'));
  assert.match(lines[0], /every attack flagged: no \(1 of 2 backdoored models\)/);
});

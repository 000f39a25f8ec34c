/**
 * The audit-detection harness (bench/auditDetection.ts) on the real Temporal server and S3
 * store at the ci tier: a one-cell BadNets sweep and a one-cell clean sweep (protection mode on
 * the clean counterpart of the same data) run for real, then the harness audits both f_std
 * through the audit workflow. The BadNets model is backdoored with the target named by both
 * the probe and Neural Cleanse, the clean one is left alone, the rows carry what each check
 * saw, and a rerun audits nothing. The clean counterpart is checked against prepareData.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import { inProcessWorkers, quietRuntime, repoRoot, taskQueues, testClient } from './support/temporal';
import { CI_NEURAL_CLEANSE, SYNTHETIC_DATA_PROBES, tempDir } from './support/auditHarness';
import { storeFromEnv } from '../store';
import { parsePurifyConfig } from '../schemas/purify';
import { loadEvaluationData, prepareData } from '../core/experiment/prepareData';
import { cleanCounterpart, writeCleanCounterpart } from '../bench/cleanCounterpart';
import { runAuditDetection } from '../bench/auditDetection';
import type { DetectionReport } from '../bench/auditDetectionRows';
import type { AuditHistoryRecord } from '../core/audit/report';
import type { PurifyReport, SweepCellRecord, SweepOutcome } from '../workflows/contract';

quietRuntime();

/** The audit fixtures' data and attack (test/support/backdoored.ts), as one sweep cell. */
const base = {
  mode: 'evaluation',
  tier: 'ci',
  data: { format: 'synthetic', trainSize: 2000, testSize: 1000 },
  cleanBudget: 100,
  defense: { name: 'none' },
};

let client: Client;
let close: () => Promise<void>;
let dir: string;
before(async () => {
  ({ client, close } = await testClient());
  dir = await tempDir('audit-detection');
});
after(async () => {
  await close();
  await fs.rm(dir, { recursive: true, force: true });
});

test('the clean counterpart is the attack cells\' training set and D_c with true labels, nothing poisoned', { timeout: 120_000 }, async () => {
  const counterpart = await cleanCounterpart(base, 1);
  const cfg = parsePurifyConfig({ ...base, seed: 1, attack: { name: 'badnets', target: 0, rate: 0.1 } });
  const poisoned = await prepareData(cfg);
  const { train: loaded } = await loadEvaluationData(cfg.data!, 1);
  const training = poisoned.sourceIndices!.training;
  assert.equal(counterpart.train.labels.length, poisoned.train.labels.length);
  assert.deepEqual(Array.from(counterpart.train.labels), training.map((i) => loaded.labels[i]));
  // the poisoned images differ from their clean versions; the rest are the same images
  const per = loaded.height * loaded.width * loaded.channels;
  const poisonedSet = new Set(poisoned.poison!.poisonedIndices);
  let same = 0;
  for (let k = 0; k < training.length; k++) {
    const a = counterpart.train.images.subarray(k * per, (k + 1) * per);
    const b = poisoned.train.images.subarray(k * per, (k + 1) * per);
    const equal = Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
    if (poisonedSet.has(k)) assert.ok(!equal, `poisoned image ${k} should differ from its clean version`);
    else same += equal ? 1 : 0;
  }
  assert.equal(same, training.length - poisonedSet.size);
  // D_c stays outside the training set, as in the attack cells
  const dc = [...poisoned.sourceIndices!.cleanFit, ...poisoned.sourceIndices!.cleanHeldOut];
  assert.equal(counterpart.clean.labels.length, dc.length);
  assert.ok(dc.every((i) => !training.includes(i)));
});

test('a BadNets f_std is flagged backdoored on its target and a clean f_std is clean; rows carry each check; a rerun audits nothing', { timeout: 1_200_000 }, async () => {
  const name = `detect-${process.pid}-${Date.now().toString(36)}`;
  const files = await writeCleanCounterpart(await cleanCounterpart(base, 1), path.join(dir, 'clean-data'));
  const attackSpec = { name: `${name}-attacks`, base, grid: { attack: [{ name: 'badnets', target: 0, rate: 0.1 }], seed: [1] }, concurrency: 1 };
  const cleanSpec = {
    name: `${name}-clean`,
    base: {
      mode: 'protection',
      tier: 'ci',
      trainingSet: { format: 'ntml', location: files.train },
      cleanSet: { format: 'ntml', location: files.clean },
      testSet: { format: 'ntml', location: files.test },
      cleanBudget: 100,
      defense: { name: 'none' },
      // evaluation mode turns flips off for the synthetic gratings (a mirror image is another class); files do not say they are synthetic
      training: { augment: { padding: 4, flip: false } },
    },
    grid: { seed: [1] },
    concurrency: 1,
  };
  const queues = taskQueues('audit-detection');
  const workers = await inProcessWorkers(queues);
  const out = path.join(dir, 'report');
  const policy = { neuralCleanse: CI_NEURAL_CLEANSE, probes: SYNTHETIC_DATA_PROBES };
  const detect = (policyOfRun: unknown = policy) =>
    runAuditDetection({
      client,
      queues,
      store: storeFromEnv(),
      sweeps: { backdoored: attackSpec.name, clean: cleanSpec.name },
      policy: policyOfRun,
      referenceSize: 200,
      referenceSeed: 0,
      outDir: out,
      command: 'node dist/bench/auditDetection.js (test)',
      log: (l) => console.log(`  ${l}`),
    });
  const { first, second, before, third } = await workers.run(async () => {
    for (const spec of [attackSpec, cleanSpec]) {
      const outcome = (await client.workflow.execute('sweep', {
        taskQueue: queues.orchestration,
        workflowId: `sweep-${spec.name}`,
        args: [{ spec, options: { trainingTaskQueue: queues.training } }],
      })) as SweepOutcome;
      assert.equal(outcome.completed, 1, JSON.stringify(outcome.failed));
    }
    const first = await detect();
    const second = await detect();
    // a row audited where the triggered set was missing gets STRIP on a later run, without a new audit
    const before = JSON.parse(await fs.readFile(path.join(out, 'report.json'), 'utf8')) as DetectionReport;
    await fs.writeFile(path.join(out, 'report.json'), JSON.stringify({ ...before, rows: before.rows.map((r) => (r.role === 'backdoored' ? { ...r, strip: undefined } : r)) }));
    return { first, second, before, third: await detect() };
  });

  assert.equal(first.audited, 2);
  const rows = first.report.rows;
  const bad = rows.find((r) => r.role === 'backdoored')!;
  const clean = rows.find((r) => r.role === 'clean')!;
  console.log(`  backdoored: ${bad.verdict} (${bad.reasons[0]}) in ${bad.seconds.toFixed(0)} s; clean: ${clean.verdict} (${clean.reasons.join('; ')}) in ${clean.seconds.toFixed(0)} s`);

  // the row audits the cell's own f_std (the standard model of its report)
  const store = storeFromEnv();
  const [cellKey] = await store.listRecords(`sweeps/${attackSpec.name}/cells/`);
  const cell = (await store.getRecord<SweepCellRecord>(cellKey))!;
  const purifyReport = JSON.parse(Buffer.from(await store.get(cell.report!)).toString('utf8')) as PurifyReport;
  assert.equal(bad.model.sha256, purifyReport.models.standard.sha256);
  assert.equal(bad.key, `${attackSpec.name}/${cell.cellId}`);

  assert.deepEqual([bad.attack, bad.seed, bad.trueTarget], ['badnets', 1, 0]);
  assert.equal(bad.verdict, 'backdoored', bad.reasons.join('\n'));
  assert.equal(bad.flaggedClass, 0);
  assert.equal(bad.flaggedIsTarget, true);
  assert.ok(bad.probe.fired && bad.probe.hits.some((h) => h.attack === 'badnets' && h.towardsClass === 0), JSON.stringify(bad.probe));
  assert.equal(bad.neuralCleanse?.pointsAtTarget, true, JSON.stringify(bad.neuralCleanse));
  assert.match(bad.neuralCleanse!.scope, /in scope/);
  assert.equal(bad.integrity, 'first');
  // STRIP beside the audit, both superimpositions: the BadNets patch keeps the prediction under the 50/50 blend (89 of 89 on the fixtures)
  assert.deepEqual(bad.strip?.map((s) => s.blend), ['average', 'sum']);
  const average = bad.strip![0];
  assert.ok(average.inputs > 0 && average.flagged >= 0.5 * average.inputs, JSON.stringify(average));
  for (const s of bad.strip!) assert.ok(s.cleanFlagged <= Math.floor(0.05 * s.cleanInputs), JSON.stringify(s));
  assert.ok(bad.seconds > 0 && bad.neuralCleanse!.seconds > 0);

  assert.deepEqual([clean.attack, clean.trueTarget], ['none', undefined]);
  assert.equal(clean.verdict, 'clean', clean.reasons.join('\n'));
  assert.equal(clean.flaggedClass, undefined);
  assert.equal(clean.probe.fired, false);
  assert.deepEqual(clean.neuralCleanse?.flagged, []);
  assert.equal(clean.strip, undefined, 'a clean cell has no triggered inputs');

  // each row is a real audit: the workflow's history record holds the same verdict
  for (const r of rows) {
    const [key] = await store.listRecords(`audits/detection-${r.sweep}-${r.cellId}/history/`);
    const record = await store.getRecord<AuditHistoryRecord>(key);
    assert.equal(record?.auditId, r.auditId);
    assert.equal(record?.verdict, r.verdict);
  }

  const written = before;
  assert.equal(written.rows.length, 2);
  assert.equal(written.runs.length, 1);
  assert.equal(written.runs[0].loadAverage.start.length, 3);
  const md = await fs.readFile(path.join(out, 'report.md'), 'utf8');
  assert.match(md, /every attack flagged: yes \(1 of 1 backdoored models\)/);
  assert.match(md, /no clean model flagged: yes \(0 of 1 clean models flagged\)/);
  assert.match(md, /node dist\/bench\/auditDetection\.js \(test\)/);
  assert.match(md, /\| badnets \| 1 \| 0 \| backdoored \| 0 \(= target\) \|/);
  assert.match(md, /STRIP \(beside the audit\) flagged \d+ of \d+ triggered inputs \(average\), \d+ of \d+ triggered inputs \(sum\)/);

  assert.deepEqual([second.audited, second.skipped, second.stripFilled], [0, 2, 0]);
  assert.deepEqual(second.report.rows, written.rows);
  assert.deepEqual([third.audited, third.stripFilled], [0, 1]);
  const untimed = (rows: DetectionReport['rows']) => rows.map((r) => ({ ...r, strip: r.strip?.map(({ seconds: _, ...rest }) => rest) }));
  assert.deepEqual(untimed(third.report.rows), untimed(before.rows), 'the same STRIP numbers, the audit untouched');
  // another policy would mix incomparable rows into the report
  await assert.rejects(detect({ ...policy, neuralCleanse: { ...CI_NEURAL_CLEANSE, stepsPerClass: 10 } }), /holds audits made with another policy or reference set/);
});

test('the command line refuses bad options with exit code 2, naming the option, before any stack starts', async () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(repoRoot, 'dist', 'bench', 'auditDetection.js'), ...args], { encoding: 'utf8', timeout: 60_000 });
  const noOut = run('--sweep', 'attacks-cpu');
  assert.equal(noOut.status, 2, noOut.stderr);
  assert.match(noOut.stderr, /missing --out/);
  const size = run('--sweep', 'attacks-cpu', '--out', dir, '--reference-size', '3');
  assert.equal(size.status, 2, size.stderr);
  assert.match(size.stderr, /--reference-size must be an integer >= 50, got "3"/);
  const policyFile = path.join(dir, 'bad-policy.json');
  await fs.writeFile(policyFile, JSON.stringify({ probes: { asrThreshold: 500 } }));
  const policy = run('--sweep', 'attacks-cpu', '--out', dir, '--policy', policyFile);
  assert.equal(policy.status, 2, policy.stderr);
  assert.match(policy.stderr, /probes\.asrThreshold/);
  const cleanData = run('clean-data', '--spec', 'bench/specs/attacks-cpu.yaml');
  assert.equal(cleanData.status, 2, cleanData.stderr);
  assert.match(cleanData.stderr, /clean-data: missing --seed/);
});

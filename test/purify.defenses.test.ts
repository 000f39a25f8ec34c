/**
 * Baseline defenses through the purify workflow on real components: each starts from the
 * stored backdoored model of the reference run (the standard-training stage is reused, not
 * retrained), runs as a checkpointed activity, and is evaluated and reported like NT-ML.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkflowFailedError } from '@temporalio/client';
import { ciConfig, quietRuntime, referenceRun, runPurifyWorkflow } from './support/temporal';
import { storeFromEnv } from '../store';
import type { PurifyOutcome, PurifyReport } from '../workflows/contract';

quietRuntime();

/** Every message along a failure's cause chain (workflow -> activity -> application failure). */
function causeMessages(err: unknown): string {
  const out: string[] = [];
  for (let e = err as { message?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) out.push(String(e.message));
  return out.join(' <- ');
}

test('defense none: reuses the stored backdoored model and reports it unchanged (DER 50)', { timeout: 600_000 }, async () => {
  const reference = await referenceRun();
  const { outcome, report } = await runPurifyWorkflow('none', ciConfig({ defense: { name: 'none' } }));
  const reused = report.stages.find((s) => s.stage === 'standardTraining');
  assert.equal(reused?.cached, true, 'standard training must come from the stage cache');
  const refReport = JSON.parse(Buffer.from(await storeFromEnv().get(reference.outcome.report)).toString('utf8')) as PurifyReport;
  assert.equal(outcome.purifiedModel.sha256, refReport.models.standard.sha256);
  assert.deepEqual(report.metrics.final, report.metrics.standard);
  assert.equal(report.der, 50);
  assert.equal(report.defense, 'No defense');
  assert.equal(report.metrics.ntStudent, undefined);
});

test('ft through the workflow: starts from the stored model, lowers ASR, reports its rule and rounds', { timeout: 600_000 }, async () => {
  await referenceRun();
  // The synthetic ci data is learnt to 100% clean accuracy, so fine-tuning at the spec's
  // lr 0.01 barely moves the backdoor (measured ASR 100 -> 97); a stated stronger setting
  // (lr 0.2) tests the mechanics here, the defaults run in bench/.
  const { report, markdown } = await runPurifyWorkflow('ft', ciConfig({ defense: { name: 'ft', steps: 120, rounds: 4, learningRate: 0.2 } }));
  assert.equal(report.stages.find((s) => s.stage === 'standardTraining')?.cached, true);
  assert.deepEqual(
    report.stages.map((s) => s.stage),
    ['prepareData', 'standardTraining', 'defense (FT)', 'evaluation'],
  );
  assert.equal(report.histories['defense:fineTune'].length, 4);
  assert.match(report.selectionRule, /held-out/);
  const { standard, final } = report.metrics;
  console.log(`ft: ACC ${standard.acc.toFixed(1)} -> ${final.acc.toFixed(1)}, ASR ${standard.asr!.toFixed(1)} -> ${final.asr!.toFixed(1)}, DER ${report.der!.toFixed(1)}`);
  assert.ok(final.asr! < standard.asr! - 5, `FT should lower ASR by > 5 points (${standard.asr} -> ${final.asr})`);
  assert.ok(final.acc >= standard.acc - 10, `FT should keep ACC within 10 points (${standard.acc} -> ${final.acc})`);
  assert.match(markdown, /^# FT purification report/);
  assert.match(markdown, /defended by FT \(final\)/);
});

test('a smaller clean budget draws inside the reserve: the same backdoored model is reused', { timeout: 600_000 }, async () => {
  const reference = await referenceRun();
  const refReport = JSON.parse(Buffer.from(await storeFromEnv().get(reference.outcome.report)).toString('utf8')) as PurifyReport;
  const { report } = await runPurifyWorkflow('budget', ciConfig({ cleanBudget: 40, defense: { name: 'none' } }));
  assert.equal(report.data.cleanBudget, 40);
  assert.equal(report.data.cleanReserve, 100);
  assert.equal(report.models.standard.sha256, refReport.models.standard.sha256);
});

test('a clean budget larger than the training split, or zero, fails with the field named', { timeout: 120_000 }, async () => {
  await assert.rejects(
    runPurifyWorkflow('toolarge', ciConfig({ cleanBudget: 5000, defense: { name: 'ft' } })),
    (err: unknown) => {
      assert.ok(err instanceof WorkflowFailedError);
      assert.match(causeMessages(err), /cleanBudget: 5000 images requested but the training set has only 2000/);
      return true;
    },
  );
  await assert.rejects(runPurifyWorkflow('zero', ciConfig({ cleanBudget: 0, defense: { name: 'ft' } })), (err: unknown) => {
    assert.ok(err instanceof WorkflowFailedError);
    assert.match(causeMessages(err), /cleanBudget: .*(at least 1|>=1|too small)/i);
    return true;
  });
});

/**
 * Each remaining baseline end to end, at a reduced CI budget (the core tests under
 * test/core/defenses state what each does at the spec's defaults on this data). The
 * threshold is the issue's: ASR below the undefended model's, ACC within a stated bound.
 */
const baselines: Array<{ defense: Record<string, unknown>; label: string; phases: string[]; minAsrDrop: number; maxAccDrop: number }> = [
  // measured (seed 1): FP ASR 100 -> 58.1, ACC 100 -> 100 (fine-tuning at lr 0.1: at the default 0.01, 60 steps
  // leave ASR at 95); NAD ASR 100 -> 70.3, ACC 100 -> 99.9 at lr 0.2 and 5 steps an epoch before the training
  // set left out the clean reserve (issue 19); on the new backdoored model that left ASR at 87.2 (lr 0.15: 92.2),
  // and lr 0.15 at the default 10 steps an epoch measured ASR 100 -> 63.7, ACC 100 -> 100
  { defense: { name: 'fp', fineTune: { steps: 60, rounds: 2, learningRate: 0.1 } }, label: 'FP', phases: ['fineTune'], minAsrDrop: 15, maxAccDrop: 5 },
  {
    defense: { name: 'nad', learningRate: 0.15, teacherEpochs: 5, epochs: 5 },
    label: 'NAD',
    phases: ['teacher', 'student'],
    minAsrDrop: 15,
    maxAccDrop: 5,
  },
  // ANP at its defaults prunes nothing on this data (masks below 0.05 already cost 55% held-out
  // accuracy; measured ASR 100 -> 100 in 24 min), and no single BN channel carries the BadNets
  // backdoor here; a smaller eps and budget test the mechanics: measured ASR 100 -> 98.7 through
  // the workflow (93.9 in the core test's seed). The bar is "below the undefended ASR". The
  // variant measured: perturbation clipped to eps and the held-out pruning rule (the defaults are now
  // the authors' unclipped noise and fixed threshold 0.2, issue 19).
  {
    defense: { name: 'anp', eps: 0.2, clipNoise: true, iterations: 100, checkpoints: 4, batchSize: 32, prune: { by: 'heldOut' } },
    label: 'ANP',
    phases: ['masks'],
    minAsrDrop: 0,
    maxAccDrop: 5,
  },
  // I-BAU at its old defaults made 5 Adam steps at lr 1e-4 on 80 samples (ASR stays 100); at lr 2e-3
  // the outer steps cost 19 points of ACC on one build VM's native TensorFlow (core test). On the
  // backdoored model trained without the clean reserve (issue 19) 3 rounds at 5e-4 cost 17.7 points;
  // the core test's 4 rounds at 3e-4 measured ACC 98.3, ASR 86.2. With the frozen-pattern second-order
  // products (the default since issue 19's re-check; they change I-BAU's numbers) this test measured
  // ACC 99.4, ASR 84.7 through the workflow, the core test 98.6 / 85.4
  {
    defense: { name: 'ibau', rounds: 4, stepsPerRound: 10, learningRate: 3e-4, innerSteps: 20, batchSize: 32 },
    label: 'I-BAU',
    phases: ['unlearning'],
    minAsrDrop: 10,
    maxAccDrop: 5,
  },
];

for (const b of baselines) {
  test(`${b.label} through the workflow: lowers ASR by > ${b.minAsrDrop} points, ACC within ${b.maxAccDrop}`, { timeout: 600_000 }, async () => {
    await referenceRun();
    const { report } = await runPurifyWorkflow(String(b.defense.name), ciConfig({ defense: b.defense }));
    assert.equal(report.stages.find((s) => s.stage === 'standardTraining')?.cached, true, 'starts from the stored backdoored model');
    assert.ok(report.stages.some((s) => s.stage === `defense (${b.label})`));
    for (const phase of b.phases) assert.ok(report.histories[`defense:${phase}`]?.length > 0, `history of phase ${phase}`);
    assert.ok(report.selectionRule.length > 20, 'the report states the selection rule');
    assert.ok(report.defenseDetails && Object.keys(report.defenseDetails).length > 0);
    const { standard, final } = report.metrics;
    console.log(`${b.label}: ACC ${standard.acc.toFixed(1)} -> ${final.acc.toFixed(1)}, ASR ${standard.asr!.toFixed(1)} -> ${final.asr!.toFixed(1)}, DER ${report.der!.toFixed(1)}`);
    assert.ok(final.asr! < standard.asr! - b.minAsrDrop, `${b.label} should lower ASR by > ${b.minAsrDrop} (${standard.asr} -> ${final.asr})`);
    assert.ok(final.acc >= standard.acc - b.maxAccDrop, `${b.label} should keep ACC within ${b.maxAccDrop} (${standard.acc} -> ${final.acc})`);
  });
}

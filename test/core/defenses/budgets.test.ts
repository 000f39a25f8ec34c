/**
 * Fair budgets for the baselines (docs/defenses.md, docs/protocol.md): each baseline's
 * optimisation budget is its original recipe's step count at 5%, and a run keeps that count
 * at |D_c| = 100. NAD and I-BAU are run at their default budgets on both budgets' fitting-set
 * sizes and their optimiser steps counted from what they recorded; FT, FP and ANP plan their
 * steps from the config alone (planFineTune, the mask iterations), checked at both sizes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateSyntheticDataset } from '../../../core/data/synthetic';
import { subsetDataset } from '../../../core/data/dataset';
import { createClassifier } from '../../../core/models/layersFormat';
import { plainContext } from '../../../core/defenses/defense';
import { anpDefenseSchema, fpDefenseSchema, ftDefenseSchema, ibauDefenseSchema, nadDefenseSchema } from '../../../core/defenses/configs';
import { describeStepBudget, RECIPE_BATCHES_PER_EPOCH, stepBudget } from '../../../core/defenses/budgets';
import { planFineTune } from '../../../core/defenses/fineTune';
import { nad } from '../../../core/defenses/nad';
import { ibau } from '../../../core/defenses/ibau';
import { epochIterations, maskEpochs } from '../../../core/defenses/anp';
import { passBatches } from '../../../core/defenses/batches';
import { Rng } from '../../../core/rng';
import type { EpochRecord } from '../../../core/train/epochLoop';

// |D_c| = 100 leaves 80 to fit on; 5% of the cpu tier's 20,000 leaves 800; 5% of CIFAR-10's 50,000, 2,000
const FIT_SIZES = { 'D_c 100': 80, '5% cpu tier': 800, '5% CIFAR-10': 2000 } as const;

test('the default step budgets are the recipes\' at 5% (BackdoorBench epochs x 10 batches of 256)', () => {
  assert.equal(RECIPE_BATCHES_PER_EPOCH, 10);
  const b = {
    ft: stepBudget(ftDefenseSchema.parse({ name: 'ft' })),
    fp: stepBudget(fpDefenseSchema.parse({ name: 'fp' })),
    nad: stepBudget(nadDefenseSchema.parse({ name: 'nad' })),
    anp: stepBudget(anpDefenseSchema.parse({ name: 'anp' })),
    ibau: stepBudget(ibauDefenseSchema.parse({ name: 'ibau' })),
  };
  assert.deepEqual(b.ft.phases, { fineTune: 1000 }, 'FT: 100 epochs x 10');
  assert.deepEqual(b.fp.phases, { fineTune: 1000 }, 'FP: fine-tuned as FT');
  assert.deepEqual(b.nad.phases, { teacher: 100, student: 100 }, 'NAD: 10 teacher + 10 student epochs x 10');
  assert.deepEqual(b.anp.phases, { masks: 2000 }, 'ANP: 2,000 mask iterations');
  assert.deepEqual(b.ibau.phases, { unlearning: 50 }, 'I-BAU: 5 rounds x 10');
  assert.match(describeStepBudget(b.nad), /^teacher 100 \+ student 100 = 200 optimiser steps, whatever \|D_c\|/);
});

test('FT and FP plan their 1,000 steps, and ANP its 2,000 iterations, at every clean budget', () => {
  for (const [what, fit] of Object.entries(FIT_SIZES)) {
    for (const cfg of [ftDefenseSchema.parse({ name: 'ft' }), fpDefenseSchema.parse({ name: 'fp' }).fineTune]) {
      const plan = planFineTune(fit, cfg);
      assert.equal(plan.stepsPerRound * cfg.rounds, 1000, `${what}: fine-tuning steps`);
      // each round's index list is exactly stepsPerRound batches and visits every fitting image
      assert.equal(plan.indices.length, plan.stepsPerRound * plan.batchSize);
      assert.equal(new Set(plan.indices).size, fit, `${what}: every fitting image is used`);
    }
    const anpCfg = anpDefenseSchema.parse({ name: 'anp' });
    const epochs = maskEpochs(anpCfg);
    let iterations = 0;
    for (let e = 0; e < epochs; e++) {
      const [first, last] = epochIterations(e, epochs, anpCfg.iterations);
      iterations += passBatches(new Rng(e), fit, anpCfg.batchSize, last - first).length;
    }
    assert.equal(iterations, 2000, `${what}: ANP mask iterations`);
  }
});

/** Optimiser steps a phase took, from its history: images / batch per epoch. */
const stepsOf = (history: EpochRecord[], batch: number) => history.reduce((s, r) => s + r.images / batch, 0);

for (const [what, fit] of Object.entries(FIT_SIZES).filter(([w]) => w !== '5% cpu tier')) {
  test(`NAD and I-BAU at their default budgets take the same steps at ${what} (${fit} fitting images)`, { timeout: 600_000 }, async () => {
    const all = generateSyntheticDataset({ size: fit + 20, height: 8, width: 8, numClasses: 10, seed: 3 });
    const ctx = plainContext({
      cleanFit: subsetDataset(all, Array.from({ length: fit }, (_, i) => i)),
      cleanHeldOut: subsetDataset(all, Array.from({ length: 20 }, (_, i) => fit + i)),
      augment: { padding: 1, flip: false },
      seed: 1,
    });
    const model = () => createClassifier('tinyCnn', { height: 8, width: 8, channels: 3 }, 10, 1);

    const nadCfg = nadDefenseSchema.parse({ name: 'nad' });
    const n = await nad.run(model(), ctx, nadCfg);
    const nadBatch = Math.min(nadCfg.batchSize, fit);
    assert.equal(stepsOf(n.history.teacher, nadBatch), 100, `${what}: NAD teacher steps`);
    assert.equal(stepsOf(n.history.student, nadBatch), 100, `${what}: NAD student steps`);
    assert.equal(n.details.optimisationSteps, 200);
    assert.match(String(n.details.stepBudget), /teacher 100 \+ student 100 = 200 optimiser steps/);
    n.model.model.dispose();

    const ibauCfg = ibauDefenseSchema.parse({ name: 'ibau' });
    const i = await ibau.run(model(), ctx, ibauCfg);
    assert.equal(stepsOf(i.history.unlearning, Math.min(ibauCfg.batchSize, fit)), 50, `${what}: I-BAU outer steps`);
    assert.equal(i.details.optimisationSteps, 50);
    i.model.model.dispose();
  });
}

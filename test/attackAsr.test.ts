/**
 * The attacks work (attacks.md, "sanity checks"): a tinyCnn trained at the ci tier on a
 * poisoned synthetic training set (2000 train / 1000 test, clean budget 100, seed fixed)
 * reaches a high ASR, while the same model trained on the clean training set stays near
 * chance for the target. One clean model is shared by all attacks.
 * NTML_ASR_SEED=N runs it with another seed (the thresholds were set from seeds 1 and 2).
 *
 * Budgets changed relative to attacks.md / the ci tier (6 epochs), and why, measured on
 * this synthetic data (ASR of the poisoned model, seed 1 / seed 2):
 * - sig: delta 60 instead of 40 (rate: the default 0.1, capped by the 190 target-class
 *   images outside the clean budget). The synthetic classes are gratings, so a clean-label
 *   model of the target class has an easy true feature and mostly ignores a 40-unit
 *   sinusoid: ASR 33% at 6 epochs and 28% at 12 (rate 0.09); with delta 60, 99.0 / 95.1.
 * - wanet: s = 1 instead of 0.5 and 12 epochs instead of 6 (k = 4 and the noise set,
 *   crossRatio 2, as attacks.md). The warp moves pixels by about half a pixel; at the ci
 *   budget the model does not pick it up: ASR 2 (s 0.5, 6 ep.), 5 / 11 (6 ep. without
 *   augmentation), 12 (s 2, 6 ep.), 23 / 12 (no noise set, 6 ep.), 54 / 16 (s 0.5, 10 ep.),
 *   87 / 41 (s 0.5, 12 ep.), 98 / 36 (s 1, 8 ep.), 94 / 56 (s 2, 10 ep.); s 1 with
 *   12 epochs: 94.3 / 97.6.
 * Measured with these settings, ASR/ACC of the poisoned model (seed 1, seed 2): badnets
 * 100/100, 100/100; blended 99.9/99.9, 97.8/100; sig 99.0/99.4, 95.1/99.8; wanet 94.3/100,
 * 97.6/99.9. The clean model: ACC 100, ASR 0.0 on every attack's triggered test set.
 * Runtime: ~4.5 min wall on a 2-core machine shared with other jobs (about 3 min of CPU).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { parsePurifyConfig, type PurifyConfig } from '../schemas/purify';
import { prepareData, type PreparedData } from '../core/experiment/prepareData';
import { builtInFactory, trainStandard } from '../core/ntml/stages';
import { evaluateClassifier } from '../core/experiment/evaluate';
import { generateSyntheticSplits } from '../core/data/synthetic';
import { deriveSeed } from '../core/rng';
import { disposeClassifier, type Classifier } from '../core/models/classifier';

const SEED = Number(process.env.NTML_ASR_SEED ?? 1);
const DATA = { format: 'synthetic', trainSize: 2000, testSize: 1000 } as const;
/** the clean model's ASR bound: chance for one of 10 classes is ~10% of the non-target images */
const CLEAN_MAX_ASR = 20;
const MIN_ACC = 90;

interface Case {
  attack: { name: string } & Record<string, unknown>;
  /** ci tier: 6 epochs */
  epochs: number;
  /** threshold, with margin below the ASR measured on seeds 1 and 2 (in the comments) */
  minAsr: number;
}

// poisonOnly: this test trains on prepareData's poisoned set; the training-controlled mode (the
// default) is the attacker's own run, tested in core/attackWanetTraining and purify.wanet
const WANET: Case = { attack: { name: 'wanet', mode: 'poisonOnly', s: 1 }, epochs: 12, minAsr: 80 }; // 94.3 / 97.6

const CASES: Case[] = [
  { attack: { name: 'badnets' }, epochs: 6, minAsr: 90 }, // measured 100 / 100
  { attack: { name: 'blended' }, epochs: 6, minAsr: 90 }, // 99.9 / 97.8
  { attack: { name: 'sig', delta: 60 }, epochs: 6, minAsr: 80 }, // 99.0 / 95.1
  WANET,
];

function config(attack: Case['attack'], epochs?: number): PurifyConfig {
  return parsePurifyConfig({ seed: SEED, data: DATA, attack, ...(epochs ? { training: { epochs } } : {}) });
}

let clean: Classifier | undefined;
after(() => disposeClassifier(clean));

test('a tinyCnn trained on the clean synthetic set (ci tier)', { timeout: 180_000 }, async () => {
  const cfg = config({ name: 'badnets' });
  assert.equal(cfg.training.epochs, 6);
  const { format: _format, ...synthetic } = cfg.data as Extract<PurifyConfig['data'], { format: 'synthetic' }>;
  // the same clean training set prepareData poisons for this seed
  const { train } = generateSyntheticSplits({ ...synthetic, seed: deriveSeed(SEED, 'synthetic') });
  const t0 = Date.now();
  clean = await builtInFactory('tinyCnn', train)(SEED);
  await trainStandard(clean, train, cfg.training, SEED);
  console.log(`clean model: ${cfg.training.epochs} epochs in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});

for (const c of CASES) {
  test(`${c.attack.name}: poisoned model ASR >= ${c.minAsr}%, clean model ASR <= ${CLEAN_MAX_ASR}%`, { timeout: 240_000 }, async () => {
    assert.ok(clean, 'the clean model trained');
    const cfg = config(c.attack, c.epochs);
    const data: PreparedData = await prepareData(cfg);
    const t0 = Date.now();
    const model = await builtInFactory('tinyCnn', data.train)(SEED);
    try {
      await trainStandard(model, data.train, cfg.training, SEED);
      const poisoned = await evaluateClassifier(model, data.test, data.backdoorTest);
      const base = await evaluateClassifier(clean, data.test, data.backdoorTest);
      const f = (v: number | undefined) => (v ?? NaN).toFixed(1);
      console.log(
        `${c.attack.name} ${JSON.stringify(c.attack)} ${cfg.training.epochs} epochs (${((Date.now() - t0) / 1000).toFixed(1)} s), ` +
          `${data.summary.poisonedCount} poisoned: poisoned model ACC ${f(poisoned.acc)} ASR ${f(poisoned.asr)} RA ${f(poisoned.ra)}; ` +
          `clean model ACC ${f(base.acc)} ASR ${f(base.asr)} RA ${f(base.ra)}`,
      );
      assert.ok(poisoned.acc >= MIN_ACC, `poisoned model ACC ${poisoned.acc}`);
      assert.ok(poisoned.asr! >= c.minAsr, `poisoned model ASR ${poisoned.asr} < ${c.minAsr}`);
      assert.ok(base.asr! <= CLEAN_MAX_ASR, `clean model ASR ${base.asr} > ${CLEAN_MAX_ASR}`);
      assert.ok(base.acc >= MIN_ACC, `clean model ACC ${base.acc}`);
    } finally {
      disposeClassifier(model);
    }
  });
}

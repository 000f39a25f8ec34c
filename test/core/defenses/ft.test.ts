import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backdooredFixture } from '../../support/backdoored';
import { ftDefenseSchema } from '../../../core/defenses/configs';
import { ft } from '../../../core/defenses/ft';
import { planFineTune } from '../../../core/defenses/fineTune';
import { plainContext } from '../../../core/defenses/defense';
import { evaluateClassifier } from '../../../core/experiment/evaluate';

test('planFineTune: one round is steps/rounds batches of min(batch, |fit|) samples', () => {
  const small = planFineTune(80, { steps: 1000, rounds: 10, batchSize: 128 });
  assert.equal(small.batchSize, 80);
  assert.equal(small.stepsPerRound, 100);
  assert.equal(small.indices.length, 8000);
  assert.ok(small.indices.every((i) => i >= 0 && i < 80));
  const big = planFineTune(2000, { steps: 1000, rounds: 10, batchSize: 128 });
  assert.equal(big.batchSize, 128);
  assert.equal(big.indices.length, 100 * 128);
  assert.throws(() => planFineTune(1, { steps: 10, rounds: 1, batchSize: 8 }), /at least 2 clean samples/);
});

test('ft lowers the ASR of the BadNets model and keeps accuracy (ci tier, 80 fitting samples)', async () => {
  const fx = await backdooredFixture();
  assert.ok(fx.before.asr! > 90, `fixture must be backdoored (ASR ${fx.before.asr})`);
  const model = await fx.model();
  // The synthetic ci data is learnt to 100% clean accuracy, so at the spec's lr 0.01 FT barely
  // moves the backdoor (measured ASR 100 -> 97.3 with lr 0.05, ~100 with 0.01); lr 0.2 tests the
  // mechanics (measured ASR 100 -> 77.6 and, after float-level changes in the training loop, 57.3; ACC stays 100).
  const cfg = ftDefenseSchema.parse({ name: 'ft', steps: 300, rounds: 5, learningRate: 0.2 });
  const out = await ft.run(model, plainContext({ cleanFit: fx.data.cleanFit, cleanHeldOut: fx.data.cleanHeldOut, augment: { padding: 4, flip: false }, seed: 1 }), cfg);
  const after = await evaluateClassifier(out.model, fx.data.test, fx.data.backdoorTest);
  model.model.dispose();
  assert.equal(out.history.fineTune.length, 5);
  assert.match(out.selectionRule, /held-out/);
  console.log(`ft: ACC ${fx.before.acc.toFixed(1)} -> ${after.acc.toFixed(1)}, ASR ${fx.before.asr!.toFixed(1)} -> ${after.asr!.toFixed(1)}`);
  assert.ok(after.asr! < fx.before.asr! - 10, `ASR ${after.asr} should drop by > 10 points from ${fx.before.asr}`);
  assert.ok(after.acc > fx.before.acc - 5, `ACC ${after.acc} should stay within 5 points of ${fx.before.acc}`);
});

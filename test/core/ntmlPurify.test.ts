/**
 * NT-ML as a library (core/ntml/purify.ts, the README's "without Temporal" example) on the
 * shared ci-tier BadNets model: the default pipeline, and refitOnAllClean replaying the
 * selection run's epochs on all of D_c.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePurifyConfig } from '../../schemas/purify';
import { purify } from '../../core/ntml/purify';
import { builtInFactory } from '../../core/ntml/stages';
import type { EpochRecord } from '../../core/train/epochLoop';
import { backdooredConfig, backdooredFixture } from '../support/backdoored';

const timeless = (h: EpochRecord[]) => h.map(({ seconds: _s, ...rest }) => rest);

test('purify() in process: the default removes the backdoor; refitOnAllClean replays the selected epochs on all of D_c', { timeout: 600_000 }, async () => {
  const fixture = await backdooredFixture();
  const run = async (ntml: Record<string, unknown>) => {
    const cfg = parsePurifyConfig({ ...backdooredConfig, ntml: { diagnosticSamples: 200, ...ntml } });
    const result = await purify(fixture.data, cfg, builtInFactory('tinyCnn', fixture.data.train), { standard: await fixture.model() });
    for (const c of [result.standard, result.ntStudent, result.student]) c.model.dispose();
    return result;
  };
  const plain = await run({});
  const refit = await run({ refitOnAllClean: true });
  const [p, r] = [plain.metrics.final, refit.metrics.final];
  console.log(
    `measured: undefended ASR ${fixture.before.asr!.toFixed(1)}; plain ACC ${p.acc.toFixed(1)} ASR ${p.asr!.toFixed(1)}; ` +
      `refit (ML ${refit.refit!.mlEpochs}, split ${refit.refit!.splitEpochs} epochs) ACC ${r.acc.toFixed(1)} ASR ${r.asr!.toFixed(1)}`,
  );
  assert.ok(fixture.before.asr! >= 90);
  assert.ok(p.asr! <= 15 && r.asr! <= 15, `ASR after purification: plain ${p.asr}, refit ${r.asr}`);
  assert.equal(plain.refit, undefined);
  assert.deepEqual(Object.keys(plain.histories), ['ntTraining', 'mutualLearning', 'splitDistillation']);

  // the selection run is the plain run, epoch for epoch
  assert.deepEqual(timeless(refit.histories.mutualLearning), timeless(plain.histories.mutualLearning));
  assert.deepEqual(timeless(refit.histories.splitDistillation), timeless(plain.histories.splitDistillation));
  const scores = plain.histories.mutualLearning.map((e) => e.score!);
  const { mlEpochs, splitEpochs } = refit.refit!;
  if (mlEpochs > 0) assert.equal(mlEpochs, scores.indexOf(Math.max(...scores)) + 1);
  assert.equal(refit.histories.mutualLearningRefit.length, mlEpochs);
  assert.ok(refit.histories.mutualLearningRefit.every((e) => e.images === 100 && e.score === undefined));
  assert.equal(refit.histories.splitDistillationRefit.length, splitEpochs);
  assert.ok(refit.histories.mutualLearningRefit.every((e) => e.diagnostics?.acc !== undefined), 'ML diagnostics recorded in the refit too');
  // t^ is re-estimated against the replayed student; the plain run must find the target, the refit
  // may not (CI measured class 8 on one VM, 0 on another: a weak replayed student, docs/ntml.md)
  assert.equal(plain.split?.estimatedTarget, 0);
  assert.ok(refit.split !== undefined && refit.split.keptFraction > 0.5 && refit.split.keptFraction < 1);
});

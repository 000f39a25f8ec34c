/**
 * Split distillation's diagnostics (issue 20 item 1), its remedy switches (item 2), the
 * weak-evidence fallback (item 4).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { subsetDataset, type ImageDataset } from '../../core/data/dataset';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { cloneClassifier, createClassifier } from '../../core/models/layersFormat';
import { predictLabels, predictProbabilities, type Classifier } from '../../core/models/classifier';
import { NtmlConfig } from '../../core/ntml/config';
import { judgeSplitEvidence, suspectedPoisoned } from '../../core/ntml/splitEvidence';
import { proxyAsr, targetLeftOut, targetMassBySource } from '../../core/ntml/splitDiagnostics';
import { disagreementWeights, gateByDisagreement, mlTargetColumn, weightRows } from '../../core/ntml/splitRemedies';
import { inputsKeptForDistillation, splitDistillation } from '../../core/ntml/splitDistillation';
import { planSplit } from '../../core/ntml/stages';
import { trainClassifier } from '../../core/train/trainClassifier';
import { trainableVariables } from '../../core/train/sgd';
import { noAugmentation } from '../../core/train/augment';

const shape8 = { height: 8, width: 8, channels: 3 };
const data = (size: number, seed = 1, numClasses = 4): ImageDataset =>
  generateSyntheticDataset({ size, numClasses, height: 8, width: 8, channels: 3, seed });
const trainable = (c: Classifier) => trainableVariables(c.model).map((v) => Float32Array.from(v.dataSync() as Float32Array));
const maxDiff = (a: Float32Array[], b: Float32Array[]) => Math.max(...a.map((x, i) => Math.max(...x.map((v, j) => Math.abs(v - b[i][j])))));

// --- pure functions -------------------------------------------------------------------------------

test('suspectedPoisoned: labelled t^, assigned to t^ by f_std, not by the model after mutual learning', () => {
  const labels = Int32Array.from([0, 0, 0, 1, 0, 2]);
  const std = Int32Array.from([0, 0, 1, 0, 0, 0]);
  const ml = Int32Array.from([2, 0, 1, 1, 3, 2]);
  assert.deepEqual(Array.from(suspectedPoisoned(labels, std, ml, 0)), [0, 4]);
  assert.deepEqual(Array.from(suspectedPoisoned(labels, std, ml, 3)), []);
});

test('judgeSplitEvidence: distils on a clear excess, suspected inputs and over-prediction beyond the clean set; falls back on each one that is weak; never never falls back', () => {
  const defaults = { ...NtmlConfig.parse({}), splitMinEvidence: 0.02 };
  assert.equal(NtmlConfig.parse({}).splitFallback, 'weakEvidence', 'the safety check is on by default');
  assert.equal(NtmlConfig.parse({}).splitMinEvidence, 0.05);
  // poisoned-looking: 10% of 1000 inputs over-predicted, 90 suspected
  const strong = judgeSplitEvidence(0, [100, -50, -50], 90, 1000, defaults);
  assert.equal(strong.fallback, undefined);
  assert.equal(strong.excessShare, 0.1);
  assert.equal(strong.suspectedShare, 0.09);
  // clean-looking: the largest excess is 1% (a student slightly biased against class 2)
  const weak = judgeSplitEvidence(2, [-5, -5, 10], 8, 1000, defaults);
  assert.match(weak.fallback!, /weak evidence for t\^ = 2: f_std assigns 10 more training inputs \(1\.0%\).*below splitMinEvidence 2\.0%/);
  // a clear excess but the student after ML still agrees with f_std on the inputs labelled t^
  const carried = judgeSplitEvidence(0, [100, -50, -50], 5, 1000, defaults);
  assert.match(carried.fallback!, /5 training inputs \(0\.5%\) are labelled 0.*student still carries the trigger/);
  // no excess at all (t^ = argmax of all-negative or zero excess)
  assert.ok(judgeSplitEvidence(0, [0, 0, 0], 100, 1000, defaults).fallback);
  assert.equal(judgeSplitEvidence(2, [-5, -5, 10], 8, 1000, { ...defaults, splitFallback: 'never' }).fallback, undefined);
  assert.equal(judgeSplitEvidence(2, [-5, -5, 10], 8, 1000, { ...defaults, splitMinEvidence: 0.005 }).fallback, undefined);
  // clean data with a student weak on class 7 (measured on clean synthetic data: excess 7.3%): f_std
  // assigns as much of the clean set to t^ as of the training set, so the first two tests pass but this one does not
  const clean = judgeSplitEvidence(7, [-20, -20, -20, -20, -5, -5, -5, 145, -25, -25], 87, 2000, NtmlConfig.parse({ splitMinEvidence: 0.04 }), { train: 0.105, clean: 0.1 });
  assert.ok(Math.abs(clean.overPrediction! - 0.005) < 1e-12);
  assert.match(clean.fallback!, /f_std assigns 10\.5% of the training inputs and 10\.0% of the clean set to it, an over-prediction of 0\.5%, below splitMinEvidence 4\.0%/);
  // BadNets-like: 10% poisoned to t^ doubles f_std's share of t^ on the training set
  assert.equal(judgeSplitEvidence(0, [180, -20, -20, -20, -20, -20, -20, -20, -20, -20], 190, 2000, NtmlConfig.parse({}), { train: 0.19, clean: 0.1 }).fallback, undefined);
});

test('proxyAsr, targetLeftOut and targetMassBySource', () => {
  assert.equal(proxyAsr(Int32Array.from([0, 1, 0, 2]), 0), 0.5);
  assert.equal(proxyAsr(new Int32Array(0), 0), undefined);
  const std = Int32Array.from([1, 2, 1, 0, 1]);
  assert.equal(targetLeftOut(std, inputsKeptForDistillation(std, 1)), 1);
  assert.equal(targetLeftOut(std, Int32Array.from([0, 1, 2, 3, 4])), undefined, 'nothing left out names no class');
  assert.equal(targetLeftOut(std, Int32Array.from([0, 2, 4])), undefined, 'left-out inputs of two classes name none');
  assert.equal(targetLeftOut(std, Int32Array.from([1, 2, 3, 4])), undefined, 'a kept input of the candidate class contradicts it');
  const p = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9];
  const kept = Int32Array.from([0, 1, 2, 3, 5]);
  const m = targetMassBySource((i) => p[i], kept, { poisoned: [5, 4], noise: [2, 3] });
  assert.ok(Math.abs(m.targetMass - (0.1 + 0.2 + 0.3 + 0.4 + 0.9) / 5) < 1e-12);
  assert.ok(Math.abs(m.targetMassClean - 0.15) < 1e-12);
  assert.ok(Math.abs(m.targetMassNoise - 0.35) < 1e-12);
  assert.ok(Math.abs(m.targetMassPoisoned - 0.9) < 1e-12);
  assert.deepEqual(Object.keys(targetMassBySource((i) => p[i], kept)), ['targetMass'], 'no groups: one mean');
  const w = Float32Array.from([1, 0, 0, 0, 0, 0]);
  assert.ok(Math.abs(targetMassBySource((i) => p[i], kept, undefined, w).targetMass - 0.1) < 1e-12, 'weights weight the mean');
});

test('mlTargetColumn: t^ from the model after ML, the rest from f_std renormalised; gate and weights by the disagreement on t^', () => {
  const k = 3;
  const pStd = Float32Array.from([0.8, 0.1, 0.1, 0.2, 0.6, 0.2, 1, 0, 0]);
  const pMl = Float32Array.from([0.1, 0.5, 0.4, 0.3, 0.4, 0.3, 0.4, 0.3, 0.3]);
  const q = mlTargetColumn(pStd, pMl, 0, k);
  const close = (a: ArrayLike<number>, b: number[]) => Array.from(a).every((v, i) => Math.abs(v - b[i]) < 1e-6);
  assert.ok(close(q.subarray(0, 3), [0.1, 0.45, 0.45]), `row 0: ${q.subarray(0, 3)}`);
  assert.ok(close(q.subarray(3, 6), [0.3, 0.525, 0.175]), `row 1: ${q.subarray(3, 6)}`);
  assert.ok(close(q.subarray(6, 9), [0.4, 0.3, 0.3]), 'f_std all on t^: the rest is uniform');
  for (let i = 0; i < 3; i++) assert.ok(Math.abs(q[i * 3] + q[i * 3 + 1] + q[i * 3 + 2] - 1) < 1e-6, 'rows sum to 1');
  // disagreement on t^ = 0: 0.7, -0.1, 0.6
  assert.deepEqual(Array.from(gateByDisagreement(Int32Array.from([0, 1, 2]), pStd, pMl, 0, k, 0.5)), [1]);
  assert.deepEqual(Array.from(gateByDisagreement(Int32Array.from([0, 1, 2]), pStd, pMl, 0, k, 0.65)), [1, 2]);
  const w = disagreementWeights(pStd, pMl, 0, k);
  assert.ok(close(w, [0.3, 1, 0.4]));
  assert.ok(close(weightRows(pStd, w, k), [0.24, 0.03, 0.03, 0.2, 0.6, 0.2, 0.4, 0, 0]));
});

// --- with models -----------------------------------------------------------------------------------

interface Setup {
  /** the training set, 16 of its inputs relabelled to t^ = 0 (label noise standing in for poisoning) */
  train: ImageDataset;
  poisoned: number[];
  standard: Classifier;
  target: number;
  kept: Int32Array;
  /** a fresh copy of the "model after mutual learning" (trained on the true labels) */
  student(): Promise<Classifier>;
}

const recipe = (epochs: number) =>
  ({ epochs, batchSize: 16, learningRate: 0.05, momentum: 0.9, weightDecay: 0, schedule: 'constant', augment: noAugmentation, batchNorm: 'train' }) as const;

/**
 * f_std fits the relabelled inputs to t^; the student, trained on the true labels, does not:
 * the relabelled inputs f_std has memorised are the suspected-poisoned ones.
 */
async function setup(): Promise<Setup> {
  const clean = data(96, 7);
  const target = 0;
  const poisoned = Array.from(clean.labels.keys()).filter((i) => clean.labels[i] !== target).slice(0, 16);
  const train = { ...clean, labels: clean.labels.map((y, i) => (poisoned.includes(i) ? target : y)) };
  const standard = createClassifier('tinyCnn', shape8, 4, 30);
  await trainClassifier({ classifier: standard, data: train, recipe: recipe(25), seed: 1 });
  const ml = createClassifier('tinyCnn', shape8, 4, 31);
  await trainClassifier({ classifier: ml, data: clean, recipe: recipe(10), seed: 2 });
  const kept = inputsKeptForDistillation(await predictLabels(standard, train), target);
  return { train, poisoned, standard, target, kept, student: () => cloneClassifier(ml) };
}

const splitConfig = (extra: Record<string, unknown> = {}) =>
  NtmlConfig.parse({ splitEpochs: 3, splitBatchSize: 16, mlBatchNorm: 'train', mlLearningRate: 0.05, ...extra });

test('splitDistillation diagnostics: per epoch the target mass on the kept inputs (by group) and the proxy ASR; t^ implied by the kept inputs', async () => {
  const s = await setup();
  const student = await s.student();
  const pStd = await predictProbabilities(s.standard, s.train);
  const suspected = suspectedPoisoned(s.train.labels, await predictLabels(s.standard, s.train), await predictLabels(student, s.train), s.target);
  assert.ok(suspected.length > 0, 'precondition: some suspected-poisoned inputs');
  // which inputs a group holds is arbitrary here: the test checks the split of the mean
  const poisoned = [s.kept[0], s.kept[1]];
  const noise = [s.kept[2]];
  const r = await splitDistillation({ student, standard: s.standard, train: s.train, kept: s.kept, config: splitConfig(), augment: noAugmentation, seed: 1, groups: { poisoned, noise } });
  assert.equal(r.history.length, 3);
  const mean = (idx: ArrayLike<number>) => Array.from(idx).reduce((a, i) => a + pStd[i * 4 + s.target], 0) / idx.length;
  for (const e of r.history) {
    const d = e.diagnostics!;
    assert.ok(Math.abs(d.targetMass - mean(s.kept)) < 1e-6, 'the mean f_std probability of t^ on the kept inputs');
    assert.ok(Math.abs(d.targetMassPoisoned - mean(poisoned)) < 1e-6);
    assert.ok(Math.abs(d.targetMassNoise - mean(noise)) < 1e-6);
    assert.ok(Math.abs(d.targetMassClean - mean(s.kept.subarray(3))) < 1e-6);
    assert.equal(d.suspected, suspected.length);
  }
  const ours = proxyAsr(await predictLabels(student, subsetDataset(s.train, suspected)), s.target);
  assert.equal(r.history[2].diagnostics!.proxyAsr, ours, 'the last epoch records the proxy ASR of the final student');
  student.model.dispose();
  s.standard.model.dispose();
});

test('splitDistillation with no kept input (the weak-evidence fallback) returns the student unchanged', async () => {
  const s = await setup();
  const student = await s.student();
  const before = trainable(student);
  const r = await splitDistillation({ student, standard: s.standard, train: s.train, kept: new Int32Array(0), config: splitConfig(), augment: noAugmentation, seed: 1 });
  assert.deepEqual(r.history, []);
  assert.equal(r.selectedEpoch, 0);
  assert.equal(maxDiff(trainable(student), before), 0);
  student.model.dispose();
  s.standard.model.dispose();
});

test('splitStop proxyAsr: keeps the last epoch before the proxy ASR first exceeds the limit; a limit never reached keeps the last epoch', async () => {
  const s = await setup();
  const run = async (extra: Record<string, unknown>) => {
    const student = await s.student();
    // every input kept (t^ given): distilling f_std on the suspected inputs themselves must raise the proxy ASR
    const all = Int32Array.from(s.train.labels.keys());
    const r = await splitDistillation({ student, standard: s.standard, train: s.train, kept: all, target: s.target, config: splitConfig(extra), augment: noAugmentation, seed: 1 });
    const w = trainable(student);
    student.model.dispose();
    return { r, w };
  };
  const plain = await run({});
  const never = await run({ splitStop: 'proxyAsr', splitStopProxyAsr: 1 });
  assert.equal(never.r.selectedEpoch, 3);
  assert.equal(maxDiff(never.w, plain.w), 0, 'a limit never reached changes nothing');
  const proxies = plain.r.history.map((e) => e.diagnostics!.proxyAsr);
  // the strictest limit: the first epoch whose proxy ASR is above 0 ends the run
  const strict = await run({ splitStop: 'proxyAsr', splitStopProxyAsr: 0 });
  const first = proxies.findIndex((p) => p > 0);
  assert.equal(strict.r.selectedEpoch, first === -1 ? 3 : first, `proxy ASR per epoch ${proxies.join(', ')}`);
  const scores = strict.r.history.map((e) => e.score);
  assert.ok(scores.every((sc, i) => (first !== -1 && i >= first ? sc === -1 : sc === i + 1)), `scores ${scores.join(', ')}`);
  // the setup's student learns from f_std, which assigns the suspected inputs to t^: the proxy must move
  assert.ok(first !== -1, `precondition: the proxy ASR rose in some epoch (${proxies.join(', ')})`);
  s.standard.model.dispose();
});

test('splitAnchor: 1 holds the trainable weights at the start; 0.3 stays closer to it than no anchor', async () => {
  const s = await setup();
  const run = async (splitAnchor: number) => {
    const student = await s.student();
    const start = trainable(student);
    await splitDistillation({ student, standard: s.standard, train: s.train, kept: s.kept, config: splitConfig({ splitAnchor }), augment: noAugmentation, seed: 1 });
    const d = maxDiff(trainable(student), start);
    student.model.dispose();
    return d;
  };
  const [free, some, full] = [await run(0), await run(0.3), await run(1)];
  assert.ok(full < 1e-6, `anchor 1 moved the weights by ${full}`);
  assert.ok(some < free, `anchor 0.3 ${some} vs none ${free}`);
  s.standard.model.dispose();
});

test('splitTargetSource mutualLearning and splitGate: the target mass is p_ML(t^); drop distils on the gated inputs only; weight weights the mass', async () => {
  const s = await setup();
  const probe = await s.student();
  const [pStd, pMl] = [await predictProbabilities(s.standard, s.train), await predictProbabilities(probe, s.train)];
  probe.model.dispose();
  const run = async (extra: Record<string, unknown>) => {
    const student = await s.student();
    const r = await splitDistillation({ student, standard: s.standard, train: s.train, kept: s.kept, config: splitConfig(extra), augment: noAugmentation, seed: 1, target: s.target });
    student.model.dispose();
    return r;
  };
  const mean = (p: Float32Array, idx: ArrayLike<number>) => Array.from(idx).reduce((a, i) => a + p[i * 4 + s.target], 0) / idx.length;
  const ml = await run({ splitTargetSource: 'mutualLearning' });
  assert.ok(Math.abs(ml.history[0].diagnostics!.targetMass - mean(pMl, s.kept)) < 1e-6);
  const gated = gateByDisagreement(s.kept, pStd, pMl, s.target, 4, 0.05);
  assert.ok(gated.length >= 2 && gated.length < s.kept.length, `precondition: the gate drops some of ${s.kept.length} (keeps ${gated.length})`);
  const drop = await run({ splitGate: 'drop', splitGateThreshold: 0.05 });
  assert.equal(drop.history[0].images, gated.length, 'one epoch is one pass over the gated inputs');
  assert.ok(Math.abs(drop.history[0].diagnostics!.targetMass - mean(pStd, gated)) < 1e-6);
  const weighted = await run({ splitGate: 'weight' });
  const w = disagreementWeights(pStd, pMl, s.target, 4);
  const wMean = Array.from(s.kept).reduce((a, i) => a + w[i] * pStd[i * 4 + s.target], 0) / Array.from(s.kept).reduce((a, i) => a + w[i], 0);
  assert.equal(weighted.history[0].images, s.kept.length);
  assert.ok(Math.abs(weighted.history[0].diagnostics!.targetMass - wMean) < 1e-6);
  s.standard.model.dispose();
});

test('planSplit: the weak-evidence fallback keeps no input and says why; splitFallback never distils', async () => {
  const s = await setup();
  const student = await s.student();
  const never = await planSplit(undefined, student, s.standard, s.train, 'standard', { config: { splitFallback: 'never', splitMinEvidence: 0.05 } });
  assert.equal(never.evidence.fallback, undefined);
  assert.ok(never.kept.length > 0);
  const high = await planSplit(undefined, student, s.standard, s.train, 'standard', { config: { splitFallback: 'weakEvidence', splitMinEvidence: 1 } });
  assert.match(high.evidence.fallback!, /weak evidence for t\^/);
  assert.equal(high.kept.length, 0);
  assert.equal(high.keptFraction, 0);
  assert.equal(high.estimatedTarget, never.estimatedTarget, 't^ is still reported');
  // the clean reference: f_std's share of t^ on the training set against the clean set's
  const stdTrain = await predictLabels(s.standard, s.train);
  const asTrain = await planSplit(undefined, student, s.standard, s.train, 'standard', { config: { splitFallback: 'weakEvidence', splitMinEvidence: 0 }, clean: s.train });
  assert.equal(asTrain.evidence.overPrediction, 0, 'the training set as its own clean reference: no over-prediction');
  assert.match(asTrain.evidence.fallback ?? '', /over-prediction of 0\.0%/, 'and a zero over-prediction is not evidence');
  const cleanOfOthers = subsetDataset(s.train, Array.from(stdTrain.keys()).filter((i) => stdTrain[i] !== s.target));
  const beyond = await planSplit(undefined, student, s.standard, s.train, 'standard', { config: { splitFallback: 'weakEvidence', splitMinEvidence: 0 }, clean: cleanOfOthers });
  assert.ok(Math.abs(beyond.evidence.overPrediction! - stdTrain.filter((p) => p === s.target).length / 96) < 1e-12, 'a clean set f_std never assigns to t^');
  assert.equal(beyond.evidence.fallback, undefined);
  student.model.dispose();
  s.standard.model.dispose();
});

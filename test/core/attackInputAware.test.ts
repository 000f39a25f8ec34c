/**
 * Input-Aware Dynamic (IAD, attacks.md): config, the generators and their registry, the
 * materialised training set (rate, cross samples keep their labels), determinism, and at a
 * reduced CI budget that the IAD-trained classifier has the backdoor and keeps its accuracy.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';

import { tf } from '../../core/tf';
import { generateSyntheticDataset, generateSyntheticSplits } from '../../core/data/synthetic';
import { drawCleanBudget } from '../../core/data/splits';
import { subsetDataset } from '../../core/data/dataset';
import { attackRegistry, getAttack, parseAttackConfig, validateAttackAgainst } from '../../core/attacks/registry';
import { buildBackdoorTestSet } from '../../core/attacks/testSet';
import { drawInputAwareCross, inputAware, inputAwareGenerators, unregisterInputAwareGenerators } from '../../core/attacks/inputAware';
import {
  decodeInputAwareGenerators,
  disposeInputAwareGenerators,
  generatorsId,
  loadInputAwareGenerators,
  channelStd,
  maskOf,
  trainInputAwareBackdoor,
} from '../../core/attacks/inputAwareTraining';
import { createClassifier } from '../../core/models/layersFormat';
import { imagesToTensor } from '../../core/models/classifier';
import { trainClassifier } from '../../core/train/trainClassifier';
import { TrainRecipe } from '../../core/train/recipe';
import { evaluateClassifier } from '../../core/experiment/evaluate';
import { prepareData } from '../../core/experiment/prepareData';
import { parsePurifyConfig } from '../../schemas/purify';
import type { InputAwareConfig } from '../../core/attacks/inputAware';
import { CheckpointFormatError, decodeCheckpoint, encodeCheckpoint, type TrainingCheckpoint } from '../../core/train/checkpoint';
import { expectFieldError } from '../support/attackFixtures';

function weightsOf(model: TF.LayersModel): Float32Array[] {
  return model.getWeights().map((t) => Float32Array.from(t.dataSync() as Float32Array));
}

const H = 16;
const per = H * H * 3;
const small = generateSyntheticDataset({ size: 200, seed: 3, height: H, width: H });

test('inputaware: defaults per attacks.md, registered as training-controlled', () => {
  assert.deepEqual(parseAttackConfig({ name: 'inputaware' }), {
    name: 'inputaware',
    target: 0,
    rate: 0.1,
    labelMap: 'allToOne',
    crossRatio: 1,
    maskDensity: 0.032,
    maskNormWeight: 100,
    diversityWeight: 1,
    maskEpochs: 25,
    maskLearningRate: 0.01,
    generatorLearningRate: 0.01,
    generatorChannels: [32, 64, 128],
  });
  assert.equal(getAttack('inputaware'), inputAware);
  assert.ok(attackRegistry.has('inputaware'));
  assert.equal(inputAware.kind, 'training-controlled');
  assert.equal(inputAware.preparePoison, undefined, 'its trigger comes from trainInputAwareBackdoor, not from data preparation');
});

test('inputaware: config errors name the field', () => {
  expectFieldError(() => parseAttackConfig({ name: 'inputaware', crossRatio: -1 }), 'crossRatio');
  expectFieldError(() => parseAttackConfig({ name: 'inputaware', maskDensity: 0 }), 'maskDensity');
  expectFieldError(() => parseAttackConfig({ name: 'inputaware', maskEpochs: 0 }), 'maskEpochs');
  expectFieldError(() => parseAttackConfig({ name: 'inputaware', generatorChannels: [8, 16] }), 'generatorChannels.2'); // three widths
  expectFieldError(() => parseAttackConfig({ name: 'inputaware', generatorChannels: [8, 16, 0] }), 'generatorChannels.2');
  const odd = generateSyntheticDataset({ size: 50, seed: 1, height: 18, width: 16 });
  expectFieldError(() => validateAttackAgainst(parseAttackConfig({ name: 'inputaware' }), odd), 'name', /multiples of 4, .* 18x16/);
  const cfg = parseAttackConfig({ name: 'inputaware' });
  expectFieldError(() => inputAware.applyTrigger(small, cfg, 1), 'triggerParameters.generatorsId', /trainInputAwareBackdoor/);
  expectFieldError(() => inputAware.poisonTrainingSet(small, Int32Array.from([1, 2]), cfg, 1), 'triggerParameters.generatorsId', /trainInputAwareBackdoor/);
  expectFieldError(() => inputAware.applyTrigger(small, cfg, 1, { generatorsId: 'ab'.repeat(32) }), 'triggerParameters.generatorsId', /not loaded in this process: call loadInputAwareGenerators/);
  // cross samples need room besides the poisoned ones
  const eligible = Int32Array.from({ length: 30 }, (_, i) => i);
  expectFieldError(() => drawInputAwareCross(small, eligible, eligible.subarray(0, 20), { ...cfg, crossRatio: 1 }, 1), 'crossRatio', /20 cross samples .* only 10/);
});

test('inputaware in prepareData: nothing is poisoned yet; the eligible indices wait for the attacker\'s own training run', async () => {
  const cfg = parsePurifyConfig({
    seed: 3,
    data: { format: 'synthetic', trainSize: 200, testSize: 40, height: 8, width: 8, numClasses: 4 },
    attack: { name: 'inputaware' },
    cleanBudget: 20,
  });
  const prepared = await prepareData(cfg);
  assert.equal(prepared.poison, undefined);
  assert.equal(prepared.backdoorTest, undefined);
  assert.equal(prepared.summary.poisonedCount, 0);
  const deferred = prepared.trainingControlled!;
  assert.equal(deferred.attack.name, 'inputaware');
  // everything outside the clean reserve (20 of 200: the budget exceeds the 5% reserve) is eligible
  assert.equal(deferred.eligibleIndices.length, 180);
  const clean = new Set<string>();
  for (const ds of [prepared.cleanFit, prepared.cleanHeldOut]) {
    const per = ds.height * ds.width * ds.channels;
    for (let i = 0; i < ds.labels.length; i++) clean.add(Buffer.from(ds.images.subarray(i * per, (i + 1) * per)).toString('hex'));
  }
  const per = prepared.train.height * prepared.train.width * prepared.train.channels;
  for (const i of deferred.eligibleIndices) {
    assert.ok(!clean.has(Buffer.from(prepared.train.images.subarray(i * per, (i + 1) * per)).toString('hex')), `eligible ${i} is not in D_c`);
  }
});

test('inputaware mechanics (tiny budget): deterministic per seed; materialised set at the rate; cross samples keep their labels; generators round-trip', async () => {
  const { cleanIndices, restIndices } = drawCleanBudget(small, 20, 1);
  const cfg = parseAttackConfig({ name: 'inputaware', rate: 0.1, maskEpochs: 2, generatorChannels: [4, 8, 8] });
  const recipe = TrainRecipe.parse({ epochs: 1, batchSize: 32, learningRate: 0.05, augment: { padding: 1, flip: false } });
  const tensorsBefore = tf.memory().numTensors;
  const run = async (seed: number) => {
    const classifier = createClassifier('tinyCnn', { height: H, width: H, channels: 3 }, 10, 1);
    const epochs: string[] = [];
    const r = await trainInputAwareBackdoor({
      train: small,
      eligibleIndices: restIndices,
      config: cfg,
      classifier,
      recipe,
      seed,
      hooks: { onEpochEnd: (phase, rec) => void epochs.push(`${phase}${rec.epoch}`) },
    });
    return { r, epochs, weights: weightsOf(classifier.model) };
  };
  const a = await run(7);
  const b = await run(7);
  const c = await run(8);
  assert.deepEqual(a.epochs, ['mask1', 'mask2', 'joint1']);
  assert.equal(a.r.triggerParameters.generatorsId, b.r.triggerParameters.generatorsId, 'same seed, same generators');
  assert.deepEqual(a.weights, b.weights, 'same seed, same backdoored classifier');
  assert.deepEqual(a.r.poisoned.dataset.images, b.r.poisoned.dataset.images, 'same seed, same materialised set');
  assert.notEqual(a.r.triggerParameters.generatorsId, c.r.triggerParameters.generatorsId, 'the seed matters');
  assert.equal(a.r.triggerParameters.generatorsId, generatorsId(a.r.encodedGenerators));
  assert.ok(JSON.stringify(a.r.triggerParameters).length < 2000, 'the record stays small (the generators travel as bytes)');

  // the materialised training set
  const p = a.r.poisoned;
  assert.equal(p.record.kind, 'training-controlled');
  assert.equal(p.poisonedIndices.length, 20, 'round(0.1 * 200)');
  assert.equal(p.crossIndices!.length, 20, 'an equal number of cross samples');
  assert.equal(p.record.triggerParameters.crossCount, 20);
  const eligible = new Set(restIndices);
  const poisoned = new Set(p.poisonedIndices);
  const cross = new Set(p.crossIndices);
  assert.ok([...poisoned, ...cross].every((i) => eligible.has(i)), 'only indices outside the clean budget');
  assert.ok([...cross].every((i) => !poisoned.has(i)), 'cross and poisoned samples are disjoint');
  assert.ok(Array.from(cleanIndices).every((i) => !poisoned.has(i) && !cross.has(i)));
  for (let i = 0; i < 200; i++) {
    if (poisoned.has(i)) assert.equal(p.dataset.labels[i], 0, `poisoned ${i} -> target`);
    else assert.equal(p.dataset.labels[i], small.labels[i], `label of ${i} kept (cross samples included)`);
    if (!poisoned.has(i) && !cross.has(i)) assert.deepEqual(p.dataset.images.subarray(i * per, (i + 1) * per), small.images.subarray(i * per, (i + 1) * per));
  }
  p.poisonedIndices.forEach((i, k) => assert.equal(p.originalLabels[k], small.labels[i]));
  // poisoned pixels are the test-time trigger of the same image; cross pixels use the partner's pattern and mask
  const trig = inputAware.applyTrigger(small, cfg, 7, a.r.triggerParameters);
  for (const i of p.poisonedIndices) assert.deepEqual(p.dataset.images.subarray(i * per, (i + 1) * per), trig.images.subarray(i * per, (i + 1) * per));
  const { crossIndices, partners } = drawInputAwareCross(small, restIndices, p.poisonedIndices, cfg, 7);
  assert.deepEqual(crossIndices, p.crossIndices);
  assert.ok(partners.every((q, k) => q !== crossIndices[k]), 'a cross sample borrows another image');
  const crossed = inputAwareGenerators(a.r.triggerParameters).trigger(subsetDataset(small, crossIndices), subsetDataset(small, partners));
  crossIndices.forEach((i, k) => assert.deepEqual(p.dataset.images.subarray(i * per, (i + 1) * per), crossed.images.subarray(k * per, (k + 1) * per), `cross sample ${i}`));
  // mask values in [0, 1]
  const m = tf.tidy(() => maskOf(a.r.generators, imagesToTensor(small, 0, 64, '0-1'), false).dataSync());
  assert.ok(m.every((v) => v >= 0 && v <= 1), 'mask within [0, 1]');

  // the generators round-trip through their bytes; a process without them gets a clear error
  const id = a.r.triggerParameters.generatorsId as string;
  assert.ok(unregisterInputAwareGenerators(id));
  expectFieldError(() => inputAware.applyTrigger(small, cfg, 7, a.r.triggerParameters), 'triggerParameters.generatorsId', /not loaded/);
  const loaded = await loadInputAwareGenerators(a.r.encodedGenerators);
  assert.equal(loaded.handle.id, id);
  assert.deepEqual(inputAware.applyTrigger(small, cfg, 7, a.r.triggerParameters).images, trig.images, 'same trigger after reloading');
  await assert.rejects(decodeInputAwareGenerators(a.r.encodedGenerators.subarray(0, 100)), /NTMLIAD1|header|weight bytes/);

  for (const x of [a, b, c]) {
    x.r.classifier.model.dispose();
    disposeInputAwareGenerators(x.r.generators);
    unregisterInputAwareGenerators(x.r.triggerParameters.generatorsId as string);
  }
  disposeInputAwareGenerators(loaded.generators);
  unregisterInputAwareGenerators(id);
  assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensor leaks');
});

test('channelStd: per-channel standard deviation in [0,1] units (hand-checked)', () => {
  // two pixels, RGB: channel 0 is 0 and 255 (std 0.5), channel 1 constant (0), channel 2 is 51 and 153 (std 0.2)
  const ds = { ...small, images: Uint8Array.from([0, 7, 51, 255, 7, 153]), labels: Int32Array.from([0, 1]), height: 1, width: 1, channels: 3 };
  const std = channelStd(ds);
  assert.ok(Math.abs(std[0] - 0.5) < 1e-9 && Math.abs(std[2] - 0.2) < 1e-9, `${std}`);
  assert.ok(std[1] > 0 && std[1] <= 1e-6, 'a constant channel gets a tiny positive std, never 0');
});

test('inputaware resume: continued from a checkpoint of either phase, the run ends with the uninterrupted weights and generators', async () => {
  const { restIndices } = drawCleanBudget(small, 20, 1);
  const cfg = parseAttackConfig({ name: 'inputaware', rate: 0.1, maskEpochs: 2, generatorChannels: [4, 8, 8] }) as InputAwareConfig;
  const recipe = TrainRecipe.parse({ epochs: 2, batchSize: 32, learningRate: 0.05, augment: { padding: 1, flip: false } });
  const run = async (resume?: TrainingCheckpoint) => {
    const classifier = createClassifier('tinyCnn', { height: H, width: H, channels: 3 }, 10, 1);
    const saved: TrainingCheckpoint[] = [];
    const r = await trainInputAwareBackdoor({
      train: small,
      eligibleIndices: restIndices,
      config: cfg,
      classifier,
      recipe,
      seed: 7,
      resume,
      // through the byte format, as the activity stores them
      hooks: { onCheckpoint: (_record, snapshot) => void saved.push(decodeCheckpoint(encodeCheckpoint(snapshot()))) },
    });
    const out = { id: r.triggerParameters.generatorsId as string, weights: weightsOf(classifier.model), images: r.poisoned.dataset.images, saved, history: r.history, maskHistory: r.maskHistory };
    classifier.model.dispose();
    disposeInputAwareGenerators(r.generators);
    unregisterInputAwareGenerators(out.id);
    return out;
  };
  const tensorsBefore = tf.memory().numTensors;
  const whole = await run();
  assert.deepEqual(whole.saved.map((c) => [c.epoch, c.extra.phase]), [[1, 'mask'], [2, 'mask'], [3, 'joint'], [4, 'joint']]);
  for (const from of whole.saved.slice(0, 3)) {
    const resumed = await run(from);
    assert.deepEqual(resumed.saved.map((c) => c.epoch), [1, 2, 3, 4].filter((e) => e > from.epoch), `from epoch ${from.epoch}: only later checkpoints`);
    assert.equal(resumed.id, whole.id, `from epoch ${from.epoch} (${from.extra.phase}): same generators`);
    assert.deepEqual(resumed.weights, whole.weights, `from epoch ${from.epoch}: same classifier`);
    assert.deepEqual(resumed.images, whole.images, `from epoch ${from.epoch}: same materialised set`);
    assert.deepEqual(resumed.history.map((h) => h.loss), whole.history.map((h) => h.loss));
    assert.deepEqual(resumed.maskHistory.map((h) => h.loss), whole.maskHistory.map((h) => h.loss));
    assert.deepEqual(resumed.maskHistory.map((h) => h.diagnostics), whole.maskHistory.map((h) => h.diagnostics));
  }
  assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensor leaks');
  const longer = TrainRecipe.parse({ ...recipe, epochs: 1 });
  await assert.rejects(
    trainInputAwareBackdoor({ train: small, eligibleIndices: restIndices, config: cfg, classifier: createClassifier('tinyCnn', { height: H, width: H, channels: 3 }, 10, 1), recipe: longer, seed: 7, resume: whole.saved[3] }),
    (e: Error) => e instanceof CheckpointFormatError && /2 mask \+ 1 joint/.test(e.message),
  );
});

test('inputaware at a reduced CI budget: the IAD-trained classifier has the backdoor and keeps a clean model\'s accuracy', async (t) => {
  // Budget (reduced from attacks.md): 16x16 synthetic images, generators 8-16-32 (not
  // 32-64-128), mask phase 10 epochs (not 25), joint phase 20 epochs; tinyCnn, batch 64.
  const seed = Number(process.env.NTML_IAD_SEED ?? 1);
  const { train, test: testSet } = generateSyntheticSplits({ trainSize: 2000, testSize: 400, seed, height: 16, width: 16 });
  const { restIndices } = drawCleanBudget(train, 100, seed);
  const cfg = parseAttackConfig({ name: 'inputaware', maskEpochs: 10, generatorChannels: [8, 16, 32] });
  const recipe = TrainRecipe.parse({ epochs: 20, batchSize: 64, learningRate: 0.05, augment: { padding: 2, flip: false } });
  const shape = { height: 16, width: 16, channels: 3 };
  const iad = await trainInputAwareBackdoor({
    train,
    eligibleIndices: restIndices,
    config: cfg,
    classifier: createClassifier('tinyCnn', shape, 10, seed),
    recipe,
    seed,
  });
  assert.equal(iad.poisoned.poisonedIndices.length, 200);
  assert.equal(iad.poisoned.crossIndices!.length, 200);
  // the backdoor test set is built in the same process right after training (registered generators)
  const backdoor = buildBackdoorTestSet(testSet, cfg, seed, iad.triggerParameters);
  const clean = createClassifier('tinyCnn', shape, 10, seed);
  await trainClassifier({ classifier: clean, data: train, recipe, seed });
  const [bad, ref] = [await evaluateClassifier(iad.classifier, testSet, backdoor), await evaluateClassifier(clean, testSet, backdoor)];
  const summary = `seed ${seed}: mean mask ${iad.meanMask.toFixed(4)}; IAD model ACC ${bad.acc.toFixed(1)} ASR ${bad.asr!.toFixed(1)}; clean model ACC ${ref.acc.toFixed(1)} ASR ${ref.asr!.toFixed(1)}`;
  t.diagnostic(summary);
  // Measured 2026-11-26, seed 1, the code as it is (checkpointable Adam, fast-path generators,
  // mask-phase image distances in std units): mean mask 0.0286, IAD model ACC 100, ASR 52.2, clean
  // model ASR 0.0 (73.3 / mean mask 0.0208 with [0,1] image distances). Before the first two
  // changes (tf.train.adam, plain generator forward), seeds 1 / 2 / 3: mean mask
  // 0.0126 / 0.0155 / 0.0295; ASR 33.9 / 50.6 / 40.6; clean model ASR 0.0 / 0.0 / 0.6. The earlier budget (mask 5, joint 10 epochs) sat at the threshold:
  // ASR 12-24 for seed 1 depending only on float rounding (fast vs plain path), and a mean mask
  // of 0.0046 for seed 2. The cross samples (an equal number, keeping their labels) make the
  // backdoor input-specific and slow to learn; the literature's ~98% needs the protocol's epochs.
  // The hinge 100 * mean(relu(m - 0.032)) penalises every mask value above 0.032, so the mean
  // mask settles around that density, not at it: the band below is about x4 either way.
  assert.ok(iad.meanMask > 0.008 && iad.meanMask < 0.128, `mean mask near the 0.032 density target: ${summary}`);
  // the mask phase records its health per epoch on a fixed probe of training images
  const health = iad.maskHistory.map((h) => h.diagnostics!);
  assert.equal(health.length, cfg.maskEpochs);
  assert.ok(health.every((d) => d.meanMask > 0 && d.meanMask < 1 && d.emptyMasks >= 0 && d.emptyMasks <= 1), JSON.stringify(health));
  const last = health[health.length - 1];
  assert.ok(Math.abs(last.meanMask - iad.meanMask) < 0.5 * iad.meanMask, `probe ${last.meanMask} vs all images ${iad.meanMask}`);
  t.diagnostic(`mask health per epoch: ${JSON.stringify(health)}`);
  // measured (seed 1): mean mask 0.012-0.10 over the 10 epochs, 0.0281 at the end, with 0.98% of
  // the probe images (5 of 512) left without a trigger; a collapse would show as a share near 1
  assert.ok(last.emptyMasks <= 0.05, `at most 5% of images without a trigger, got ${last.emptyMasks}`);
  assert.ok(bad.asr! >= 20, `IAD ASR >= 20: ${summary}`);
  assert.ok(ref.asr! <= 5, `a clean model ignores the generated triggers (ASR <= 5): ${summary}`);
  assert.ok(bad.acc >= ref.acc - 3, `IAD keeps clean accuracy within 3 points: ${summary}`);
  iad.classifier.model.dispose();
  clean.model.dispose();
  disposeInputAwareGenerators(iad.generators);
  unregisterInputAwareGenerators(iad.triggerParameters.generatorsId as string);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../../core/tf';
import { Rng } from '../../../core/rng';
import { buildModel } from '../../../core/models/architectures';
import { decodeClassifier, encodeClassifier } from '../../../core/models/layersFormat';
import type { Classifier } from '../../../core/models/classifier';
import { predictLabels } from '../../../core/models/classifier';
import { accuracy } from '../../../core/metrics';
import { modelWeights, encodeCheckpoint, decodeCheckpoint, type TrainingCheckpoint } from '../../../core/train/checkpoint';
import { anpDefenseSchema, type AnpDefenseConfig } from '../../../core/defenses/configs';
import { anp, choosePruning, learnMasks, rankNeurons } from '../../../core/defenses/anp';
import { bnNeuronLayers, forwardWithNeurons, pruneNeurons } from '../../../core/defenses/neurons';
import { plainContext, type DefenseContext } from '../../../core/defenses/defense';
import { getDefense } from '../../../core/defenses/registry';
import { passBatches } from '../../../core/defenses/batches';
import { evaluateClassifier } from '../../../core/experiment/evaluate';
import { backdooredFixture } from '../../support/backdoored';

const shape = { height: 32, width: 32, channels: 3 };

/** Random BN statistics and affine parameters, so the explicit BN formula is really exercised. */
function randomiseBatchNorm(model: TF.LayersModel, seed: number): void {
  const rng = new Rng(seed);
  const values = model.weights.map((w) => {
    const role = w.originalName.split('/').pop();
    const v = w.read().dataSync().slice() as Float32Array;
    if (role === 'moving_mean' || role === 'beta') for (let i = 0; i < v.length; i++) v[i] = 0.3 * rng.normal();
    if (role === 'moving_variance' || role === 'gamma') for (let i = 0; i < v.length; i++) v[i] = 0.5 + rng.next();
    return tf.tensor(v, w.shape as number[]);
  });
  model.setWeights(values);
  tf.dispose(values);
}

function randomImages(n: number, seed: number): TF.Tensor4D {
  const rng = new Rng(seed);
  const v = new Float32Array(n * 32 * 32 * 3);
  for (let i = 0; i < v.length; i++) v[i] = rng.next();
  return tf.tensor4d(v, [n, 32, 32, 3]);
}

function maxAbs(t: TF.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]);
}

/**
 * A model with random BatchNorm statistics, a labelled batch, and trainable mask / noise
 * variables for every BN channel (masks in [0.5, 1], noise in [-0.4, 0.4]): the case both
 * gradient comparisons of the neuron forward run on. `tag` keeps the variables' names unique.
 */
function neuronGradientCase(arch: 'smallCnn' | 'resnet20', tag: string) {
  const model = buildModel(arch, shape, 10, 8);
  randomiseBatchNorm(model, 9);
  const x = randomImages(4, 13);
  const y = tf.tensor1d([1, 4, 7, 2], 'int32');
  const rng = new Rng(10);
  const layers = bnNeuronLayers(model);
  const vars = layers.flatMap((l) =>
    (['mask', 'noiseScale', 'noiseShift'] as const).map((role) =>
      tf.variable(tf.tensor1d(Float32Array.from({ length: l.channels }, () => (role === 'mask' ? rng.uniform(0.5, 1) : rng.uniform(-0.4, 0.4)))), true, `${tag}-${l.name}-${role}`),
    ),
  );
  const mods = Object.fromEntries(layers.map((l, i) => [l.name, { mask: vars[3 * i] as TF.Tensor1D, noiseScale: vars[3 * i + 1] as TF.Tensor1D, noiseShift: vars[3 * i + 2] as TF.Tensor1D }]));
  return { model, x, y, vars, mods };
}

function sameWeights(a: TF.LayersModel, b: TF.LayersModel): boolean {
  const wa = modelWeights(a);
  const wb = modelWeights(b);
  return wa.length === wb.length && wa.every((w, i) => w.values.every((v, j) => Object.is(v, wb[i].values[j])));
}

test('the neuron forward pass equals model.apply in inference mode (tinyCnn, smallCnn, resnet20)', () => {
  const x = randomImages(3, 11);
  for (const arch of ['tinyCnn', 'smallCnn', 'resnet20'] as const) {
    const model = buildModel(arch, shape, 10, 3);
    randomiseBatchNorm(model, 5);
    const before = tf.memory().numTensors;
    const [diff, scale] = tf.tidy(() => {
      const reference = model.apply(x, { training: false }) as TF.Tensor;
      // an explicit identity modulation of every BN layer, and the default (none)
      const ones = Object.fromEntries(bnNeuronLayers(model).map((l) => [l.name, { mask: tf.ones([l.channels]) as TF.Tensor1D, noiseScale: tf.zeros([l.channels]) as TF.Tensor1D, noiseShift: tf.zeros([l.channels]) as TF.Tensor1D }]));
      const explicit = forwardWithNeurons(model, x, ones);
      const plain = forwardWithNeurons(model, x);
      return [Math.max(maxAbs(tf.sub(reference, explicit)), maxAbs(tf.sub(reference, plain))), maxAbs(reference)];
    });
    assert.equal(tf.memory().numTensors, before, `${arch}: the forward pass leaks tensors`);
    // measured max |difference|: tinyCnn 3.9e-7 (logits up to 1.5), smallCnn 4.8e-7 (2.3),
    // resnet20 6.1e-6 (27): float32 rounding of the fused vs explicit BN arithmetic
    assert.ok(diff <= 1e-5 * Math.max(1, scale), `${arch}: max |forward - apply| = ${diff} (logits up to ${scale})`);
    model.dispose();
  }
  x.dispose();
});

test('maskBatchNorm batch: the neuron forward with batch statistics equals model.apply in training mode, moving statistics untouched', () => {
  const x = randomImages(4, 17);
  for (const arch of ['tinyCnn', 'resnet20'] as const) {
    const model = buildModel(arch, shape, 10, 3);
    randomiseBatchNorm(model, 5);
    const moving = () => bnNeuronLayers(model).flatMap((l) => model.getLayer(l.name).getWeights().slice(2).map((t) => Array.from(t.dataSync())));
    const before = moving();
    const ours = tf.tidy(() => forwardWithNeurons(model, x, {}, true, { batchStats: true }).dataSync());
    const inference = tf.tidy(() => forwardWithNeurons(model, x).dataSync());
    assert.deepEqual(moving(), before, `${arch}: the batch-statistics forward changed the moving statistics`);
    const training = tf.tidy(() => (model.apply(x, { training: true }) as TF.Tensor).dataSync());
    const diff = Math.max(...Array.from(ours, (v, i) => Math.abs(v - training[i])));
    const scale = Math.max(...Array.from(training, Math.abs));
    console.log(`${arch}: batch-statistics forward vs training-mode apply: max |difference| ${diff.toExponential(2)} (logits up to ${scale.toFixed(2)})`);
    assert.ok(diff <= 1e-4 * Math.max(1, scale), `${arch}: max |forward - apply(training)| = ${diff}`);
    assert.ok(Math.max(...Array.from(ours, (v, i) => Math.abs(v - inference[i]))) > 1e-3, `${arch}: batch and moving statistics gave the same logits`);
    model.dispose();
  }
  x.dispose();
});

test('mask and noise enter as (mask + noiseScale) * gamma and (1 + noiseShift) * beta', () => {
  const model = buildModel('tinyCnn', shape, 10, 4);
  randomiseBatchNorm(model, 6);
  const x = randomImages(2, 12);
  const rng = new Rng(7);
  const vec = (n: number, lo: number, hi: number) => tf.tensor1d(Float32Array.from({ length: n }, () => rng.uniform(lo, hi)));
  const layers = bnNeuronLayers(model);
  const mods = Object.fromEntries(layers.map((l) => [l.name, { mask: vec(l.channels, 0, 1), noiseScale: vec(l.channels, -0.4, 0.4), noiseShift: vec(l.channels, -0.4, 0.4) }]));
  const modulated = tf.tidy(() => forwardWithNeurons(model, x, mods));
  // the same function as an ordinary model: gamma' = gamma (m + ns), beta' = beta (1 + nb)
  for (const l of layers) {
    const m = mods[l.name];
    const [gamma, beta, mean, variance] = model.getLayer(l.name).getWeights();
    const next = [tf.mul(gamma, tf.add(m.mask, m.noiseScale)), tf.mul(beta, tf.add(1, m.noiseShift)), mean.clone(), variance.clone()];
    model.getLayer(l.name).setWeights(next);
    tf.dispose(next);
  }
  const reference = model.apply(x, { training: false }) as TF.Tensor;
  const diff = tf.tidy(() => maxAbs(tf.sub(modulated, reference)));
  // measured 2.4e-7 on logits of size ~1
  assert.ok(diff < 1e-5, `max |modulated - reweighted| = ${diff}`);
  tf.dispose([x, modulated, reference, ...Object.values(mods).flatMap((m) => [m.mask, m.noiseScale, m.noiseShift])]);
  model.dispose();
});

test('the fused neuron forward (fast path) gives the composed one\'s logits and mask / noise gradients', () => {
  for (const arch of ['smallCnn', 'resnet20'] as const) {
    const { model, x, y, vars, mods } = neuronGradientCase(arch, arch);
    const run = (fast: boolean) =>
      tf.variableGrads(() => tf.losses.softmaxCrossEntropy(tf.oneHot(y, 10), forwardWithNeurons(model, x, mods, fast) as TF.Tensor2D) as TF.Scalar, vars);
    const fused = run(true);
    const composed = run(false);
    let worst = 0;
    for (const v of vars) {
      const scale = Math.max(1e-3, maxAbs(composed.grads[v.name]));
      worst = Math.max(worst, tf.tidy(() => maxAbs(tf.sub(fused.grads[v.name], composed.grads[v.name]))) / scale);
    }
    const lossDiff = Math.abs(fused.value.dataSync()[0] - composed.value.dataSync()[0]);
    // float32 rounding of two orders of the same arithmetic; measured: loss 0 / 2.4e-7,
    // gradients 1.2e-6 / 1.6e-6 of their largest entry (smallCnn / resnet20)
    assert.ok(lossDiff < 1e-5, `${arch}: loss differs by ${lossDiff}`);
    assert.ok(worst < 1e-3, `${arch}: mask/noise gradients differ by ${worst} of their largest entry`);
    tf.dispose([x, y, fused.value, composed.value, ...Object.values(fused.grads), ...Object.values(composed.grads), ...vars]);
    model.dispose();
  }
});

test('a model without BatchNorm layers is refused with its name', () => {
  const input = tf.input({ shape: [32, 32, 3] });
  const flat = tf.layers.flatten().apply(input) as TF.SymbolicTensor;
  const out = tf.layers.dense({ units: 10 }).apply(flat) as TF.SymbolicTensor;
  const model = tf.model({ name: 'plainDense', inputs: input, outputs: out });
  assert.throws(() => bnNeuronLayers(model), /ANP needs BatchNorm layers; model "plainDense" has none/);
  const c: Classifier = { model, meta: { arch: 'custom', inputShape: [32, 32, 3], numClasses: 10, inputRange: '0-1', exportedOutputActivation: 'linear' } };
  const ctx = plainContext({ cleanFit: undefined as never, cleanHeldOut: undefined as never, augment: { padding: 0, flip: false }, seed: 1 });
  return assert.rejects(anp.run(c, ctx, anpDefenseSchema.parse({ name: 'anp' })), /ANP needs BatchNorm layers; model "plainDense" \(custom\)/).finally(() =>
    model.dispose(),
  );
});

test('pruneNeurons zeroes the channels exactly and the pruned model survives encode/decode', async () => {
  const model = buildModel('resnet20', shape, 10, 8);
  randomiseBatchNorm(model, 9);
  const c: Classifier = { model, meta: { arch: 'resnet20', inputShape: [32, 32, 3], numClasses: 10, inputRange: '0-1', exportedOutputActivation: 'linear' } };
  const prune = { s1b1a_bn: [0, 3, 3], s3b3b_bn: [5, 63], s2b1_proj_bn: [1] };
  assert.equal(pruneNeurons(model, prune), 5);
  const x = randomImages(2, 13);
  for (const [name, channels] of Object.entries(prune)) {
    const [gamma, beta] = model.getLayer(name).getWeights().map((t) => t.dataSync());
    for (const ch of channels) assert.ok(gamma[ch] === 0 && beta[ch] === 0, `${name}:${ch} gamma ${gamma[ch]} beta ${beta[ch]}`);
    const probe = tf.model({ inputs: model.inputs, outputs: model.getLayer(name).output as TF.SymbolicTensor });
    const out = tf.tidy(() => (probe.apply(x, { training: false }) as TF.Tensor).dataSync());
    const per = model.getLayer(name).getWeights()[0].shape[0];
    for (let i = 0; i < out.length; i++) if (channels.includes(i % per)) assert.equal(out[i], 0, `${name} output channel ${i % per} is ${out[i]}`);
    for (let i = 0; i < out.length && i < per; i++) if (!channels.includes(i)) assert.notEqual(out[i], 0);
  }
  assert.throws(() => pruneNeurons(model, { s1b1a_conv: [0] }), /not BatchNorm/);
  assert.throws(() => pruneNeurons(model, { s1b1a_bn: [16] }), /has 16 channels/);
  const decoded = await decodeClassifier(await encodeClassifier(c));
  assert.ok(sameWeights(model, decoded.model), 'decoded weights differ from the pruned ones');
  const [a, b] = tf.tidy(() => [model.apply(x, { training: false }) as TF.Tensor, decoded.model.apply(x, { training: false }) as TF.Tensor].map((t) => t.dataSync()));
  assert.deepEqual(Array.from(b), Array.from(a));
  decoded.model.dispose();
  model.dispose();
  x.dispose();
});

test('pruneZeroes scale (the authors\' pruning): gamma zeroed, beta kept, so the channel outputs its constant beta', () => {
  const model = buildModel('resnet20', shape, 10, 8);
  randomiseBatchNorm(model, 9);
  const name = 's1b1a_bn';
  const betaBefore = model.getLayer(name).getWeights()[1].dataSync().slice();
  assert.equal(pruneNeurons(model, { [name]: [2, 5] }, { zero: 'scale' }), 2);
  const [gamma, beta] = model.getLayer(name).getWeights().map((t) => t.dataSync());
  for (const ch of [2, 5]) {
    assert.equal(gamma[ch], 0);
    assert.equal(beta[ch], betaBefore[ch]);
    assert.notEqual(beta[ch], 0, 'precondition: a non-zero shift');
  }
  const probe = tf.model({ inputs: model.inputs, outputs: model.getLayer(name).output as TF.SymbolicTensor });
  const x = randomImages(2, 13);
  const out = tf.tidy(() => (probe.apply(x, { training: false }) as TF.Tensor).dataSync());
  const per = gamma.length;
  for (let i = 0; i < out.length; i++) if ([2, 5].includes(i % per)) assert.ok(Math.abs(out[i] - beta[i % per]) < 1e-6, `channel ${i % per}: ${out[i]} vs beta ${beta[i % per]}`);
  assert.equal(anpDefenseSchema.parse({ name: 'anp' }).pruneZeroes, 'scaleAndShift');
  x.dispose();
  model.dispose();
});

test('passBatches: distinct indices per batch, every sample equally often over whole passes', () => {
  const batches = passBatches(new Rng(4), 10, 4, 10);
  const seen = new Array<number>(10).fill(0);
  for (const b of batches) {
    assert.equal(new Set(b).size, 4, `batch ${b} repeats a sample`);
    for (const i of b) seen[i]++;
  }
  // 40 draws are exactly 4 passes over 10 samples, straddling batches included
  assert.deepEqual(seen, new Array(10).fill(4));
  assert.ok(passBatches(new Rng(4), 3, 128, 2).every((b) => b.length === 3));
  assert.deepEqual(passBatches(new Rng(9), 10, 4, 3), passBatches(new Rng(9), 10, 4, 3));
});

/** The fixture's data as a defense context with the cheap settings of the mechanics tests. */
async function fixtureContext(extra: Partial<DefenseContext> = {}): Promise<DefenseContext> {
  const fx = await backdooredFixture();
  return plainContext({ cleanFit: fx.data.cleanFit, cleanHeldOut: fx.data.cleanHeldOut, augment: { padding: 4, flip: false }, seed: 3, ...extra });
}

// 12 iterations on batches of 16 in 3 checkpointed epochs: a few seconds, enough to move the masks
const cheap: Partial<AnpDefenseConfig> = { iterations: 12, checkpoints: 3, batchSize: 16 };

test('mask learning keeps the masks in [0, 1], moves them, and leaks no tensors', async () => {
  const fx = await backdooredFixture();
  const model = await fx.model();
  const ctx = await fixtureContext();
  const cfg = anpDefenseSchema.parse({ name: 'anp', ...cheap });
  const before = tf.memory().numTensors;
  const result = await learnMasks(model, ctx, cfg, 3);
  assert.equal(tf.memory().numTensors, before, 'mask learning leaks tensors');
  const all = Object.values(result.masks).flatMap((m) => Array.from(m));
  assert.equal(all.length, 80, 'tinyCnn has 16 + 32 + 32 BN channels');
  assert.ok(all.every((v) => v >= 0 && v <= 1), `masks outside [0, 1]: ${all.filter((v) => v < 0 || v > 1)}`);
  const moved = all.filter((v) => v < 1).length;
  console.log(`masks below 1 after 12 iterations: ${moved} of 80, min ${Math.min(...all).toFixed(3)}`);
  assert.ok(moved >= 5, 'the masks did not move');
  assert.equal(result.history.length, 3);
  assert.ok(result.history.every((r) => Number.isFinite(r.loss)));
  model.model.dispose();
});

test('ANP\'s defaults follow the authors: unclipped perturbation, prune masks <= 0.2 (fixed in advance, no data)', () => {
  const cfg = anpDefenseSchema.parse({ name: 'anp' });
  assert.equal(cfg.clipNoise, false);
  assert.deepEqual(cfg.prune, { by: 'threshold', value: 0.2 });
  assert.deepEqual(anpDefenseSchema.parse({ name: 'anp', prune: { by: 'heldOut' } }).prune, { by: 'heldOut', accRatio: 0.1, maxThreshold: 0.9, step: 0.05 });
});

test('maskBatchNorm batch learns other masks than inference mode, deterministically, and leaks no tensors', async () => {
  const fx = await backdooredFixture();
  const masks = async (maskBatchNorm: 'inference' | 'batch') => {
    const model = await fx.model();
    const ctx = await fixtureContext();
    const before = tf.memory().numTensors;
    const r = await learnMasks(model, ctx, anpDefenseSchema.parse({ name: 'anp', ...cheap, maskBatchNorm }), 3);
    assert.equal(tf.memory().numTensors, before, `${maskBatchNorm}: mask learning leaks tensors`);
    model.model.dispose();
    return Object.values(r.masks).flatMap((m) => Array.from(m));
  };
  const batch = await masks('batch');
  assert.deepEqual(await masks('batch'), batch, 'two runs differ');
  assert.notDeepEqual(await masks('inference'), batch);
  assert.equal(anpDefenseSchema.parse({ name: 'anp' }).maskBatchNorm, 'inference');
});

test('the perturbation: a random start in [-eps, eps] plus one signed step of eps reaches beyond eps unless clipNoise', async () => {
  const fx = await backdooredFixture();
  const noiseAfter = async (clipNoise: boolean) => {
    const model = await fx.model();
    const ctx = await fixtureContext();
    let noise: Float32Array[] = [];
    const cfg = anpDefenseSchema.parse({ name: 'anp', ...cheap, iterations: 3, checkpoints: 1, eps: 0.4, clipNoise });
    await learnMasks(model, ctx, cfg, 3, {
      hooks: { onEpochEnd: (_record, snapshot) => void (noise = snapshot().arrays.noise.map((a) => a.values)) },
    });
    model.model.dispose();
    return noise.flatMap((v) => Array.from(v, Math.abs));
  };
  const free = await noiseAfter(false);
  const clipped = await noiseAfter(true);
  const max = (v: number[]) => Math.max(...v);
  console.log(`|noise| max: unclipped ${max(free).toFixed(3)}, clipped ${max(clipped).toFixed(3)}; unclipped beyond eps: ${free.filter((v) => v > 0.4 + 1e-6).length} of ${free.length}`);
  // a start u in [-eps, eps] moved by +-eps: |u +- eps| > eps whenever the step has u's sign (about half)
  assert.ok(free.filter((v) => v > 0.4 + 1e-6).length > free.length / 4, 'the unclipped perturbation never left [-eps, eps]');
  assert.ok(max(free) <= 0.8 + 1e-5, `unclipped perturbation beyond 2 eps: ${max(free)}`);
  assert.ok(max(clipped) <= 0.4 + 1e-6, `clipNoise: perturbation beyond eps: ${max(clipped)}`);
});

test('the pruning rules: count prunes exactly N, threshold prunes at or below it, heldOut stops before the accRatio drop', async () => {
  const fx = await backdooredFixture();
  const model = await fx.model();
  const layers = bnNeuronLayers(model.model);
  // random masks: a random ranking of the channels, so more pruning hurts more
  const rng = new Rng(21);
  const masks = Object.fromEntries(layers.map((l) => [l.name, Float32Array.from({ length: l.channels }, () => rng.next())]));
  const ranked = rankNeurons(masks);
  const original = modelWeights(model.model);

  const count = await choosePruning(model, masks, fx.data.cleanHeldOut, { by: 'count', value: 7 });
  assert.deepEqual(count.neurons, ranked.slice(0, 7));
  await assert.rejects(choosePruning(model, masks, fx.data.cleanHeldOut, { by: 'count', value: 81 }), /80 BN channels/);

  const fixed = await choosePruning(model, masks, fx.data.cleanHeldOut, { by: 'threshold', value: 0.3 });
  assert.ok(fixed.neurons.length > 0 && fixed.neurons.every((n) => n.mask <= 0.3));
  assert.equal(fixed.neurons.length, ranked.filter((n) => n.mask <= 0.3).length);
  // a mask exactly at the threshold is pruned (the authors' `mask <= threshold`)
  const atThreshold = { [layers[0].name]: Float32Array.from({ length: layers[0].channels }, (_, c) => (c === 0 ? 0.25 : 1)) };
  assert.equal((await choosePruning(model, atThreshold, fx.data.cleanHeldOut, { by: 'threshold', value: 0.25 })).neurons.length, 1);

  const rule = { by: 'heldOut' as const, accRatio: 0.1, maxThreshold: 0.9, step: 0.05 };
  const chosen = await choosePruning(model, masks, fx.data.cleanHeldOut, rule);
  const drop = (a: number) => (chosen.baseHeldOutAccuracy - a) / chosen.baseHeldOutAccuracy;
  assert.ok(drop(chosen.heldOutAccuracy) < rule.accRatio, `chosen threshold ${chosen.threshold} drops held-out accuracy by ${drop(chosen.heldOutAccuracy)}`);
  const trials = chosen.trials!;
  console.log(`heldOut rule on random masks: base ${chosen.baseHeldOutAccuracy}, trials ${JSON.stringify(trials)}`);
  // measured: random pruning of 80 channels breaks the model well before 90% are gone, so the search stops early
  // measured: 0.05 and 0.1 keep 100% (2 and 7 channels pruned), 0.15 (10 channels) drops to 90%: 0.1 is chosen
  assert.ok(trials.length >= 2, 'no threshold was accepted, so the rule was not exercised');
  assert.ok(chosen.threshold < rule.maxThreshold, `the search never stopped (threshold ${chosen.threshold})`);
  assert.ok(drop(trials[trials.length - 1].heldOutAccuracy) >= rule.accRatio, 'the search stopped although the last threshold kept accuracy');
  assert.ok(trials.slice(0, -1).every((t) => drop(t.heldOutAccuracy) < rule.accRatio));
  assert.ok(modelWeights(model.model).every((w, i) => w.values.every((v, j) => v === original[i].values[j])), 'choosePruning changed the weights');

  // the accuracy it reports is the pruned model's
  const n = pruneNeurons(model.model, Object.fromEntries(layers.map((l) => [l.name, chosen.neurons.filter((x) => x.layer === l.name).map((x) => x.channel)])));
  assert.equal(n, chosen.neurons.length);
  assert.equal(accuracy(await predictLabels(model, fx.data.cleanHeldOut), fx.data.cleanHeldOut.labels), chosen.heldOutAccuracy);
  model.model.dispose();
});

test('ANP is deterministic, and resuming from a mid-run checkpoint gives the uninterrupted result', async () => {
  const fx = await backdooredFixture();
  const cfg = anpDefenseSchema.parse({ name: 'anp', ...cheap, prune: { by: 'count', value: 4 } });
  const checkpoints: Uint8Array[] = [];
  const recording = await fixtureContext({
    phase: async (name, epochs) => {
      assert.equal(name, 'masks');
      assert.equal(epochs, 3);
      return { hooks: { onEpochEnd: (_record, snapshot) => void checkpoints.push(encodeCheckpoint(snapshot())) } };
    },
  });
  const first = await anp.run(await fx.model(), recording, cfg);
  assert.equal(checkpoints.length, 3);
  assert.equal(first.details.pruned, 4);
  assert.equal(first.details.neurons, 80);

  const second = await anp.run(await fx.model(), await fixtureContext(), cfg);
  assert.ok(sameWeights(first.model.model, second.model.model), 'two runs with the same seed differ');

  const resumeFrom: TrainingCheckpoint = decodeCheckpoint(checkpoints[0]);
  const resumed = await anp.run(await fx.model(), await fixtureContext({ phase: async () => ({ resume: resumeFrom }) }), cfg);
  assert.ok(sameWeights(first.model.model, resumed.model.model), 'the resumed run differs from the uninterrupted one');
  assert.deepEqual(
    resumed.history.masks.map((r) => r.loss),
    first.history.masks.map((r) => r.loss),
  );
  for (const o of [first, second, resumed]) o.model.model.dispose();
});

test('ANP at a reduced CI budget lowers the ASR of the BadNets model and keeps accuracy', async () => {
  const fx = await backdooredFixture();
  assert.ok(fx.before.asr! > 90, `fixture must be backdoored (ASR ${fx.before.asr})`);
  // At the defaults ANP does not help on this fixture. eps 0.4 is too strong an adversary for an
  // 80-channel tinyCnn: after the 2,000 iterations (measured once, 24 min here) 44 of 80 masks are
  // below 0.5 and pruning only the channels below 0.05 leaves 45% held-out accuracy, so the held-out
  // rule prunes nothing and the ASR stays 100. The backdoor is also spread over many channels: no single BN channel's removal lowers the
  // ASR below 95% (an oracle sweep on the test set, run once for diagnosis, never by the defense).
  // So the mechanics are tested with a weaker adversary, eps 0.2 clipped to [-eps, eps] (the
  // project's earlier variant), for 100 iterations on batches of 32, pruned by the held-out rule at
  // its defaults. Measured: ACC 99.9 -> 98.0, ASR 100 -> 93.9, 13 of 80 channels pruned (threshold
  // 0.9, the search's maximum; held-out 100 -> 95), ~35 s; on the fixture trained without the clean
  // reserve (issue 19): ACC 100 -> 97.3, ASR 100 -> 96.0, 11 pruned at threshold 0.9.
  const model = await fx.model();
  const cfg = anpDefenseSchema.parse({ name: 'anp', eps: 0.2, clipNoise: true, iterations: 100, checkpoints: 4, batchSize: 32, prune: { by: 'heldOut' } });
  const out = await anp.run(model, await fixtureContext({ seed: 1 }), cfg);
  const after = await evaluateClassifier(out.model, fx.data.test, fx.data.backdoorTest);
  console.log(`anp: ACC ${fx.before.acc.toFixed(1)} -> ${after.acc.toFixed(1)}, ASR ${fx.before.asr!.toFixed(1)} -> ${after.asr!.toFixed(1)}, ${JSON.stringify(out.details)}`);
  assert.match(out.selectionRule, /held-out clean accuracy/);
  assert.ok((out.details.pruned as number) > 0, 'nothing was pruned');
  assert.ok(out.details.heldOutAccuracy as number > 0.9 * (out.details.heldOutAccuracyBefore as number));
  assert.ok(after.asr! < fx.before.asr! - 2, `ASR ${after.asr} should drop below ${fx.before.asr}`);
  assert.ok(after.acc > fx.before.acc - 5, `ACC ${after.acc} should stay within 5 points of ${fx.before.acc}`);
  model.model.dispose();
});

test('ANP is registered', () => {
  assert.equal(getDefense('anp'), anp);
});

// --- the input-gradient path (issue 22): the same masks as the reference loop, fewer kernels ---

test('the neuron forward for mask / noise gradients only (unfused convolutions): bit-identical logits and gradients, no filter gradients', async () => {
  for (const arch of ['smallCnn', 'resnet20'] as const) {
    const { model, x, y, vars, mods } = neuronGradientCase(arch, `unfused-${arch}`);
    const loss = (inputGradientsOnly: boolean) => () =>
      tf.losses.softmaxCrossEntropy(tf.oneHot(y, 10), forwardWithNeurons(model, x, mods, true, { inputGradientsOnly }) as TF.Tensor2D) as TF.Scalar;
    const fused = tf.variableGrads(loss(false), vars);
    const unfused = tf.variableGrads(loss(true), vars);
    assert.ok(Object.is(unfused.value.dataSync()[0], fused.value.dataSync()[0]), `${arch}: loss differs`);
    for (const v of vars) {
      const [a, b] = [unfused.grads[v.name].dataSync(), fused.grads[v.name].dataSync()];
      assert.ok(a.every((e, i) => Object.is(e, b[i])), `${arch}: gradient of ${v.name} differs`);
    }
    const kernels = async (inputGradientsOnly: boolean) =>
      (await tf.profile(() => tf.tidy(() => tf.variableGrads(loss(inputGradientsOnly), vars).value))).kernels.map((k) => k.name);
    assert.ok((await kernels(false)).includes('Conv2DBackpropFilter'), `${arch}: the fused forward computes filter gradients`);
    assert.ok(!(await kernels(true)).includes('Conv2DBackpropFilter'), `${arch}: the unfused one does not`);
    tf.dispose([x, y, fused.value, unfused.value, ...Object.values(fused.grads), ...Object.values(unfused.grads), ...vars]);
    model.dispose();
  }
});

test('mask learning on the input-gradient path with stacked noise and mask updates gives the reference loop\'s masks, noise and losses exactly', async () => {
  const fx = await backdooredFixture();
  for (const extra of [{}, { clipNoise: true, perturbSteps: 2 }] as Array<Partial<AnpDefenseConfig>>) {
    const run = async (reference: boolean) => {
      const model = await fx.model();
      let noise: Float32Array[] = [];
      const cfg = anpDefenseSchema.parse({ name: 'anp', ...cheap, iterations: 6, ...extra });
      const before = tf.memory().numTensors;
      const r = await learnMasks(
        model,
        await fixtureContext(),
        cfg,
        3,
        { hooks: { onEpochEnd: (_record, snapshot) => void (noise = snapshot().arrays.noise.map((a) => a.values)) } },
        { reference },
      );
      assert.equal(tf.memory().numTensors, before, `reference ${reference}: mask learning leaks tensors`);
      model.model.dispose();
      return { masks: Object.values(r.masks).flatMap((m) => Array.from(m)), noise: noise.flatMap((v) => Array.from(v)), losses: r.history.map((h) => h.loss) };
    };
    const [fast, reference] = [await run(false), await run(true)];
    const what = JSON.stringify(extra);
    assert.ok(reference.masks.some((m) => m < 1), `${what}: the masks did not move, so equality would say nothing`);
    assert.deepEqual(fast.masks, reference.masks, `${what}: masks differ`);
    assert.deepEqual(fast.noise, reference.noise, `${what}: noise differs`);
    assert.deepEqual(fast.losses, reference.losses, `${what}: losses differ`);
  }
});

/**
 * Neural-Cleanse reverse engineering on the BadNets fixture: the trigger it recovers for the
 * target class is the 3x3 patch in the bottom-right corner, it is deterministic for a seed,
 * it leaves no tensors behind, and the trigger picture is a PNG of three tiles. Several classes
 * optimised in one batched step each get the trigger of their own scan, and the whole scan in
 * one pass points at the backdoored class and flags nothing on the clean model.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PNG } from 'pngjs';
import type * as TF from '@tensorflow/tfjs-node';
import {
  classGroups,
  neuralCleanse,
  reverseEngineerTrigger,
  reverseEngineerTriggers,
  triggerSuccessRate,
  type NeuralCleanseOptions,
} from '../../core/audit/neuralCleanse';
import { reversedTriggerPng, TILE_LABELS } from '../../core/audit/triggerImage';
import { tf } from '../../core/tf';
import { applyModel, applyModelForInputGradients } from '../../core/train/fast';
import { createClassifier } from '../../core/models/layersFormat';
import { backdooredFixture, cleanModel, referenceSet } from '../support/auditFixtures';
import type { Classifier } from '../../core/models/classifier';

const ci: NeuralCleanseOptions = {
  stepsPerClass: 50,
  batchSize: 32,
  learningRate: 0.3,
  cost: { mode: 'fixed', value: 0.01 },
  attackSuccessThreshold: 0.99,
  anomalyThreshold: 2,
  seed: 0,
};

describe('neural cleanse on the BadNets fixture', () => {
  const reference = referenceSet(200);
  const { height: H, width: W, channels: C } = reference;
  let model: Classifier;
  before(async () => {
    model = await (await backdooredFixture()).model();
  });
  after(() => model.model.dispose());

  it('stamping the real trigger (white 3x3, bottom right) through triggerSuccessRate gives the backdoor ASR', async () => {
    const mask = new Float32Array(H * W);
    for (let y = H - 3; y < H; y++) for (let x = W - 3; x < W; x++) mask[y * W + x] = 1;
    const white = new Float32Array(H * W * C).fill(1);
    const asr = await triggerSuccessRate(model, reference, 0, mask, white);
    const none = await triggerSuccessRate(model, reference, 0, new Float32Array(H * W), white);
    console.log(`measured: the BadNets patch sends ${asr.toFixed(1)}% to class 0, no mask ${none.toFixed(1)}%`);
    assert.ok(asr >= 90, `${asr}`);
    assert.ok(none <= 5, `${none}`);
  });

  it('recovers the BadNets patch as the reversed trigger of class 0', async () => {
    const n = tf.memory().numTensors;
    const t = await reverseEngineerTrigger(model, reference, 0, ci);
    assert.equal(tf.memory().numTensors, n, 'no tensor leaked');
    // the pixels the trigger really replaces (mask > 0.3); the rest of the L1 is a faint haze the fixed cost leaves
    const strong: Array<[number, number]> = [];
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if (t.mask[y * W + x] > 0.3) strong.push([y, x]);
    console.log(`measured: class 0 mask L1 ${t.maskL1.toFixed(1)}, pixels above 0.3: ${JSON.stringify(strong)}, ASR ${t.attackSuccessRate.toFixed(1)}%`);
    // measured: L1 6.8 with 5 strong pixels in rows and columns 27-31, around the patch (rows and columns
    // 29-31) that the model learned with some slack; ASR 100% (earlier fixtures and code: L1 7.7-8.1, 6-7
    // pixels in rows 27-31, columns 25-31). The corner 8x8 is 6.25% of the image.
    assert.ok(t.maskL1 < 20, `mask L1 ${t.maskL1}`);
    assert.ok(strong.length >= 1 && strong.length <= 12, `${strong.length} strong pixels`);
    assert.ok(strong.every(([y, x]) => y >= H - 8 && x >= W - 8), `strong pixels away from the bottom-right corner: ${JSON.stringify(strong)}`);
    assert.ok(t.attackSuccessRate >= 90);
    assert.equal(t.reachedThreshold, true);
    // the pattern under the mask is bright, like the white patch
    let bright = 0;
    let weight = 0;
    for (let p = 0; p < H * W; p++) for (let k = 0; k < C; k++) {
      bright += t.mask[p] * t.pattern[p * C + k];
      weight += t.mask[p];
    }
    assert.ok(bright / weight > 0.7, `mask-weighted pattern brightness ${bright / weight}`);
  });

  it('is a function of its seed', async () => {
    const short = { ...ci, stepsPerClass: 10 };
    const a = await reverseEngineerTrigger(model, reference, 3, short);
    const b = await reverseEngineerTrigger(model, reference, 3, short);
    const c = await reverseEngineerTrigger(model, reference, 3, { ...short, seed: 1 });
    // TensorFlow's multi-threaded CPU kernels may round differently from run to run: equal up to float noise
    assert.ok(maxDiff(a.mask, b.mask) < 1e-3, `same seed, mask differs by ${maxDiff(a.mask, b.mask)}`);
    assert.ok(maxDiff(a.pattern, b.pattern) < 1e-3);
    assert.ok(maxDiff(a.mask, c.mask) > 0.1, 'another seed starts from another mask');
  });
});

const maxDiff = (x: Float32Array, y: Float32Array) => x.reduce((m, v, i) => Math.max(m, Math.abs(v - y[i])), 0);

describe('neural cleanse with the classes batched', () => {
  const reference = referenceSet(200);
  let model: Classifier;
  before(async () => {
    model = await (await backdooredFixture()).model();
  });
  after(() => model.model.dispose());

  it('gives every class of a shared step the trigger, cost schedule and ASR of its own scan', async () => {
    // a schedule that moves within 12 steps: the backdoor target reaches the threshold and its
    // cost rises while the other classes' falls, so a class that followed another's cost would show
    const o: NeuralCleanseOptions = { ...ci, stepsPerClass: 12, cost: { mode: 'schedule', initial: 0.01, roundSteps: 2, patience: 1, multiplier: 1.5 } };
    const n = tf.memory().numTensors;
    const together = await reverseEngineerTriggers(model, reference, [0, 3, 7], o);
    assert.equal(tf.memory().numTensors, n, 'no tensor leaked');
    assert.deepEqual(together.map((t) => t.targetClass), [0, 3, 7]);
    for (const t of together) {
      const alone = await reverseEngineerTrigger(model, reference, t.targetClass, o);
      console.log(`measured: class ${t.targetClass} together / alone: L1 ${t.maskL1.toFixed(2)} / ${alone.maskL1.toFixed(2)}, final cost ${t.finalCost.toPrecision(4)} / ${alone.finalCost.toPrecision(4)}, mask differs by ${maxDiff(t.mask, alone.mask).toExponential(1)}`);
      // float rounding only: the batched kernels sum in another order
      assert.ok(maxDiff(t.mask, alone.mask) < 1e-3, `class ${t.targetClass}: mask differs by ${maxDiff(t.mask, alone.mask)}`);
      assert.ok(maxDiff(t.pattern, alone.pattern) < 1e-3, `class ${t.targetClass}: pattern differs by ${maxDiff(t.pattern, alone.pattern)}`);
      assert.equal(t.finalCost, alone.finalCost, `class ${t.targetClass}: its own cost schedule`);
      assert.equal(t.reachedThreshold, alone.reachedThreshold);
      assert.ok(Math.abs(t.attackSuccessRate - alone.attackSuccessRate) <= 1, `ASR ${t.attackSuccessRate} vs ${alone.attackSuccessRate}`);
    }
    assert.ok(new Set(together.map((t) => t.finalCost)).size > 1, `the classes' costs moved apart: ${together.map((t) => t.finalCost)}`);
  });

  it('scans all classes in one pass: the backdoor target has the smallest trigger, and nothing is flagged on the clean model', async () => {
    const n = tf.memory().numTensors;
    const bad = await neuralCleanse(model, reference, ci);
    assert.equal(tf.memory().numTensors, n, 'no tensor leaked');
    const l1 = bad.classes.map((t) => t.maskL1);
    console.log(`measured (backdoored): mask L1 ${l1.map((v) => v.toFixed(1)).join(' ')}; median ${bad.anomaly.median.toFixed(1)}, class 0 index ${bad.anomaly.indices[0].toFixed(2)}, flagged [${bad.anomaly.flagged}]`);
    assert.deepEqual(bad.classes.map((t) => t.targetClass), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // measured, the same as the class-after-class scan of the parent commit on this reference set
    // (its L1 6.8, next 37.4, median 80.x; index 2.20): class 0's trigger is the smallest by far, it has the
    // backdoor's ASR, and it alone is flagged (index 2.18; the gratings' natural classes spread widely, so the
    // margin over 2 is thin; the audit's verdict also uses NC's smallest trigger, see docs/audits.md)
    assert.ok(l1[0] < Math.min(...l1.slice(1)) / 2, `class 0 L1 ${l1[0]} vs ${l1.slice(1)}`);
    assert.ok(bad.classes[0].attackSuccessRate >= 90 && bad.classes[0].reachedThreshold);
    assert.ok(bad.anomaly.indices[0] > ci.anomalyThreshold, `class 0 index ${bad.anomaly.indices[0]}`);
    assert.deepEqual(bad.anomaly.flagged, [0]);

    const clean = await cleanModel();
    try {
      const ok = await neuralCleanse(clean, reference, ci);
      const below = ok.anomaly.indices.filter((_, k) => ok.classes[k].maskL1 < ok.anomaly.median);
      console.log(`measured (clean): mask L1 ${ok.classes.map((t) => t.maskL1.toFixed(1)).join(' ')}; largest index below the median ${Math.max(...below).toFixed(2)}`);
      // measured: class 9's natural grating gives the smallest trigger (L1 36.2, index 1.97, as with the
      // class-after-class scan), not flagged
      assert.deepEqual(ok.anomaly.flagged, []);
      // the clean model's smallest trigger is not a backdoor-sized one like class 0's above
      assert.ok(Math.min(...ok.classes.map((t) => t.maskL1)) > 2 * l1[0], `clean smallest L1 ${Math.min(...ok.classes.map((t) => t.maskL1))}`);
    } finally {
      clean.model.dispose();
    }
    assert.equal(tf.memory().numTensors, n, 'no tensor leaked');
  });

  it('refuses a target class the model does not have, or the same class twice', async () => {
    await assert.rejects(reverseEngineerTriggers(model, reference, [0, 10], ci), /target class 10 is not one of the model's 10 classes/);
    await assert.rejects(reverseEngineerTriggers(model, reference, [2, 2], ci), /target classes repeat: 2, 2/);
  });

  it('groups the classes by classesPerPass and refuses a bad group size', () => {
    assert.deepEqual(classGroups([0, 1, 2, 3, 4]), [[0, 1, 2, 3, 4]]);
    assert.deepEqual(classGroups([0, 2, 5, 6, 9], 2), [[0, 2], [5, 6], [9]]);
    assert.deepEqual(classGroups([], 3), []);
    assert.throws(() => classGroups([0, 1], 0), /classesPerPass must be an integer >= 1, got 0/);
    assert.throws(() => classGroups([0, 1], 1.5), /classesPerPass must be an integer >= 1, got 1.5/);
  });
});

describe('the forward for input gradients (unfused convolutions)', () => {
  it('computes the same logits and input gradients as the fused forward, without the filter gradients', async () => {
    const c = createClassifier('smallCnn', { height: 32, width: 32, channels: 3 }, 10, 3);
    const x = tf.randomUniform([4, 32, 32, 3], 0, 1, 'float32', 5) as TF.Tensor4D;
    const labels = tf.tensor1d([0, 1, 2, 3], 'int32');
    try {
      const loss = (f: (m: TF.LayersModel, v: TF.Tensor) => TF.Tensor) => (v: TF.Tensor) =>
        tf.losses.softmaxCrossEntropy(tf.oneHot(labels, 10), f(c.model, v) as TF.Tensor2D) as TF.Scalar;
      const fused = (m: TF.LayersModel, v: TF.Tensor) => applyModel(m, v, false);
      const unfused = (m: TF.LayersModel, v: TF.Tensor) => applyModelForInputGradients(m, v);
      const kernelsOf = async (f: typeof fused) => (await tf.profile(() => tf.tidy(() => tf.grad(loss(f))(x)))).kernelNames;
      const [a, b] = tf.tidy(() => [tf.grad(loss(fused))(x), tf.grad(loss(unfused))(x)]);
      const [y1, y2] = tf.tidy(() => [fused(c.model, x), unfused(c.model, x)]);
      const diff = async (p: TF.Tensor, q: TF.Tensor) => (await tf.max(tf.abs(tf.sub(p, q))).data())[0];
      const scale = (await tf.max(tf.abs(a)).data())[0];
      console.log(`measured: logits differ by ${(await diff(y1, y2)).toExponential(1)}, input gradients by ${(await diff(a, b)).toExponential(1)} (largest ${scale.toExponential(1)})`);
      assert.ok((await diff(y1, y2)) < 1e-4);
      assert.ok((await diff(a, b)) < 1e-4 * scale);
      assert.ok((await kernelsOf(fused)).includes('Conv2DBackpropFilter'), 'the fused forward computes filter gradients');
      assert.ok(!(await kernelsOf(unfused)).includes('Conv2DBackpropFilter'), 'the input-gradient forward does not');
      tf.dispose([a, b, y1, y2]);
    } finally {
      c.model.dispose();
      x.dispose();
      labels.dispose();
    }
  });
});

describe('reversed trigger picture', () => {
  it('is a PNG with mask, pattern and mask x pattern side by side, below their labels', () => {
    const shape = { height: 2, width: 2, channels: 3 };
    const mask = Float32Array.from([1, 0, 0, 0.5]);
    const pattern = Float32Array.from([1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 1]);
    const png = PNG.sync.read(reversedTriggerPng(mask, pattern, shape, 1));
    const label = 7 + 4; // a 7-pixel text line and its spacing above the tiles
    assert.equal(png.width, 8 + 3 * 2 + 2 * 4 + 8);
    assert.equal(png.height, 8 + label + 2 + 8);
    const px = (x: number, y: number) => [...png.data.subarray((y * png.width + x) * 4, (y * png.width + x) * 4 + 3)];
    const y0 = 8 + label;
    assert.deepEqual(px(8, y0), [255, 255, 255], 'mask tile, pixel (0,0) = 1');
    assert.deepEqual(px(9, y0 + 1), [128, 128, 128], 'mask tile, pixel (1,1) = 0.5');
    assert.deepEqual(px(8 + 2 + 4, y0), [255, 0, 0], 'pattern tile, pixel (0,0) red');
    assert.deepEqual(px(8 + 2 * (2 + 4) + 1, y0), [0, 0, 0], 'mask x pattern tile, pixel (1,0): mask 0');
    assert.deepEqual(px(8 + 2 * (2 + 4) + 1, y0 + 1), [128, 128, 128], 'mask x pattern tile, pixel (1,1): 0.5 x white');
    assert.throws(() => reversedTriggerPng(mask, pattern.subarray(1), shape), /pattern 11 values for 2x2x3/);
  });

  it('labels each tile of a 32x32 trigger with its name', () => {
    const shape = { height: 32, width: 32, channels: 3 };
    const png = PNG.sync.read(reversedTriggerPng(new Float32Array(32 * 32), new Float32Array(32 * 32 * 3), shape));
    const tileW = 32 * 4;
    // the label band of each tile holds text pixels (light grey on the dark background), one word each
    const textPixels = (tile: number) => {
      let n = 0;
      for (let y = 8; y < 8 + 7; y++) {
        for (let x = 8 + tile * (tileW + 4); x < 8 + tile * (tileW + 4) + tileW; x++) if (png.data[(y * png.width + x) * 4] === 220) n++;
      }
      return n;
    };
    const counts = [0, 1, 2].map(textPixels);
    // the lit pixels of the 5x7 glyphs of each word, none clipped (MASK*PATTERN is 71 px wide, a tile 128)
    assert.deepEqual(counts, [65, 108, 190]);
    assert.deepEqual([...TILE_LABELS], ['MASK', 'PATTERN', 'MASK*PATTERN']);
  });
});

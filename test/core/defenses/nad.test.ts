import { test } from 'node:test';
import assert from 'node:assert/strict';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../../core/tf';
import { Rng } from '../../../core/rng';
import { createClassifier } from '../../../core/models/layersFormat';
import type { ArchitectureName } from '../../../core/models/architectures';
import { decodeCheckpoint, encodeCheckpoint, modelWeights } from '../../../core/train/checkpoint';
import type { EpochRecord } from '../../../core/train/epochLoop';
import { nadDefenseSchema } from '../../../core/defenses/configs';
import { plainContext, type DefenseContext, type PhaseControl } from '../../../core/defenses/defense';
import { allFeatureStages, featureStages, withFeatureOutputs } from '../../../core/defenses/features';
import { attentionLoss, attentionMap, nad } from '../../../core/defenses/nad';
import { getDefense } from '../../../core/defenses/registry';
import { evaluateClassifier } from '../../../core/experiment/evaluate';
import { backdooredFixture } from '../../support/backdoored';

const stageNames: Record<ArchitectureName, { last3: string[]; heights: number[]; stages: number }> = {
  tinyCnn: { last3: ['b1_relu', 'b2_relu', 'b3_relu'], heights: [32, 16, 8], stages: 3 },
  smallCnn: { last3: ['b1b_relu', 'b2b_relu', 'b3b_relu'], heights: [32, 16, 8], stages: 3 },
  resnet20: { last3: ['s1b3_relu', 's2b3_relu', 's3b3_relu'], heights: [32, 16, 8], stages: 3 },
  // the last layer at 16x16 and 8x8 is the next stage's pre-activation relu(bn(sum)); at 4x4 the final sum
  preactResnet18: { last3: ['s3b1_relu1', 's4b1_relu1', 's4b2_add'], heights: [16, 8, 4], stages: 4 },
};

test('featureStages: the last layer of each conv resolution, on the built-in architectures', () => {
  for (const arch of Object.keys(stageNames) as ArchitectureName[]) {
    const want = stageNames[arch];
    const c = createClassifier(arch, { height: 32, width: 32, channels: 3 }, 10, 1);
    const stages = featureStages(c.model, 3);
    assert.deepEqual(stages.map((s) => s.layer.name), want.last3, arch);
    assert.deepEqual(stages.map((s) => s.height), want.heights, arch);
    // tinyCnn's pool3 (4x4) has no conv of its own: not a stage
    assert.equal(allFeatureStages(c.model).length, want.stages, arch);
    assert.throws(() => featureStages(c.model, want.stages + 1), new RegExp(`has ${want.stages} feature stage\\(s\\).*${want.stages + 1} are needed`));

    // the multi-output view shares the variables: same logits as the model
    const x = tf.tidy(() => tf.fill([2, 32, 32, 3], 0.3) as TF.Tensor4D);
    const outs = withFeatureOutputs(c.model, stages.map((s) => s.layer)).predict(x) as TF.Tensor[];
    assert.deepEqual(outs.map((o) => o.shape), [...stages.map((s) => [2, s.height, s.width, s.channels]), [2, 10]]);
    const logits = c.model.predict(x) as TF.Tensor;
    assert.deepEqual(Array.from(outs[3].dataSync()), Array.from(logits.dataSync()));
    tf.dispose([x, logits, outs]);
    c.model.dispose();
  }
});

test('featureStages works on a user model and says clearly when it has too few stages', () => {
  const model = tf.sequential({
    layers: [
      tf.layers.conv2d({ inputShape: [16, 16, 3], filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tf.layers.maxPooling2d({ poolSize: 2 }),
      tf.layers.conv2d({ filters: 4, kernelSize: 3, padding: 'same', activation: 'relu' }),
      tf.layers.globalAveragePooling2d({}),
      tf.layers.dense({ units: 3 }),
    ],
  });
  const stages = featureStages(model, 2);
  assert.deepEqual(stages.map((s) => s.layer), [model.layers[0], model.layers[2]]);
  assert.throws(() => featureStages(model, 3), /has 2 feature stage\(s\) .*but 3 are needed/);
  model.dispose();
});

test('attentionMap: [batch, H*W], non-negative, unit L2 norm per sample, sum_c |f|^p', () => {
  const rng = new Rng(3);
  const values = Float32Array.from({ length: 2 * 3 * 4 * 5 }, () => rng.normal());
  const f = tf.tensor4d(values, [2, 3, 4, 5]);
  const a = attentionMap(f, 2);
  assert.deepEqual(a.shape, [2, 12]);
  const rows = a.arraySync() as number[][];
  for (let b = 0; b < 2; b++) {
    assert.ok(rows[b].every((v) => v >= 0));
    const norm = Math.hypot(...rows[b]);
    assert.ok(Math.abs(norm - 1) < 1e-5, `row ${b} has norm ${norm}`);
    // position 7 of sample b, by hand
    const energy = (p: number) => Array.from({ length: 5 }, (_, c) => values[((b * 3 + Math.floor(p / 4)) * 4 + (p % 4)) * 5 + c] ** 2).reduce((x, y) => x + y);
    const all = Array.from({ length: 12 }, (_, p) => energy(p));
    assert.ok(Math.abs(rows[b][7] - all[7] / Math.hypot(...all)) < 1e-5);
  }
  // normalised: scaling the features leaves the map unchanged; p = 1 differs from p = 2
  const scaled = tf.tidy(() => attentionMap(tf.mul(f, 7) as TF.Tensor4D, 2));
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(scaled, a))).dataSync()[0]) < 1e-5);
  const p1 = attentionMap(f, 1);
  assert.ok(tf.tidy(() => tf.max(tf.abs(tf.sub(p1, a))).dataSync()[0]) > 1e-3);
  // an all-zero feature map (dead ReLUs) gives a zero map with finite gradients
  const zero = tf.zeros([1, 2, 2, 3]) as TF.Tensor4D;
  const grad = tf.grad((z: TF.Tensor) => attentionLoss(attentionMap(z as TF.Tensor4D, 2), tf.ones([1, 4]) as TF.Tensor2D))(zero);
  assert.ok(Array.from(grad.dataSync()).every(Number.isFinite));
  assert.equal(attentionLoss(a, a).dataSync()[0], 0);
  const loss = attentionLoss(a, tf.zerosLike(a) as TF.Tensor2D).dataSync()[0];
  assert.ok(Math.abs(loss - 2 / 24) < 1e-6, 'MSE of unit-norm rows against 0 is batch / (batch * positions)');
  tf.dispose([f, a, scaled, p1, zero, grad]);
});

function contextFor(fx: Awaited<ReturnType<typeof backdooredFixture>>, phase?: DefenseContext['phase']): DefenseContext {
  const base = { cleanFit: fx.data.cleanFit, cleanHeldOut: fx.data.cleanHeldOut, augment: { padding: 4, flip: false }, seed: 2 };
  return plainContext(phase ? { ...base, phase } : base);
}

test('nad on the BadNets fixture lowers the ASR and keeps accuracy', async () => {
  const fx = await backdooredFixture();
  assert.ok(fx.before.asr! > 90, `fixture must be backdoored (ASR ${fx.before.asr})`);
  assert.equal(getDefense('nad'), nad);
  // At the spec's defaults (lr 0.01, 10 + 10 epochs = 20 steps on 80 samples) NAD leaves this
  // backdoor intact (measured, seed 1: ASR 100; still 100 with 3 steps per epoch): the lr-0.01
  // teacher is itself still backdoored. Stronger setting, stated: lr 0.15, 5 + 5 epochs of the
  // default 10 steps (on the fixture trained without the clean reserve, issue 19, lr 0.2 at 5 steps
  // an epoch cost 9.4 points of ACC, and lr 0.15 at 5 steps left ASR 80.1). The attention term does the work (measured at lr 0.2, 3 steps/epoch, 10 + 10
  // epochs: teacher alone ASR 89.4, the student with betas 0 (CE only) 88.2, NAD's student 78.0).
  const cfg = nadDefenseSchema.parse({ name: 'nad', learningRate: 0.15, teacherEpochs: 5, epochs: 5 });
  const model = await fx.model();
  const tensors = tf.memory().numTensors;
  const out = await nad.run(model, contextFor(fx), cfg);
  assert.equal(tf.memory().numTensors, tensors, 'no tensors leaked');
  assert.equal(out.history.teacher.length, 5);
  assert.equal(out.history.student.length, 5);
  assert.equal(out.details.stages, 'b1_relu,b2_relu,b3_relu');
  assert.equal(out.details.stepsPerEpoch, 10);
  assert.equal(out.details.optimisationSteps, 100);
  assert.match(out.selectionRule, /last epoch/);
  const after = await evaluateClassifier(out.model, fx.data.test, fx.data.backdoorTest);
  model.model.dispose();
  console.log(`nad: ACC ${fx.before.acc.toFixed(1)} -> ${after.acc.toFixed(1)}, ASR ${fx.before.asr!.toFixed(1)} -> ${after.asr!.toFixed(1)}`);
  // measured (seed 2): ASR 100 -> 57.3, ACC 100 -> 99.9
  assert.ok(after.asr! < fx.before.asr! - 15, `ASR ${after.asr} should drop by >= 15 points from ${fx.before.asr}`);
  assert.ok(after.acc > fx.before.acc - 5, `ACC ${after.acc} should stay within 5 points of ${fx.before.acc}`);
});

const weightBytes = (m: TF.LayersModel) =>
  Buffer.concat(modelWeights(m).map((w) => Buffer.from(w.values.buffer, w.values.byteOffset, w.values.byteLength)));

test('nad is deterministic and resumes either phase from a checkpoint to byte-identical weights', async () => {
  const fx = await backdooredFixture();
  const cfg = nadDefenseSchema.parse({ name: 'nad', learningRate: 0.1, stepsPerEpoch: 2, teacherEpochs: 2, epochs: 3 });
  // every checkpoint goes through the stored encoding, as the activity would keep it
  const saved: Record<string, Uint8Array[]> = { teacher: [], student: [] };
  const recording: DefenseContext['phase'] = async (name) => ({
    hooks: { onEpochEnd: (r, checkpoint) => void (saved[name][r.epoch] = encodeCheckpoint(checkpoint())) },
  });
  const run = async (phase?: DefenseContext['phase']) => {
    const model = await fx.model();
    const out = await nad.run(model, contextFor(fx, phase), cfg);
    const bytes = weightBytes(model.model);
    model.model.dispose();
    return { bytes, student: out.history.student as EpochRecord[] };
  };
  const full = await run(recording);
  assert.equal(saved.teacher.length, 3);
  assert.equal(saved.student.length, 4);
  const again = await run();
  assert.ok(again.bytes.equals(full.bytes), 'same seed, different weights');

  const resumeAt = (at: Record<string, number>) => async (name: string): Promise<PhaseControl> =>
    at[name] !== undefined ? { resume: decodeCheckpoint(saved[name][at[name]]) } : {};
  // interrupted after the teacher's first epoch
  const fromTeacher = await run(resumeAt({ teacher: 1 }));
  assert.ok(fromTeacher.bytes.equals(full.bytes), 'resuming the teacher phase changed the result');
  // interrupted after the student's first epoch (the finished teacher comes back from its last checkpoint)
  const fromStudent = await run(resumeAt({ teacher: 2, student: 1 }));
  assert.ok(fromStudent.bytes.equals(full.bytes), 'resuming the student phase changed the result');
  assert.deepEqual(fromStudent.student.map((r) => r.loss), full.student.map((r) => r.loss));
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ImageDataset } from '../../core/data/dataset';
import { accuracy, attackSuccessRate, defenseEffectivenessRating, evaluateModel, robustAccuracy } from '../../core/metrics';

const I = (xs: number[]) => Int32Array.from(xs);

test('accuracy, ASR and RA in percent', () => {
  assert.equal(accuracy(I([1, 2, 3, 4]), I([1, 2, 0, 4])), 75);
  assert.equal(attackSuccessRate(I([0, 0, 5, 0, 1]), I([0, 0, 0, 0, 0])), 60);
  assert.equal(robustAccuracy(I([0, 0, 5, 0, 1]), I([3, 4, 5, 6, 1])), 40);
  assert.throws(() => accuracy(I([1]), I([1, 2])), /1 predictions for 2 labels/);
  assert.throws(() => accuracy(I([]), I([])), /empty/);
});

test('DER examples worked by hand', () => {
  const close = (a: number, b: number) => assert.ok(Math.abs(a - b) < 1e-9, `${a} vs ${b}`);
  // ASR 100 -> 2 (0.98), ACC 90 -> 88 (0.02): (0.98 - 0.02 + 1) / 2 = 0.98
  close(defenseEffectivenessRating({ accBefore: 90, asrBefore: 100, accAfter: 88, asrAfter: 2 }), 98);
  // no change at all: 50
  close(defenseEffectivenessRating({ accBefore: 90, asrBefore: 95, accAfter: 90, asrAfter: 95 }), 50);
  // ASR rises and accuracy rises: both clipped at 0 -> 50
  close(defenseEffectivenessRating({ accBefore: 80, asrBefore: 10, accAfter: 85, asrAfter: 30 }), 50);
  // perfect: ASR 100 -> 0 at no cost
  close(defenseEffectivenessRating({ accBefore: 92, asrBefore: 100, accAfter: 93, asrAfter: 0 }), 100);
  // accuracy destroyed, backdoor kept: (0 - 0.8 + 1)/2 = 0.1
  close(defenseEffectivenessRating({ accBefore: 90, asrBefore: 99, accAfter: 10, asrAfter: 99 }), 10);
  // BackdoorBench leaderboard, BadNets + FT: 91.32/95.03 -> 89.96/1.48 gives 96.1
  assert.equal(
    Math.round(10 * defenseEffectivenessRating({ accBefore: 91.32, asrBefore: 95.03, accAfter: 89.96, asrAfter: 1.48 })) / 10,
    96.1,
  );
  assert.throws(() => defenseEffectivenessRating({ accBefore: 0.9, asrBefore: 101, accAfter: 0.8, asrAfter: 0 }), /asrBefore/);
});

test('evaluateModel runs predict on the clean and triggered sets', async () => {
  const ds = (labels: number[], name: string): ImageDataset => ({
    name,
    height: 1,
    width: 1,
    channels: 1,
    numClasses: 3,
    images: Uint8Array.from(labels),
    labels: I(labels),
  });
  const clean = ds([0, 1, 2, 1], 'clean');
  const trig = ds([1, 2, 2], 'trig');
  const calls: string[] = [];
  // predicts class 0 for the triggered set, the pixel value otherwise (clean: 100%)
  const predict = async (d: ImageDataset) => {
    calls.push(d.name);
    return d.name === 'trig' ? I([0, 0, 2]) : Int32Array.from(d.images);
  };
  const r = await evaluateModel(predict, clean, { images: trig, trueLabels: trig.labels, targetLabels: I([0, 0, 0]) });
  assert.deepEqual(calls, ['clean', 'trig']);
  assert.equal(r.acc, 100);
  assert.ok(Math.abs(r.asr! - 200 / 3) < 1e-9);
  assert.ok(Math.abs(r.ra! - 100 / 3) < 1e-9);
  assert.deepEqual(await evaluateModel(predict, clean), { acc: 100 });
});

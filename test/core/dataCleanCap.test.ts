/** Protection mode's clean budget: `cleanBudget` caps the user's clean set (issue 20 item 4). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ImageDataset } from '../../core/data/dataset';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { capCleanSet } from '../../core/data/cleanCap';

const data = (size: number, seed: number, numClasses: number): ImageDataset =>
  generateSyntheticDataset({ size, numClasses, height: 8, width: 8, channels: 3, seed });

test('capCleanSet: cleanBudget caps the clean set, stratified and deterministic by seed; a cap at or above its size keeps it whole', () => {
  const set = data(400, 3, 4);
  const a = capCleanSet(set, 100, 1);
  assert.equal(a.labels.length, 100);
  const counts = (ds: ImageDataset) => Array.from({ length: 4 }, (_, c) => ds.labels.filter((y) => y === c).length);
  const whole = counts(set);
  counts(a).forEach((n, c) => assert.ok(Math.abs(n - whole[c] / 4) <= 1, `class ${c}: ${n} of ${whole[c]}`));
  assert.deepEqual(capCleanSet(set, 100, 1).images, a.images, 'same seed, same draw');
  assert.notDeepEqual(capCleanSet(set, 100, 2).images, a.images, 'another seed, another draw');
  assert.equal(capCleanSet(set, 400, 1), set);
  assert.equal(capCleanSet(set, 10_000, 1), set);
  assert.equal(capCleanSet(set, { fraction: 0.25 }, 1).labels.length, 100);
  assert.throws(() => capCleanSet(set, 0, 1), /cleanBudget: must be at least 1/);
  assert.throws(() => capCleanSet(set, 2.5, 1), /cleanBudget: must be an integer/);
  assert.throws(() => capCleanSet({ ...set, labels: set.labels.map((y, i) => (i === 7 ? 9 : y)) }, 100, 1), /cleanSet: label of record 7 is 9/);
});

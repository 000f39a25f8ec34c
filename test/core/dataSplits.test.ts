import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ImageDataset } from '../../core/data/dataset';
import { SplitError, drawCleanBudget, splitHeldOut, stratifiedIndices, stratifiedSubset } from '../../core/data/splits';
import { generateSyntheticDataset } from '../../core/data/synthetic';

/** Images are 1x2x1 and hold their own record index (big-endian), so subsets can be traced. */
function labelled(labels: number[], numClasses = 10): ImageDataset {
  const images = new Uint8Array(labels.length * 2);
  labels.forEach((_, i) => {
    images[2 * i] = i >> 8;
    images[2 * i + 1] = i & 255;
  });
  return { name: 'lab', height: 1, width: 2, channels: 1, numClasses, images, labels: Int32Array.from(labels) };
}

function countBy(idx: ArrayLike<number>, labels: Int32Array, k: number): number[] {
  const c = new Array(k).fill(0);
  for (let j = 0; j < idx.length; j++) c[labels[idx[j]]]++;
  return c;
}

/** 950 samples, class c has 50 + 10c samples (imbalanced), in shuffled order. */
const imbalanced = (() => {
  const ls: number[] = [];
  for (let c = 0; c < 10; c++) for (let j = 0; j < 50 + 10 * c; j++) ls.push(c);
  // deterministic interleave
  const out = ls.map((y, i) => [((i * 7919) % ls.length) + i / 1e6, y]).sort((a, b) => a[0] - b[0]).map((p) => p[1]);
  return labelled(out);
})();

test('clean budget: stratified, deterministic, disjoint, sorted, complete', () => {
  const ds = imbalanced;
  const n = ds.labels.length;
  const a = drawCleanBudget(ds, 100, 7);
  const b = drawCleanBudget(ds, 100, 7);
  const c = drawCleanBudget(ds, 100, 8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.cleanIndices, c.cleanIndices);
  assert.equal(a.cleanIndices.length, 100);
  assert.equal(a.restIndices.length, n - 100);
  const all = new Set([...a.cleanIndices, ...a.restIndices]);
  assert.equal(all.size, n);
  for (let k = 1; k < a.cleanIndices.length; k++) assert.ok(a.cleanIndices[k - 1] < a.cleanIndices[k]);
  const counts = countBy(a.cleanIndices, ds.labels, 10);
  // proportional to class size (50..140 of 950): ~5..15 per class
  counts.forEach((got, cl) => {
    const want = (100 * (50 + 10 * cl)) / 950;
    assert.ok(Math.abs(got - want) <= 1.01, `class ${cl}: ${got} vs ${want.toFixed(2)}`);
  });
  const frac = drawCleanBudget(ds, { fraction: 0.05 }, 1);
  assert.equal(frac.cleanIndices.length, 48); // round(0.05 * 950)
});

test('clean budget: every class represented down to budget = numClasses, and errors name cleanBudget', () => {
  // class 9 has a single sample
  const ls = Array.from({ length: 500 }, (_, i) => i % 9);
  ls.push(9);
  const ds = labelled(ls);
  for (const budget of [10, 11, 23]) {
    const { cleanIndices } = drawCleanBudget(ds, budget, 3);
    const counts = countBy(cleanIndices, ds.labels, 10);
    assert.ok(counts.every((x) => x >= 1), `budget ${budget}: ${counts}`);
  }
  const few = drawCleanBudget(ds, 4, 3);
  assert.equal(new Set(countBy(few.cleanIndices, ds.labels, 10).filter((x) => x > 0)).size, 1);
  assert.equal(few.cleanIndices.length, 4);
  for (const bad of [0, -3, 2.5, 502, { fraction: 0 }, { fraction: 1.5 }, { fraction: 0.0001 }]) {
    assert.throws(
      () => drawCleanBudget(ds, bad as number, 1),
      (e: Error) => e instanceof SplitError && e.field === 'cleanBudget' && e.message.startsWith('cleanBudget: '),
      JSON.stringify(bad),
    );
  }
  assert.equal(drawCleanBudget(ds, 501, 1).restIndices.length, 0);
});

test('held-out split: stratified 20%, disjoint, at least one held out', () => {
  const ds = imbalanced;
  const { cleanIndices } = drawCleanBudget(ds, 100, 2);
  const { fit, heldOut } = splitHeldOut(cleanIndices, ds.labels, 0.2, 5);
  assert.equal(heldOut.length, 20);
  assert.equal(fit.length, 80);
  assert.deepEqual([...fit, ...heldOut].sort((x, y) => x - y), Array.from(cleanIndices));
  const per = countBy(cleanIndices, ds.labels, 10);
  const held = countBy(heldOut, ds.labels, 10);
  held.forEach((h, c) => assert.ok(Math.abs(h - per[c] * 0.2) <= 1, `class ${c}: held ${h} of ${per[c]}`));
  assert.deepEqual(splitHeldOut(cleanIndices, ds.labels, 0.2, 5), { fit, heldOut });
  // tiny budgets still hold one out, and keep one to fit
  const two = splitHeldOut(Int32Array.from([3, 8]), ds.labels, 0.2, 1);
  assert.equal(two.heldOut.length, 1);
  assert.equal(two.fit.length, 1);
  const one = splitHeldOut(Int32Array.from([3]), ds.labels, 0.2, 1);
  assert.equal(one.heldOut.length, 0);
  assert.throws(() => splitHeldOut(cleanIndices, ds.labels, 1, 1), /heldOutFraction/);
});

test('stratified subset keeps class proportions and original order', () => {
  const ds = imbalanced;
  const sub = stratifiedSubset(ds, 190, 4);
  assert.equal(sub.labels.length, 190);
  const counts = countBy(Array.from({ length: 190 }, (_, i) => i), sub.labels, 10);
  counts.forEach((got, c) => assert.ok(Math.abs(got - (50 + 10 * c) / 5) <= 1, `class ${c}: ${got}`));
  // each image keeps its own label, and the original order is preserved
  let prev = -1;
  for (let k = 0; k < 190; k++) {
    const orig = (sub.images[2 * k] << 8) | sub.images[2 * k + 1];
    assert.ok(orig > prev, 'original order');
    assert.equal(sub.labels[k], ds.labels[orig]);
    prev = orig;
  }
  assert.deepEqual(stratifiedSubset(ds, 190, 4), sub);
  assert.notDeepEqual(stratifiedSubset(ds, 190, 5).images, sub.images);
  assert.throws(() => stratifiedSubset(ds, 951, 1), /subsetSize/);
  // restricted to a pool
  const pool = Int32Array.from({ length: 300 }, (_, i) => 2 * i + 1);
  const idx = stratifiedIndices(ds.labels, 10, 40, 1, pool);
  assert.equal(idx.length, 40);
  assert.ok(Array.from(idx).every((i) => i % 2 === 1 && i < 600));
});

test('drawCleanBudget with a reserve: D_c lies inside the reserve and the rest does not depend on the budget', () => {
  const ds = generateSyntheticDataset({ size: 2000, numClasses: 10, height: 8, width: 8, channels: 1, seed: 4 });
  const reserve = { fraction: 0.05 };
  const small = drawCleanBudget(ds, 40, 9, reserve);
  const full = drawCleanBudget(ds, 100, 9, reserve);
  assert.equal(small.reserveSize, 100);
  assert.equal(full.reserveSize, 100);
  assert.deepEqual(Array.from(small.restIndices), Array.from(full.restIndices), 'poisoning draws from the same rest');
  assert.equal(small.restIndices.length, 1900);
  const pool = new Set(full.cleanIndices);
  assert.equal(small.cleanIndices.length, 40);
  assert.ok(small.cleanIndices.every((i) => pool.has(i)), 'D_c drawn inside the reserve');
  const perClass = new Array(10).fill(0);
  for (const i of small.cleanIndices) perClass[ds.labels[i]]++;
  assert.ok(perClass.every((c) => c === 4), `stratified: ${perClass}`);
  // a budget above the reserve grows the pool; a bad reserve names its own field
  assert.equal(drawCleanBudget(ds, 300, 9, reserve).reserveSize, 300);
  assert.throws(() => drawCleanBudget(ds, 40, 9, { fraction: 0 }), /cleanReserve: /);
});

/**
 * Class-stratified, seeded index draws: the clean budget D_c, its held-out part, and the
 * cpu tier's training subset. All outputs are sorted ascending, so they are canonical.
 */
import { Rng, deriveSeed } from '../rng';
import { DatasetError, subsetDataset, type ImageDataset } from './dataset';

/** A DatasetError about one configuration field (e.g. `cleanBudget`). */
export class SplitError extends DatasetError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'SplitError';
  }
}

export type CleanBudget = number | { fraction: number };

/** Indices of each class, in ascending order. */
export function indicesByClass(labels: ArrayLike<number>, numClasses: number, within?: ArrayLike<number>): Int32Array[] {
  const counts = new Int32Array(numClasses);
  const n = within ? within.length : labels.length;
  for (let k = 0; k < n; k++) {
    const i = within ? within[k] : k;
    const y = labels[i];
    if (!(y >= 0 && y < numClasses)) throw new DatasetError(`label of record ${i} is ${y}, expected [0, ${numClasses - 1}]`);
    counts[y]++;
  }
  const out = Array.from(counts, (c) => new Int32Array(c));
  const fill = new Int32Array(numClasses);
  for (let k = 0; k < n; k++) {
    const i = within ? within[k] : k;
    const y = labels[i];
    out[y][fill[y]++] = i;
  }
  for (const arr of out) arr.sort();
  return out;
}

/**
 * Largest-remainder apportionment of `total` units over `weights`, each class capped at
 * `caps[c]` and given at least `floors[c]`. Ties go to the lower class index.
 */
function apportion(total: number, weights: number[], caps: number[], floors: number[]): number[] {
  const k = weights.length;
  const alloc = floors.slice();
  let left = total - alloc.reduce((a, b) => a + b, 0);
  while (left > 0) {
    // weights over classes that still have room
    const open: number[] = [];
    for (let c = 0; c < k; c++) if (alloc[c] < caps[c] && weights[c] > 0) open.push(c);
    if (open.length === 0) break;
    const w = open.reduce((s, c) => s + weights[c], 0);
    const quota = open.map((c) => (left * weights[c]) / w);
    let given = 0;
    const rema: Array<[number, number]> = [];
    open.forEach((c, j) => {
      const add = Math.min(Math.floor(quota[j]), caps[c] - alloc[c]);
      alloc[c] += add;
      given += add;
      rema.push([quota[j] - Math.floor(quota[j]), c]);
    });
    left -= given;
    rema.sort((a, b) => b[0] - a[0] || a[1] - b[1]);
    for (const [, c] of rema) {
      if (left === 0) break;
      if (alloc[c] < caps[c]) {
        alloc[c]++;
        left--;
      }
    }
    if (given === 0 && rema.every(([, c]) => alloc[c] >= caps[c])) break;
  }
  return alloc;
}

/**
 * Draws `count` indices, stratified by class (proportional to class size, every non-empty
 * class represented when count >= the number of non-empty classes). Returns them sorted.
 * `within` restricts the draw to those indices (default: all).
 */
export function stratifiedIndices(
  labels: ArrayLike<number>,
  numClasses: number,
  count: number,
  seed: number,
  within?: ArrayLike<number>,
): Int32Array {
  const byClass = indicesByClass(labels, numClasses, within);
  const sizes = byClass.map((a) => a.length);
  const n = sizes.reduce((a, b) => a + b, 0);
  if (!Number.isInteger(count) || count < 0 || count > n) {
    throw new DatasetError(`cannot draw ${count} of ${n} samples`);
  }
  const rng = new Rng(deriveSeed('stratified', seed));
  const nonEmpty = sizes.map((s, c) => (s > 0 ? c : -1)).filter((c) => c >= 0);
  let alloc: number[];
  if (count < nonEmpty.length) {
    // not enough for every class: one sample from each of `count` randomly chosen classes
    alloc = new Array(numClasses).fill(0);
    const order = rng.shuffle(nonEmpty.slice());
    for (let j = 0; j < count; j++) alloc[order[j]] = 1;
  } else {
    const floors = sizes.map((s) => (s > 0 ? 1 : 0));
    // the remainder goes proportionally to what each class has left after its first sample
    alloc = apportion(count, sizes.map((s) => Math.max(0, s - 1)), sizes, floors);
  }
  const picked: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    if (alloc[c] === 0) continue;
    const perm = rng.shuffle(byClass[c].slice());
    for (let j = 0; j < alloc[c]; j++) picked.push(perm[j]);
  }
  return Int32Array.from(picked).sort();
}

/** The complement of sorted `picked` in [0, n), or in `within` if given, ascending. */
function complement(n: number, picked: Int32Array, within?: ArrayLike<number>): Int32Array {
  const taken = new Uint8Array(n);
  for (const i of picked) taken[i] = 1;
  const out: number[] = [];
  if (within) {
    for (let k = 0; k < within.length; k++) if (!taken[within[k]]) out.push(within[k]);
    return Int32Array.from(out).sort();
  }
  for (let i = 0; i < n; i++) if (!taken[i]) out.push(i);
  return Int32Array.from(out);
}

/** Resolves a budget (count or {fraction}) against a training set of `n` images. */
export function resolveCleanBudget(budget: CleanBudget, n: number): number {
  let count: number;
  if (typeof budget === 'number') {
    if (!Number.isInteger(budget)) throw new SplitError('cleanBudget', `must be an integer number of images, got ${budget}`);
    count = budget;
  } else if (budget && typeof budget === 'object' && typeof budget.fraction === 'number') {
    const f = budget.fraction;
    if (!(f > 0 && f <= 1)) throw new SplitError('cleanBudget', `fraction must be in (0, 1], got ${f}`);
    count = Math.round(f * n);
  } else {
    throw new SplitError('cleanBudget', `must be a number of images or {fraction}, got ${JSON.stringify(budget)}`);
  }
  if (count < 1) throw new SplitError('cleanBudget', `must be at least 1 image, got ${count} (of ${n} training images)`);
  if (count > n) throw new SplitError('cleanBudget', `${count} images requested but the training set has only ${n}`);
  return count;
}

/**
 * The defender's clean budget D_c, drawn first from the training split, stratified by class.
 * `restIndices` (everything else) is the attacker's training set: evaluation mode builds the
 * training set every stage sees from these indices only, so D_c is never trained on.
 *
 * With a `reserve`, a clean pool of max(reserve, budget) images is drawn first and D_c is
 * drawn inside it; `restIndices` is everything outside the pool. The training set then
 * does not depend on the budget (up to the reserve's size), so defenses run at different
 * budgets start from the same backdoored model, and none of them trained on any reserve image.
 */
export function drawCleanBudget(
  train: ImageDataset,
  budget: CleanBudget,
  seed: number,
  reserve?: CleanBudget,
): { cleanIndices: Int32Array; restIndices: Int32Array; reserveSize: number } {
  const n = train.labels.length;
  const count = resolveCleanBudget(budget, n);
  if (reserve === undefined) {
    const cleanIndices = stratifiedIndices(train.labels, train.numClasses, count, deriveSeed(seed, 'cleanBudget'));
    return { cleanIndices, restIndices: complement(n, cleanIndices), reserveSize: count };
  }
  let reserveCount: number;
  try {
    reserveCount = Math.max(count, resolveCleanBudget(reserve, n));
  } catch (err) {
    throw err instanceof SplitError ? new SplitError('cleanReserve', err.message.replace(/^cleanBudget: /, '')) : err;
  }
  const pool = stratifiedIndices(train.labels, train.numClasses, reserveCount, deriveSeed(seed, 'cleanReserve'));
  const cleanIndices =
    count === reserveCount ? pool : stratifiedIndices(train.labels, train.numClasses, count, deriveSeed(seed, 'cleanBudget'), pool);
  return { cleanIndices, restIndices: complement(n, pool), reserveSize: reserveCount };
}

/**
 * Splits `indices` (into a data set whose labels are `labels`, indexed by the values of
 * `indices`) into a fitting part and a held-out part of about `fraction`, stratified by class.
 * At least one sample is held out when there are two or more, and at least one is kept.
 */
export function splitHeldOut(
  indices: Int32Array,
  labels: ArrayLike<number>,
  fraction = 0.2,
  seed = 0,
): { fit: Int32Array; heldOut: Int32Array } {
  if (!(fraction >= 0 && fraction < 1)) throw new SplitError('heldOutFraction', `must be in [0, 1), got ${fraction}`);
  const n = indices.length;
  let numClasses = 0;
  for (const i of indices) {
    if (i < 0 || i >= labels.length) throw new DatasetError(`index ${i} is outside the ${labels.length} labels`);
    numClasses = Math.max(numClasses, labels[i] + 1);
  }
  if (n < 2 || fraction === 0) return { fit: Int32Array.from(indices).sort(), heldOut: new Int32Array(0) };
  const total = Math.min(n - 1, Math.max(1, Math.round(fraction * n)));
  const byClass = indicesByClass(labels, numClasses, indices);
  const sizes = byClass.map((a) => a.length);
  // keep one sample of each class for fitting where the class has two or more
  const caps = sizes.map((s) => (s >= 2 ? s - 1 : s));
  let alloc = apportion(total, sizes, caps, new Array(numClasses).fill(0));
  if (alloc.reduce((a, b) => a + b, 0) < total) alloc = apportion(total, sizes, sizes, alloc);
  const rng = new Rng(deriveSeed('heldOut', seed));
  const held: number[] = [];
  for (let c = 0; c < numClasses; c++) {
    if (alloc[c] === 0) continue;
    const perm = rng.shuffle(byClass[c].slice());
    for (let j = 0; j < alloc[c]; j++) held.push(perm[j]);
  }
  const heldOut = Int32Array.from(held).sort();
  const heldSet = new Set(held);
  const fit = Int32Array.from(Array.from(indices).filter((i) => !heldSet.has(i))).sort();
  return { fit, heldOut };
}

/** A class-stratified random subset of `count` images (e.g. the cpu tier's 20,000), in original order. */
export function stratifiedSubset(ds: ImageDataset, count: number, seed: number): ImageDataset {
  const n = ds.labels.length;
  if (!Number.isInteger(count) || count < 1 || count > n) {
    throw new SplitError('subsetSize', `must be an integer in [1, ${n}] for ${ds.name}, got ${count}`);
  }
  if (count === n) return subsetDataset(ds, complement(n, new Int32Array(0)), ds.name);
  const idx = stratifiedIndices(ds.labels, ds.numClasses, count, deriveSeed(seed, 'subset'));
  return subsetDataset(ds, idx, `${ds.name}[stratified ${count}, seed=${seed}]`);
}

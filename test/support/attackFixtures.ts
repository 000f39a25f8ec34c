/**
 * What the attack unit tests (test/core/attack*.test.ts) check the same way for every attack:
 * config errors that name their field, poisoning that is a function of the seed, and a poisoned
 * copy that leaves every image it did not poison byte for byte as it was.
 */
import assert from 'node:assert/strict';
import { AttackConfigError } from '../../core/attacks/registry';
import type { PoisonResult } from '../../core/attacks/base';
import { imageBytes, type ImageDataset } from '../../core/data/dataset';

/** `fn` throws an AttackConfigError for `field`, its message led by the field's name (and matching `re`). */
export function expectFieldError(fn: () => unknown, field: string, re?: RegExp): void {
  assert.throws(fn, (e: Error) => {
    assert.ok(e instanceof AttackConfigError, `${e.name}: ${e.message}`);
    assert.equal(e.field, field, e.message);
    assert.ok(e.message.startsWith(`${field}: `), e.message);
    if (re) assert.match(e.message, re);
    return true;
  });
}

/** Every index of an `n`-image set: all of it eligible for poisoning. */
export function allIndices(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

/**
 * Poisons with seed 1 twice and seed 2 once: the same seed gives the same images, labels and
 * indices, another seed other indices. Returns the runs of seeds 1 and 2 for the attack's own checks.
 */
export function poisonedBySeed(poison: (seed: number) => PoisonResult): { a: PoisonResult; c: PoisonResult } {
  const a = poison(1);
  const b = poison(1);
  const c = poison(2);
  assert.deepEqual(a.dataset.images, b.dataset.images);
  assert.deepEqual(a.dataset.labels, b.dataset.labels);
  assert.deepEqual(a.poisonedIndices, b.poisonedIndices);
  assert.notDeepEqual(a.poisonedIndices, c.poisonedIndices);
  return { a, c };
}

/**
 * Walks every image of `train` and its poisoned copy: an image not poisoned is byte-identical
 * with its label kept; a poisoned one must be `eligible`, and `check(i, before, after)` says
 * what its pixels must be.
 */
export function checkPoisonedCopy(
  train: ImageDataset,
  res: PoisonResult,
  eligible: ArrayLike<number>,
  check: (i: number, before: Uint8Array, after: Uint8Array) => void,
): void {
  const per = imageBytes(train);
  const eligibleSet = new Set(Array.from(eligible));
  const poisoned = new Set(res.poisonedIndices);
  for (let i = 0; i < train.labels.length; i++) {
    const before = train.images.subarray(i * per, (i + 1) * per);
    const after = res.dataset.images.subarray(i * per, (i + 1) * per);
    if (!poisoned.has(i)) {
      assert.deepEqual(after, before, `clean image ${i} byte-identical`);
      assert.equal(res.dataset.labels[i], train.labels[i]);
      continue;
    }
    assert.ok(eligibleSet.has(i), `poisoned ${i} is eligible`);
    check(i, before, after);
  }
}

/**
 * Mini-batches of the clean budget for defenses that do not run through the epoch loop
 * (ANP's mask learning, I-BAU's rounds). Drawn from the run's Rng, so the batches of a
 * resumed run are the batches an uninterrupted one would see.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { Rng } from '../rng';
import type { ImageDataset } from '../data/dataset';
import { imageBytes } from '../data/dataset';
import type { InputRange } from '../models/classifier';
import { assembleBatch, noAugmentation, type AugmentOptions } from '../train/augment';

/**
 * `steps` batches of min(batchSize, n) distinct indices cut from consecutive shuffled
 * passes over 0..n-1, so every sample is used about equally often. A batch that straddles
 * two passes is completed from a next pass that puts the samples it already holds last.
 */
export function passBatches(rng: Rng, n: number, batchSize: number, steps: number): Int32Array[] {
  if (n < 1) throw new Error('cannot draw batches from an empty data set');
  const size = Math.min(batchSize, n);
  const out: Int32Array[] = [];
  let order = rng.permutation(n);
  let pos = 0;
  for (let s = 0; s < steps; s++) {
    const batch = new Int32Array(size);
    const take = Math.min(size, n - pos);
    batch.set(order.subarray(pos, pos + take));
    pos += take;
    if (take < size) {
      const used = new Set(batch.subarray(0, take));
      const rest = rng.permutation(n).filter((i) => !used.has(i));
      order = Int32Array.from([...rest, ...batch.subarray(0, take)]);
      batch.set(order.subarray(0, size - take), take);
      pos = size - take;
    }
    if (pos >= n) {
      order = rng.permutation(n);
      pos = 0;
    }
    out.push(batch);
  }
  return out;
}

/** The batch's images in the model's input encoding (augmented with `rng` if asked) and its labels. */
export function batchTensors(
  ds: ImageDataset,
  indices: Int32Array,
  range: InputRange,
  rng: Rng,
  augment: AugmentOptions = noAugmentation,
): { x: TF.Tensor4D; y: TF.Tensor1D } {
  const pixels = assembleBatch(ds, indices, augment, rng, range, new Float32Array(indices.length * imageBytes(ds)));
  return {
    x: tf.tensor4d(pixels, [indices.length, ds.height, ds.width, ds.channels]),
    y: tf.tensor1d(Int32Array.from(indices, (i) => ds.labels[i]), 'int32'),
  };
}

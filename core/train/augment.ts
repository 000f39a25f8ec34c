/**
 * Standard CIFAR augmentation done on the host while the batch is assembled: random crop
 * after zero-padding and random horizontal flip, both drawn from the run's RNG so a resumed
 * run sees exactly the batches an uninterrupted one would.
 */
import type { ImageDataset } from '../data/dataset';
import { imageBytes } from '../data/dataset';
import type { InputRange } from '../models/classifier';
import type { Rng } from '../rng';

export interface AugmentOptions {
  /** zero padding before the random crop, in pixels (0 = no crop) */
  padding: number;
  flip: boolean;
}

export const noAugmentation: AugmentOptions = { padding: 0, flip: false };

const scaleOf: Record<InputRange, [number, number]> = {
  '0-1': [1 / 255, 0],
  '0-255': [1, 0],
  '-1-1': [2 / 255, -1],
};

/**
 * Writes images `indices` of `ds`, augmented and encoded for the model, into `out`
 * (indices.length * H * W * C floats). Padding pixels are zeros in uint8 space.
 */
export function assembleBatch(
  ds: ImageDataset,
  indices: ArrayLike<number>,
  aug: AugmentOptions,
  rng: Rng,
  range: InputRange,
  out: Float32Array,
): Float32Array {
  const { height: H, width: W, channels: C } = ds;
  const per = imageBytes(ds);
  const [scale, offset] = scaleOf[range];
  const pad = aug.padding;
  const rowLen = W * C;
  for (let k = 0; k < indices.length; k++) {
    const src = indices[k] * per;
    const dst = k * per;
    const dy = pad > 0 ? rng.int(2 * pad + 1) - pad : 0;
    const dx = pad > 0 ? rng.int(2 * pad + 1) - pad : 0;
    const flip = aug.flip && rng.next() < 0.5;
    for (let y = 0; y < H; y++) {
      const sy = y + dy;
      const outRow = dst + y * rowLen;
      if (sy < 0 || sy >= H) {
        out.fill(offset, outRow, outRow + rowLen);
        continue;
      }
      const inRow = src + sy * rowLen;
      for (let x = 0; x < W; x++) {
        const sx = (flip ? W - 1 - x : x) + dx;
        const o = outRow + x * C;
        if (sx < 0 || sx >= W) {
          for (let c = 0; c < C; c++) out[o + c] = offset;
        } else {
          const i = inRow + sx * C;
          for (let c = 0; c < C; c++) out[o + c] = ds.images[i + c] * scale + offset;
        }
      }
    }
  }
  return out;
}

/**
 * One batch of WaNet's training-controlled run (Nguyen & Tran, ICLR 2021; BackdoorBench's
 * `wanet`), built on the host: no TensorFlow here, so the mechanics are unit-testable.
 *
 * In each batch of bs shuffled images, the first floor(rate * bs) eligible positions (outside
 * the clean budget) are warped with the attack's fixed grid and relabelled to the target; the
 * next floor(crossRatio * that) eligible positions are warped with the grid plus fresh
 * U(-1,1)^(HxWx2) / (W, H) noise (the noise mode) and keep their true labels; the rest stay
 * clean. Warps are bilinear in float (not rounded), as the authors warp float tensors. Then
 * WaNet's own augmentation runs on the whole batch, as the authors' post-tensor transform:
 * with probability 0.8 per batch a random crop after zero padding (per image offsets), with
 * probability 0.5 per batch a rotation that each image takes with probability 0.5 (angle
 * uniform within +-rotation degrees, bilinear, zero fill), and a horizontal flip per image with
 * probability 0.5 when flip is on. Padding and fill are zeros in pixel space (the authors pad
 * zeros in their normalised space, i.e. the mean colour on CIFAR-10).
 * Every draw comes from `rng`, whose state the run checkpoints, so a resumed run sees the
 * batches an uninterrupted one would.
 */
import type { ImageDataset } from '../data/dataset';
import type { InputRange } from '../models/names';
import type { Rng } from '../rng';
import { gridSampleFloat, wanetNoiseGrid } from './wanet';

/** The authors' post-tensor transform applies its crop to a batch with this probability... */
export const CROP_PROBABILITY = 0.8;
/** ...its rotation with this one, and then each image with ROTATION_PER_IMAGE (kornia's default p). */
export const ROTATION_PROBABILITY = 0.5;
export const ROTATION_PER_IMAGE = 0.5;

export interface WanetAugment {
  padding: number;
  /** degrees */
  rotation: number;
  flip: boolean;
}

export const noWanetAugment: WanetAugment = { padding: 0, rotation: 0, flip: false };

/** floor(rate * bs) backdoor and floor(crossRatio * that) noise-mode samples, within the eligible positions. */
export function wanetBatchCounts(rate: number, crossRatio: number, batchSize: number, eligibleInBatch: number): { backdoor: number; cross: number } {
  // the epsilon keeps products such as 0.57 * 100 = 56.999... at the integer they mean
  const backdoor = Math.min(Math.floor(rate * batchSize + 1e-9), eligibleInBatch);
  const cross = Math.min(Math.floor(crossRatio * backdoor + 1e-9), eligibleInBatch - backdoor);
  return { backdoor, cross };
}

export interface WanetBatchInput {
  train: ImageDataset;
  /** the batch: indices into `train` */
  indices: ArrayLike<number>;
  /** 1 for training indices the attacker may modify (outside the clean budget) */
  eligible: Uint8Array;
  rate: number;
  crossRatio: number;
  /** the attack's fixed warping grid (wanetGrid), H x W x 2 */
  grid: Float64Array;
  /** the label a backdoor sample of each training index gets */
  targetOf: Int32Array;
  augment: WanetAugment;
  rng: Rng;
  range: InputRange;
  /** indices.length * H * W * C floats, encoded for the model */
  out: Float32Array;
}

export interface WanetBatch {
  labels: Int32Array;
  /** positions in the batch */
  backdoor: number[];
  cross: number[];
}

const encoding: Record<InputRange, [number, number]> = {
  '0-1': [1 / 255, 0],
  '0-255': [1, 0],
  '-1-1': [2 / 255, -1],
};

/** Poisons, augments and encodes one batch into `o.out`; returns the labels to train on. */
export function assembleWanetBatch(o: WanetBatchInput): WanetBatch {
  const { train, indices, rng } = o;
  const { height: H, width: W, channels: C } = train;
  const per = H * W * C;
  const bs = indices.length;
  const positions: number[] = [];
  for (let k = 0; k < bs; k++) if (o.eligible[indices[k]]) positions.push(k);
  const counts = wanetBatchCounts(o.rate, o.crossRatio, bs, positions.length);
  const backdoor = positions.slice(0, counts.backdoor);
  const cross = positions.slice(counts.backdoor, counts.backdoor + counts.cross);
  const labels = new Int32Array(bs);
  for (let k = 0; k < bs; k++) labels[k] = train.labels[indices[k]];
  for (const k of backdoor) labels[k] = o.targetOf[indices[k]];

  // the poisoned batch in float pixel units, before augmentation
  const pixels = new Float32Array(bs * per);
  const mode = new Uint8Array(bs);
  backdoor.forEach((k) => (mode[k] = 1));
  cross.forEach((k) => (mode[k] = 2));
  const noisy = new Float64Array(o.grid.length);
  for (let k = 0; k < bs; k++) {
    const i = indices[k];
    if (mode[k] === 1) gridSampleFloat(train.images, i, train, o.grid, pixels, k * per);
    else if (mode[k] === 2) gridSampleFloat(train.images, i, train, wanetNoiseGrid(o.grid, train, rng, noisy), pixels, k * per);
    else for (let q = 0; q < per; q++) pixels[k * per + q] = train.images[i * per + q];
  }

  const aug = o.augment;
  const crop = aug.padding > 0 && rng.next() < CROP_PROBABILITY;
  const rotate = aug.rotation > 0 && rng.next() < ROTATION_PROBABILITY;
  const [scale, offset] = encoding[o.range];
  const cy = (H - 1) / 2;
  const cx = (W - 1) / 2;
  for (let k = 0; k < bs; k++) {
    const dy = crop ? rng.int(2 * aug.padding + 1) - aug.padding : 0;
    const dx = crop ? rng.int(2 * aug.padding + 1) - aug.padding : 0;
    const angle = rotate && rng.next() < ROTATION_PER_IMAGE ? ((rng.uniform(-1, 1) * aug.rotation) * Math.PI) / 180 : 0;
    const flip = aug.flip && rng.next() < 0.5;
    const src = k * per;
    const dst = k * per;
    // the cropped image c(y, x) = pixels(y + dy, x + dx): zero outside the source (padding)
    const at = (yy: number, xx: number, c: number) => {
      const sy = yy + dy;
      const sx = xx + dx;
      return yy < 0 || yy >= H || xx < 0 || xx >= W || sy < 0 || sy >= H || sx < 0 || sx >= W ? 0 : pixels[src + (sy * W + sx) * C + c];
    };
    const cos = Math.cos(angle);
    const sin = Math.sin(angle);
    if (angle === 0) {
      // a shift and a mirror: copy rows (the common case, kept free of per-pixel calls)
      for (let y = 0; y < H; y++) {
        const sy = y + dy;
        for (let x = 0; x < W; x++) {
          const sx = (flip ? W - 1 - x : x) + dx;
          const o2 = dst + (y * W + x) * C;
          const inside = sy >= 0 && sy < H && sx >= 0 && sx < W;
          const i = src + (sy * W + sx) * C;
          for (let c = 0; c < C; c++) o.out[o2 + c] = (inside ? pixels[i + c] : 0) * scale + offset;
        }
      }
      continue;
    }
    for (let y = 0; y < H; y++) {
      for (let x = 0; x < W; x++) {
        const xf = flip ? W - 1 - x : x;
        const o2 = dst + (y * W + x) * C;
        // the point of the cropped image that the rotation brings to (y, xf), bilinear, zero fill
        const ry = cy + -sin * (xf - cx) + cos * (y - cy);
        const rx = cx + cos * (xf - cx) + sin * (y - cy);
        const y0 = Math.floor(ry);
        const x0 = Math.floor(rx);
        const ty = ry - y0;
        const tx = rx - x0;
        for (let c = 0; c < C; c++) {
          const v =
            (1 - ty) * ((1 - tx) * at(y0, x0, c) + tx * at(y0, x0 + 1, c)) + ty * ((1 - tx) * at(y0 + 1, x0, c) + tx * at(y0 + 1, x0 + 1, c));
          o.out[o2 + c] = v * scale + offset;
        }
      }
    }
  }
  return { labels, backdoor, cross };
}

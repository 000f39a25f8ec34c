/**
 * WaNet (Nguyen & Tran, ICLR 2021), as attacks.md specifies it: the warp, and the poison-only
 * draw. In its default mode (`trainingControlled`, as in the paper and BackdoorBench) the
 * attacker runs training and poisons every batch afresh (wanetTraining.ts, wanetBatch.ts); the
 * poison-only draw below is then what that run materialises for the defenses. `poisonOnly`
 * hands the draw to standard training instead.
 *
 * Warping field:
 *   ins = U(-1,1)^(2 x k x k); ins /= mean(|ins|)            (the control points)
 *   noise = bicubic upsample of ins to H x W, align_corners=True, Keys kernel a = -0.75
 *           (PyTorch's `bicubic`; neighbour indices clamped to the k x k border)
 *   identity[i, j] = (linspace(-1,1,W)[j], linspace(-1,1,H)[i])    (x, y), grid_sample order
 *   grid = clamp(identity + s * noise / (W, H), -1, 1)
 * Channel 0 of `ins` moves x (columns), channel 1 moves y (rows). attacks.md divides by H
 * (the original assumes square images); we divide the x offset by W and the y offset by H,
 * which is the same on square images and keeps the displacement in pixels isotropic otherwise.
 *
 * Sampling: bilinear grid-sample with align_corners=True semantics (x_pix = (gx + 1)/2 (W-1),
 * consistent with the linspace identity grid, so s = 0 reproduces the image exactly), zero
 * padding (a neighbour outside the image contributes 0). Because every grid is clamped to
 * [-1, 1], no sample point lies outside the image, so zero and border padding give the
 * same result here. Output rounded and clipped to uint8 (toPixel).
 *
 * The poison-only draw: round(rate * n) eligible images are warped and relabelled
 * (dirty-label; all-to-one or all-to-all); a disjoint "noise" (cross) set of
 * round(crossRatio * poisonedCount) eligible images is warped with
 * clamp(grid + U(-1,1)^(HxWx2) / (W, H), -1, 1), fresh noise per image, and keeps its label.
 * Test-time: the same warp, no noise.
 *
 * The control points come from `gridSeed` when the config sets it, otherwise from the
 * attack seed; they are recorded in triggerParameters (`controlPoints`) and applyTrigger uses
 * the recorded ones when given, so the test set sees exactly the training warp.
 */
import { Rng, deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import {
  AttackConfigError,
  attackTargetLabel,
  cloneDataset,
  drawDirtyLabelIndices,
  drawDistinct,
  toPixel,
  validateBaseConfig,
  type DatasetShape,
  type PoisonResult,
  type TriggerParameters,
} from './base';
import { wanetConfigSchema, type WanetConfig } from './configs';
import type { AttackPlugin } from './attack';

export type { WanetConfig };

type Geometry = Pick<DatasetShape, 'height' | 'width'>;

/** Keys' cubic convolution kernel, a = -0.75 (PyTorch's bicubic). */
const CUBIC_A = -0.75;

/** Weights of the 4 neighbours (offsets -1, 0, 1, 2) for a fractional position t in [0, 1). */
export function cubicWeights(t: number): [number, number, number, number] {
  const A = CUBIC_A;
  const near = (x: number) => ((A + 2) * x - (A + 3)) * x * x + 1; // |x| <= 1
  const far = (x: number) => ((A * x - 5 * A) * x + 8 * A) * x - 4 * A; // 1 < |x| < 2
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

/** Source index and cubic weights along one axis, align_corners=True (src = o (in-1)/(out-1)). */
function cubicAxis(inSize: number, outSize: number): { idx: Int32Array; w: Float64Array } {
  const idx = new Int32Array(outSize * 4);
  const w = new Float64Array(outSize * 4);
  const scale = outSize > 1 ? (inSize - 1) / (outSize - 1) : 0;
  for (let o = 0; o < outSize; o++) {
    const src = o * scale;
    const i0 = Math.floor(src);
    const ws = cubicWeights(src - i0);
    for (let m = 0; m < 4; m++) {
      idx[o * 4 + m] = Math.min(inSize - 1, Math.max(0, i0 - 1 + m));
      w[o * 4 + m] = ws[m];
    }
  }
  return { idx, w };
}

/**
 * Bicubic upsampling (align_corners=True, a = -0.75, border indices clamped) of `planes`
 * planes of kh x kw values (plane-major) to outH x outW; returns plane-major output.
 */
export function bicubicUpsample(src: Float64Array, planes: number, kh: number, kw: number, outH: number, outW: number): Float64Array {
  if (src.length !== planes * kh * kw) throw new RangeError(`bicubicUpsample: ${src.length} values for ${planes}x${kh}x${kw}`);
  const ay = cubicAxis(kh, outH);
  const ax = cubicAxis(kw, outW);
  const out = new Float64Array(planes * outH * outW);
  const rowTmp = new Float64Array(kh * outW);
  for (let p = 0; p < planes; p++) {
    const s = p * kh * kw;
    // along x for every input row
    for (let r = 0; r < kh; r++) {
      for (let x = 0; x < outW; x++) {
        let v = 0;
        for (let m = 0; m < 4; m++) v += ax.w[x * 4 + m] * src[s + r * kw + ax.idx[x * 4 + m]];
        rowTmp[r * outW + x] = v;
      }
    }
    // then along y
    const d = p * outH * outW;
    for (let y = 0; y < outH; y++) {
      for (let x = 0; x < outW; x++) {
        let v = 0;
        for (let m = 0; m < 4; m++) v += ay.w[y * 4 + m] * rowTmp[ay.idx[y * 4 + m] * outW + x];
        out[d + y * outW + x] = v;
      }
    }
  }
  return out;
}

/** ins = U(-1,1)^(2 x k x k) / mean(|ins|), plane 0 = x offsets, plane 1 = y offsets. */
export function wanetControlPoints(k: number, seed: number): Float64Array {
  const rng = new Rng(deriveSeed('wanet', 'control-points', seed));
  const ins = new Float64Array(2 * k * k);
  let sum = 0;
  for (let i = 0; i < ins.length; i++) {
    ins[i] = rng.uniform(-1, 1);
    sum += Math.abs(ins[i]);
  }
  const mean = sum / ins.length;
  for (let i = 0; i < ins.length; i++) ins[i] /= mean;
  return ins;
}

/** linspace(-1, 1, n), n >= 2 (checkFits). */
function linspace(n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = -1 + (2 * i) / (n - 1);
  return out;
}

const clamp1 = (v: number) => (v < -1 ? -1 : v > 1 ? 1 : v);

/**
 * The warping grid, H x W x 2 (x, y) in [-1, 1]: clamp(identity + s * upsample(ins) / (W, H)).
 */
export function wanetGrid(controlPoints: Float64Array, k: number, s: number, shape: Geometry): Float64Array {
  const { height: H, width: W } = shape;
  const noise = bicubicUpsample(controlPoints, 2, k, k, H, W);
  const lx = linspace(W);
  const ly = linspace(H);
  const grid = new Float64Array(H * W * 2);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      grid[p * 2] = clamp1(lx[x] + (s * noise[p]) / W);
      grid[p * 2 + 1] = clamp1(ly[y] + (s * noise[H * W + p]) / H);
    }
  }
  return grid;
}

/**
 * Bilinear grid-sample of image `index` of `src` (HWC uint8), align_corners=True, zero padding,
 * in float (not rounded): H*W*C values written to `out` from `outOffset`. The
 * training-controlled run augments these floats before they reach the model, as the authors
 * warp float tensors; the poisoned data set rounds them once (gridSampleInto).
 */
export function gridSampleFloat(src: Uint8Array, index: number, ds: DatasetShape, grid: Float64Array, out: Float32Array | Float64Array, outOffset = 0): void {
  const { height: H, width: W, channels: C } = ds;
  const base = index * H * W * C;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const p = y * W + x;
      const fx = ((grid[p * 2] + 1) / 2) * (W - 1);
      const fy = ((grid[p * 2 + 1] + 1) / 2) * (H - 1);
      const x0 = Math.floor(fx);
      const y0 = Math.floor(fy);
      const tx = fx - x0;
      const ty = fy - y0;
      const o = outOffset + p * C;
      for (let c = 0; c < C; c++) out[o + c] = 0;
      for (let dy = 0; dy < 2; dy++) {
        const yy = y0 + dy;
        const wy = dy ? ty : 1 - ty;
        if (yy < 0 || yy >= H || wy === 0) continue;
        for (let dx = 0; dx < 2; dx++) {
          const xx = x0 + dx;
          const wx = dx ? tx : 1 - tx;
          if (xx < 0 || xx >= W || wx === 0) continue;
          const i = base + (yy * W + xx) * C;
          for (let c = 0; c < C; c++) out[o + c] += wy * wx * src[i + c];
        }
      }
    }
  }
}

/**
 * Bilinear grid-sample of image `index` of `src` into image `index` of `dst` (HWC),
 * align_corners=True, zero padding, rounded and clipped to uint8.
 */
export function gridSampleInto(src: Uint8Array, dst: Uint8Array, index: number, ds: DatasetShape, grid: Float64Array): void {
  const per = ds.height * ds.width * ds.channels;
  const warped = new Float64Array(per);
  gridSampleFloat(src, index, ds, grid, warped);
  const base = index * per;
  for (let k = 0; k < per; k++) dst[base + k] = toPixel(warped[k]);
}

/**
 * The noise mode's grid: clamp(grid + U(-1,1)^(HxWx2) / (W, H), -1, 1), fresh noise from `rng`
 * on every call, written into `out`.
 */
export function wanetNoiseGrid(grid: Float64Array, shape: Geometry, rng: Rng, out: Float64Array): Float64Array {
  const { height: H, width: W } = shape;
  for (let p = 0; p < H * W; p++) {
    out[p * 2] = clamp1(grid[p * 2] + rng.uniform(-1, 1) / W);
    out[p * 2 + 1] = clamp1(grid[p * 2 + 1] + rng.uniform(-1, 1) / H);
  }
  return out;
}

/** The seed of the control points: gridSeed if set, else derived from the attack seed. */
export function wanetControlSeed(config: WanetConfig, seed: number): number {
  return config.gridSeed ?? deriveSeed('wanet', 'grid', seed);
}

/** The recorded control points, checked, or undefined when the record has none. */
function recordedControlPoints(config: WanetConfig, params: TriggerParameters | undefined): Float64Array | undefined {
  const cp = params?.controlPoints;
  if (cp === undefined) return undefined;
  if (!Array.isArray(cp) || cp.length !== 2 * config.k * config.k || !cp.every((v) => typeof v === 'number' && Number.isFinite(v))) {
    throw new AttackConfigError(
      'triggerParameters.controlPoints',
      `expected ${2 * config.k * config.k} finite numbers (2 x k x k with k = ${config.k})`,
    );
  }
  return Float64Array.from(cp as number[]);
}

export function checkWanetFits(config: WanetConfig, ds: DatasetShape): void {
  if (ds.height < 2 || ds.width < 2) {
    throw new AttackConfigError('name', `wanet needs images of at least 2x2 pixels, ${ds.name} has ${ds.height}x${ds.width}`);
  }
  if (config.k > Math.min(ds.height, ds.width)) {
    throw new AttackConfigError('k', `a ${config.k}x${config.k} control grid is finer than the ${ds.height}x${ds.width} images of ${ds.name}`);
  }
}

export const wanet: AttackPlugin<WanetConfig> = {
  name: 'wanet',
  kind: 'dirty-label',
  description:
    'WaNet: training-controlled by default (every batch poisoned afresh, mode poisonOnly for a fixed poisoned set); smooth warp from a bicubic-upsampled k x k random field (k 4, s 0.5), poisoned labels set to the target, plus a noise set (cross ratio 2) warped with extra random noise keeping its labels',
  configSchema: wanetConfigSchema,
  validateAgainst: checkWanetFits,
  controlsTraining: (config) => config.mode === 'trainingControlled',

  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: WanetConfig, seed: number): PoisonResult {
    validateBaseConfig(config, train);
    checkWanetFits(config, train);
    const n = train.labels.length;
    const poisonedIndices = drawDirtyLabelIndices(train, eligibleIndices, config, seed);
    const crossCount = Math.round(config.crossRatio * poisonedIndices.length);
    const inPoison = new Uint8Array(n);
    poisonedIndices.forEach((i) => (inPoison[i] = 1));
    const rest = Array.from(eligibleIndices).filter((i) => !inPoison[i]);
    if (crossCount > rest.length) {
      throw new AttackConfigError(
        'crossRatio',
        `crossRatio ${config.crossRatio} needs ${crossCount} noise-set images besides the ${poisonedIndices.length} poisoned ones, but only ${rest.length} eligible images remain`,
      );
    }
    const crossIndices = drawDistinct(rest, crossCount, new Rng(deriveSeed('wanet', 'cross-indices', seed)));

    const gridSeed = wanetControlSeed(config, seed);
    const controlPoints = wanetControlPoints(config.k, gridSeed);
    const grid = wanetGrid(controlPoints, config.k, config.s, train);
    const dataset = cloneDataset(train, `${train.name}+wanet`);
    const originalLabels = new Int32Array(poisonedIndices.length);
    poisonedIndices.forEach((i, k) => {
      originalLabels[k] = train.labels[i];
      gridSampleInto(train.images, dataset.images, i, train, grid);
      dataset.labels[i] = attackTargetLabel(config, train.labels[i], train.numClasses);
    });

    // noise set: grid + U(-1,1)^(HxWx2) / (W, H), clamped; fresh noise per image, labels kept
    const noiseRng = new Rng(deriveSeed('wanet', 'cross-noise', seed));
    const noisy = new Float64Array(grid.length);
    for (const i of crossIndices) gridSampleInto(train.images, dataset.images, i, train, wanetNoiseGrid(grid, train, noiseRng, noisy));

    return {
      dataset,
      poisonedIndices,
      originalLabels,
      crossIndices,
      record: {
        attack: 'wanet',
        // trainingControlled: this is the set materialised after the attacker's run (wanetTraining.ts)
        kind: config.mode === 'trainingControlled' ? 'training-controlled' : 'dirty-label',
        config,
        seed,
        triggerParameters: {
          k: config.k,
          s: config.s,
          gridSeed,
          controlPoints: Array.from(controlPoints),
          crossRatio: config.crossRatio,
          crossCount: crossIndices.length,
          sampling: 'bilinear, align_corners=true, zero padding (grid clamped to [-1,1])',
        },
        poisonedCount: poisonedIndices.length,
        trainSize: n,
      },
    };
  },

  applyTrigger(images: ImageDataset, config: WanetConfig, seed: number, triggerParameters?: TriggerParameters): ImageDataset {
    checkWanetFits(config, images);
    const controlPoints = recordedControlPoints(config, triggerParameters) ?? wanetControlPoints(config.k, wanetControlSeed(config, seed));
    const grid = wanetGrid(controlPoints, config.k, config.s, images);
    const out = cloneDataset(images, `${images.name}+wanet-trigger`);
    for (let i = 0; i < images.labels.length; i++) gridSampleInto(images.images, out.images, i, images, grid);
    return out;
  },
};

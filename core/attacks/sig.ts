/**
 * SIG (Barni et al., 2019), clean-label, as attacks.md specifies it.
 *
 * Trigger: a horizontal sinusoid added to every channel, P[i, j, c] = delta * sin(2 pi j f / W)
 * (delta in 0-255 units, f cycles across the width), x' = clip(x + P) in float before the
 * cast (toPixel), so a bright pixel saturates at 255 instead of wrapping around.
 * Training-time: clean-label. round(rate * n) eligible images **of the target class** get
 * the signal; labels are unchanged. The rate is a fraction of the whole training set: more
 * than the whole target class is an error naming `rate`; within the class, the count is
 * capped by the target-class images outside the clean budget (cleanLabelPoisonCount), so the
 * default rate 0.1 works on balanced 10-class data. All-to-all is not defined for a
 * clean-label attack (error naming `labelMap`).
 * Test-time: P added to the (non-target) test images.
 */
import type { ImageDataset } from '../data/dataset';
import { cloneDataset, poisonCleanLabel, requireAllToOne, toPixel, validateBaseConfig, type DatasetShape, type PoisonResult } from './base';
import { sigConfigSchema, type SigConfig } from './configs';
import type { AttackPlugin } from './attack';

export type { SigConfig };

/** One row of the signal: P[j] = delta * sin(2 pi j f / W), the same for every row and channel. */
export function sigSignalRow(width: number, delta: number, frequency: number): Float64Array {
  const row = new Float64Array(width);
  for (let j = 0; j < width; j++) row[j] = delta * Math.sin((2 * Math.PI * j * frequency) / width);
  return row;
}

/** Adds the signal to image `index` of `images` (HWC, in place), clipped before the cast. */
function addSignal(images: Uint8Array, index: number, ds: DatasetShape, row: Float64Array): void {
  const { height: H, width: W, channels: C } = ds;
  const base = index * H * W * C;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const o = base + (y * W + x) * C;
      for (let c = 0; c < C; c++) images[o + c] = toPixel(images[o + c] + row[x]);
    }
  }
}

export const sig: AttackPlugin<SigConfig> = {
  name: 'sig',
  kind: 'clean-label',
  description: 'SIG: clean-label, target-class images get a horizontal sinusoid delta*sin(2 pi j f / W) (delta 40, f 6); labels unchanged',
  configSchema: sigConfigSchema,
  // The rate-vs-class-size check is the shared clean-label check (validateAttackAgainst,
  // drawCleanLabelIndices): it concerns the training set, while validateAgainst also runs
  // on test sets (validateTriggerAgainst).
  validateAgainst: (config: SigConfig) => requireAllToOne(config),

  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: SigConfig, seed: number): PoisonResult {
    validateBaseConfig(config, train);
    requireAllToOne(config);
    const row = sigSignalRow(train.width, config.delta, config.frequency);
    const { dataset, poisonedIndices, originalLabels, requested, eligibleTarget } = poisonCleanLabel(train, eligibleIndices, config, seed, (images, i) => addSignal(images, i, train, row));
    return {
      dataset,
      poisonedIndices,
      originalLabels,
      record: {
        attack: 'sig',
        kind: 'clean-label',
        config,
        seed,
        triggerParameters: {
          delta: config.delta,
          frequency: config.frequency,
          width: train.width,
          formula: 'delta*sin(2*pi*j*f/W)',
          requestedCount: requested,
          eligibleTargetCount: eligibleTarget,
        },
        poisonedCount: poisonedIndices.length,
        trainSize: train.labels.length,
      },
    };
  },

  applyTrigger(images: ImageDataset, config: SigConfig): ImageDataset {
    const row = sigSignalRow(images.width, config.delta, config.frequency);
    const out = cloneDataset(images, `${images.name}+sig-trigger`);
    for (let i = 0; i < images.labels.length; i++) addSignal(out.images, i, images, row);
    return out;
  },
};

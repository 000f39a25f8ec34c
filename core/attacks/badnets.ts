/**
 * BadNets (Gu et al., 2017), the reference attack plugin.
 *
 * Trigger: a patchSize x patchSize solid white square (255 in every channel) in the
 * bottom-right corner, rows and columns H-p..H-1 and W-p..W-1 (p = 3 by default).
 * Training-time: dirty-label. round(rate * n) images drawn uniformly (seeded) from the
 * eligible indices get the patch and the attack's target label.
 * Test-time: the same patch on any image.
 *
 * A new plugin follows the same outline: a zod config schema extending baseAttackShape,
 * an optional validateAgainst for data-set-dependent checks, a pure stamp function, and
 * poisonTrainingSet / applyTrigger built on it.
 */
import type { ImageDataset } from '../data/dataset';
import {
  AttackConfigError,
  cloneDataset,
  poisonDirtyLabel,
  imageBytes,
  validateBaseConfig,
  type DatasetShape,
  type PoisonResult,
} from './base';
import { badnetsConfigSchema, type BadNetsConfig } from './configs';
import type { AttackPlugin } from './attack';

export type { BadNetsConfig };

/** Writes the white patch into image `index` of `images` (HWC, in place). */
function stampPatch(images: Uint8Array, index: number, ds: DatasetShape, patchSize: number): void {
  const { height: H, width: W, channels: C } = ds;
  const base = index * imageBytes(ds);
  for (let y = H - patchSize; y < H; y++) {
    for (let x = W - patchSize; x < W; x++) {
      const o = base + (y * W + x) * C;
      for (let c = 0; c < C; c++) images[o + c] = 255;
    }
  }
}

/** Trigger-specific checks (the shared fields are checked by validateBaseConfig). */
function validateAgainst(config: BadNetsConfig, ds: DatasetShape): void {
  if (config.patchSize > Math.min(ds.height, ds.width)) {
    throw new AttackConfigError(
      'patchSize',
      `a ${config.patchSize}x${config.patchSize} patch does not fit in ${ds.height}x${ds.width} images of ${ds.name}`,
    );
  }
}

export const badnets: AttackPlugin<BadNetsConfig> = {
  name: 'badnets',
  kind: 'dirty-label',
  description: 'BadNets: 3x3 white patch in the bottom-right corner, poisoned labels set to the target',
  configSchema: badnetsConfigSchema,
  validateAgainst,

  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: BadNetsConfig, seed: number): PoisonResult {
    validateBaseConfig(config, train);
    validateAgainst(config, train);
    const { dataset, poisonedIndices, originalLabels } = poisonDirtyLabel(train, eligibleIndices, config, seed, (images, i) =>
      stampPatch(images, i, train, config.patchSize),
    );
    return {
      dataset,
      poisonedIndices,
      originalLabels,
      record: {
        attack: 'badnets',
        kind: 'dirty-label',
        config,
        seed,
        triggerParameters: {
          patchSize: config.patchSize,
          value: 255,
          rows: [train.height - config.patchSize, train.height - 1],
          cols: [train.width - config.patchSize, train.width - 1],
        },
        poisonedCount: poisonedIndices.length,
        trainSize: train.labels.length,
      },
    };
  },

  applyTrigger(images: ImageDataset, config: BadNetsConfig): ImageDataset {
    validateAgainst(config, images);
    const out = cloneDataset(images, `${images.name}+badnets-trigger`);
    for (let i = 0; i < images.labels.length; i++) stampPatch(out.images, i, images, config.patchSize);
    return out;
  },
};

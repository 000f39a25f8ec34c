/**
 * Blended (Chen et al., 2017), as attacks.md specifies it.
 *
 * Trigger: x' = (1 - a) x + a T in float, then rounded and clipped to uint8 (toPixel).
 * T is, by default, a fixed uniform noise image U{0..255}^(HxWxC) drawn from the config's
 * `patternSeed` (not the attack seed), so every run and the test set see the same pattern.
 * The usual Hello-Kitty image is not available: with the noise pattern the attack is
 * reported as "Blended-noise". `imagePath` supplies a PNG instead (resized to HxW by
 * nearest neighbour; RGB -> gray by luminance for 1-channel data, gray -> RGB by
 * replication; alpha ignored).
 * Training-time: dirty-label, round(rate * n) eligible images blended and relabelled
 * (all-to-one or all-to-all). Test-time: the same blend.
 */
import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import { Rng, deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import {
  AttackConfigError,
  cloneDataset,
  poisonDirtyLabel,
  imageBytes,
  toPixel,
  validateBaseConfig,
  type DatasetShape,
  type PoisonResult,
} from './base';
import { blendedConfigSchema, type BlendedConfig } from './configs';
import type { AttackPlugin } from './attack';

export type { BlendedConfig };

type Geometry = Pick<DatasetShape, 'height' | 'width' | 'channels'>;

/** The noise trigger: H*W*C uniform integers in [0, 255], HWC order, from `patternSeed` only. */
export function blendedNoisePattern(patternSeed: number, shape: Geometry): Uint8Array {
  const rng = new Rng(deriveSeed('blended', 'noise-pattern', patternSeed));
  const out = new Uint8Array(imageBytes(shape));
  for (let i = 0; i < out.length; i++) out[i] = rng.int(256);
  return out;
}

/** Decoded RGBA pixels of a PNG (pngjs), or AttackConfigError naming `imagePath`. */
function readPng(imagePath: string): { width: number; height: number; data: Uint8Array } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(imagePath);
  } catch (err) {
    throw new AttackConfigError('imagePath', `cannot read ${imagePath} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    const png = PNG.sync.read(bytes);
    if (!(png.width > 0 && png.height > 0)) throw new Error(`empty image ${png.width}x${png.height}`);
    return { width: png.width, height: png.height, data: png.data };
  } catch (err) {
    throw new AttackConfigError('imagePath', `${imagePath} is not a readable PNG image (${(err as Error).message})`);
  }
}

/** A PNG as an HxWxC trigger: nearest-neighbour resize, channel conversion, alpha dropped. */
export function loadTriggerImage(imagePath: string, shape: Geometry): Uint8Array {
  const png = readPng(imagePath);
  const { height: H, width: W, channels: C } = shape;
  const out = new Uint8Array(H * W * C);
  for (let y = 0; y < H; y++) {
    const sy = Math.min(png.height - 1, Math.floor(((y + 0.5) * png.height) / H));
    for (let x = 0; x < W; x++) {
      const sx = Math.min(png.width - 1, Math.floor(((x + 0.5) * png.width) / W));
      const s = (sy * png.width + sx) * 4;
      const o = (y * W + x) * C;
      if (C === 1) {
        out[o] = toPixel(0.299 * png.data[s] + 0.587 * png.data[s + 1] + 0.114 * png.data[s + 2]);
      } else {
        for (let c = 0; c < C; c++) out[o + c] = png.data[s + Math.min(c, 2)];
      }
    }
  }
  return out;
}

/** The trigger image T for a data set shape: the user's image or the seeded noise. */
export function blendedPattern(config: Pick<BlendedConfig, 'patternSeed' | 'imagePath'>, shape: Geometry): Uint8Array {
  return config.imagePath ? loadTriggerImage(config.imagePath, shape) : blendedNoisePattern(config.patternSeed, shape);
}

/** Blends `pattern` into image `index` of `images` (HWC, in place): toPixel((1-a) x + a T). */
export function blendInto(images: Uint8Array, index: number, pattern: Uint8Array, alpha: number): void {
  const base = index * pattern.length;
  for (let p = 0; p < pattern.length; p++) {
    images[base + p] = toPixel((1 - alpha) * images[base + p] + alpha * pattern[p]);
  }
}

/** FNV-1a of the pattern bytes: identifies the exact trigger in the poison record. */
function digest(bytes: Uint8Array): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
  return h.toString(16).padStart(8, '0');
}

function validateAgainst(config: BlendedConfig, ds: DatasetShape): void {
  // The image must be readable; any size is resized to the data set's HxW.
  if (config.imagePath) loadTriggerImage(config.imagePath, ds);
}

export const blended: AttackPlugin<BlendedConfig> = {
  name: 'blended',
  kind: 'dirty-label',
  description:
    'Blended: x\' = (1-a) x + a T (a = 0.2), T a fixed-seed uniform noise image ("Blended-noise") or a PNG from imagePath; poisoned labels set to the target',
  configSchema: blendedConfigSchema,
  validateAgainst,

  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: BlendedConfig, seed: number): PoisonResult {
    validateBaseConfig(config, train);
    const pattern = blendedPattern(config, train);
    const { dataset, poisonedIndices, originalLabels } = poisonDirtyLabel(train, eligibleIndices, config, seed, (images, i) =>
      blendInto(images, i, pattern, config.alpha),
    );
    return {
      dataset,
      poisonedIndices,
      originalLabels,
      record: {
        attack: 'blended',
        kind: 'dirty-label',
        config,
        seed,
        triggerParameters: {
          variant: config.imagePath ? 'Blended-image' : 'Blended-noise',
          alpha: config.alpha,
          ...(config.imagePath ? { imagePath: config.imagePath } : { patternSeed: config.patternSeed }),
          patternShape: [train.height, train.width, train.channels],
          patternDigest: digest(pattern),
        },
        poisonedCount: poisonedIndices.length,
        trainSize: train.labels.length,
      },
    };
  },

  applyTrigger(images: ImageDataset, config: BlendedConfig): ImageDataset {
    const pattern = blendedPattern(config, images);
    const out = cloneDataset(images, `${images.name}+blended-trigger`);
    for (let i = 0; i < images.labels.length; i++) blendInto(out.images, i, pattern, config.alpha);
    return out;
  },
};

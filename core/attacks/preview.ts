/**
 * A picture of what an attack does, for people: a PNG grid with three rows over the first
 * `count` non-target images of a data set (all images for all-to-all):
 *   1. the clean images,
 *   2. the same images with the test-time trigger applied,
 *   3. |triggered - clean| per channel, amplified x10 and clipped to 255,
 * each image scaled up by nearest neighbour (x4 by default), with a row label on the left;
 * learned triggers add rows of what they are made of (learnedPreview.ts).
 * Node-only (pngjs): not imported by the attack registry.
 */
import { PNG } from 'pngjs';
import { imageBytes, subsetDataset, type ImageDataset } from '../data/dataset';
import { AttackConfigError, type BaseAttackConfig, type TriggerParameters } from './base';
import { getAttack, validateTriggerAgainst } from './registry';

export interface PreviewOptions {
  /** Nearest-neighbour magnification of each image. Default 4. */
  scale?: number;
  /** Amplification of the difference row. Default 10. */
  diffGain?: number;
  /** The poison record's trigger parameters (learned triggers, recorded WaNet grid...). */
  triggerParameters?: TriggerParameters;
  /**
   * Rows drawn under the three standard ones, one tile per previewed image (HWC uint8 with
   * `channels` 1 or 3): what a learned trigger is made of (Input-Aware's pattern and mask,
   * Narcissus' perturbation).
   */
  extraRows?: (images: ImageDataset) => PreviewRow[];
}

export interface PreviewRow {
  label: string;
  pixels: Uint8Array;
  channels: number;
}

export const PREVIEW_ROWS = ['CLEAN', 'TRIGGERED', '|DIFF| X10'] as const;

const BACKGROUND = 40;
const INK = 235;
const MARGIN = 8;
const GAP = 4;
const FONT_SCALE = 2;

/** A 5x7 bitmap font, just the glyphs the row labels need (others render blank). */
const GLYPHS: Record<string, string[]> = {
  A: [' ### ', '#   #', '#   #', '#####', '#   #', '#   #', '#   #'],
  C: [' ### ', '#   #', '#    ', '#    ', '#    ', '#   #', ' ### '],
  D: ['#### ', '#   #', '#   #', '#   #', '#   #', '#   #', '#### '],
  E: ['#####', '#    ', '#    ', '#### ', '#    ', '#    ', '#####'],
  F: ['#####', '#    ', '#    ', '#### ', '#    ', '#    ', '#    '],
  G: [' ### ', '#   #', '#    ', '# ###', '#   #', '#   #', ' ### '],
  I: [' ### ', '  #  ', '  #  ', '  #  ', '  #  ', '  #  ', ' ### '],
  L: ['#    ', '#    ', '#    ', '#    ', '#    ', '#    ', '#####'],
  N: ['#   #', '##  #', '# # #', '# # #', '#  ##', '#   #', '#   #'],
  R: ['#### ', '#   #', '#   #', '#### ', '# #  ', '#  # ', '#   #'],
  T: ['#####', '  #  ', '  #  ', '  #  ', '  #  ', '  #  ', '  #  '],
  X: ['#   #', '#   #', ' # # ', '  #  ', ' # # ', '#   #', '#   #'],
  K: ['#   #', '#  # ', '# #  ', '##   ', '# #  ', '#  # ', '#   #'],
  M: ['#   #', '## ##', '# # #', '# # #', '#   #', '#   #', '#   #'],
  P: ['#### ', '#   #', '#   #', '#### ', '#    ', '#    ', '#    '],
  S: [' ####', '#    ', '#    ', ' ### ', '    #', '    #', '#### '],
  '0': [' ### ', '#   #', '#  ##', '# # #', '##  #', '#   #', ' ### '],
  '1': ['  #  ', ' ##  ', '  #  ', '  #  ', '  #  ', '  #  ', ' ### '],
  '|': ['  #  ', '  #  ', '  #  ', '  #  ', '  #  ', '  #  ', '  #  '],
};
const GLYPH_W = 5;
const GLYPH_H = 7;
const textWidth = (s: string) => s.length * (GLYPH_W + 1) * FONT_SCALE;

/** RGBA canvas helpers. */
class Canvas {
  readonly data: Buffer;
  constructor(
    readonly width: number,
    readonly height: number,
  ) {
    this.data = Buffer.alloc(width * height * 4);
    for (let p = 0; p < width * height; p++) this.data.set([BACKGROUND, BACKGROUND, BACKGROUND, 255], p * 4);
  }
  set(x: number, y: number, r: number, g: number, b: number): void {
    const o = (y * this.width + x) * 4;
    this.data[o] = r;
    this.data[o + 1] = g;
    this.data[o + 2] = b;
  }
  text(s: string, x0: number, y0: number): void {
    [...s].forEach((ch, n) => {
      const glyph = GLYPHS[ch.toUpperCase()];
      if (!glyph) return;
      for (let gy = 0; gy < GLYPH_H; gy++) {
        for (let gx = 0; gx < GLYPH_W; gx++) {
          if (glyph[gy][gx] !== '#') continue;
          for (let dy = 0; dy < FONT_SCALE; dy++) {
            for (let dx = 0; dx < FONT_SCALE; dx++) {
              this.set(x0 + (n * (GLYPH_W + 1) + gx) * FONT_SCALE + dx, y0 + gy * FONT_SCALE + dy, INK, INK, INK);
            }
          }
        }
      }
    });
  }
  /** Image `index` of `pixels` (HWC, 1 or 3 channels), magnified by `scale`, at (x0, y0). */
  image(pixels: Uint8Array, index: number, ds: Pick<ImageDataset, 'height' | 'width' | 'channels'>, scale: number, x0: number, y0: number): void {
    const { height: H, width: W, channels: C } = ds;
    const base = index * imageBytes(ds);
    for (let y = 0; y < H * scale; y++) {
      for (let x = 0; x < W * scale; x++) {
        const o = base + (Math.floor(y / scale) * W + Math.floor(x / scale)) * C;
        if (C === 1) this.set(x0 + x, y0 + y, pixels[o], pixels[o], pixels[o]);
        else this.set(x0 + x, y0 + y, pixels[o], pixels[o + 1], pixels[o + 2]);
      }
    }
  }
}

/** Indices of the first `count` images the backdoor test set would use (non-target for all-to-one). */
export function previewIndices(ds: ImageDataset, config: BaseAttackConfig, count: number): Int32Array {
  const out: number[] = [];
  for (let i = 0; i < ds.labels.length && out.length < count; i++) {
    if (config.labelMap === 'allToAll' || ds.labels[i] !== config.target) out.push(i);
  }
  return Int32Array.from(out);
}

/** |b - a| * gain, clipped to 255 (the difference row). */
export function amplifiedDifference(a: Uint8Array, b: Uint8Array, gain: number): Uint8Array {
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.min(255, Math.abs(b[i] - a[i]) * gain);
  return out;
}

/**
 * The preview PNG of `config` (a parsed attack config) on the first `count` non-target
 * images of `ds`; `seed` is the attack seed (trigger patterns that derive from it).
 */
export function attackPreviewPng(ds: ImageDataset, config: BaseAttackConfig, seed: number, count = 8, options: PreviewOptions = {}): Buffer {
  const scale = options.scale ?? 4;
  const gain = options.diffGain ?? 10;
  if (!Number.isInteger(count) || count < 1) throw new AttackConfigError('count', `expected a positive integer, got ${count}`);
  if (!Number.isInteger(scale) || scale < 1 || scale > 32) throw new AttackConfigError('scale', `expected an integer in [1, 32], got ${scale}`);
  const plugin = getAttack(config.name);
  validateTriggerAgainst(config, ds);
  const picked = previewIndices(ds, config, count);
  if (picked.length === 0) {
    throw new AttackConfigError('target', `${ds.name} has no image outside target class ${config.target} to show the trigger on`);
  }
  const clean = subsetDataset(ds, picked, `${ds.name}:preview`);
  const triggered = plugin.applyTrigger(clean, config, seed, options.triggerParameters);
  const diff = amplifiedDifference(clean.images, triggered.images, gain);

  const rows: PreviewRow[] = [
    { label: PREVIEW_ROWS[0], pixels: clean.images, channels: ds.channels },
    { label: PREVIEW_ROWS[1], pixels: triggered.images, channels: ds.channels },
    { label: PREVIEW_ROWS[2], pixels: diff, channels: ds.channels },
    ...(options.extraRows?.(clean) ?? []),
  ];
  const tileW = ds.width * scale;
  const tileH = ds.height * scale;
  const labelW = Math.max(...rows.map((r) => textWidth(r.label))) + MARGIN;
  const n = picked.length;
  const rowH = Math.max(tileH, GLYPH_H * FONT_SCALE);
  const canvas = new Canvas(MARGIN + labelW + n * (tileW + GAP) - GAP + MARGIN, MARGIN + rows.length * (rowH + GAP) - GAP + MARGIN);
  rows.forEach((row, r) => {
    if (row.pixels.length !== n * ds.height * ds.width * row.channels) {
      throw new RangeError(`preview row ${row.label}: ${row.pixels.length} values for ${n} images of ${ds.height}x${ds.width}x${row.channels}`);
    }
    const y0 = MARGIN + r * (rowH + GAP);
    canvas.text(row.label, MARGIN, y0 + Math.floor((rowH - GLYPH_H * FONT_SCALE) / 2));
    for (let k = 0; k < n; k++) canvas.image(row.pixels, k, { ...ds, channels: row.channels }, scale, MARGIN + labelW + k * (tileW + GAP), y0);
  });
  const png = new PNG({ width: canvas.width, height: canvas.height });
  canvas.data.copy(png.data);
  return PNG.sync.write(png);
}

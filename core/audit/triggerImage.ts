/**
 * A reversed trigger as a picture (pngjs, as the attack previews): three tiles side by side,
 * magnified by nearest neighbour, each labelled above: the mask (white = replaced pixel), the
 * pattern, and the trigger as it lands on an image (mask * pattern, black where the mask is 0).
 */
import { PNG } from 'pngjs';

const BACKGROUND = 40;
const GAP = 4;
const MARGIN = 8;
export const TILE_LABELS = ['MASK', 'PATTERN', 'MASK*PATTERN'] as const;

/** 5x7 glyphs of the label letters (a PNG library has no text; a font file would be overkill for three words). */
const GLYPHS: Record<string, string[]> = {
  M: ['10001', '11011', '10101', '10101', '10001', '10001', '10001'],
  A: ['01110', '10001', '10001', '11111', '10001', '10001', '10001'],
  S: ['01111', '10000', '10000', '01110', '00001', '00001', '11110'],
  K: ['10001', '10010', '10100', '11000', '10100', '10010', '10001'],
  P: ['11110', '10001', '10001', '11110', '10000', '10000', '10000'],
  T: ['11111', '00100', '00100', '00100', '00100', '00100', '00100'],
  E: ['11111', '10000', '10000', '11110', '10000', '10000', '11111'],
  R: ['11110', '10001', '10001', '11110', '10100', '10010', '10001'],
  N: ['10001', '11001', '10101', '10011', '10001', '10001', '10001'],
  '*': ['00000', '10101', '01110', '11111', '01110', '10101', '00000'],
};
const GLYPH_H = 7;
const GLYPH_ADVANCE = 6;
const LABEL_H = GLYPH_H + 4;

/** Draws `text` in light grey with its top-left corner at (x0, y0), clipped to `maxWidth`. */
function drawText(png: PNG, text: string, x0: number, y0: number, maxWidth: number): void {
  [...text].forEach((ch, i) => {
    const glyph = GLYPHS[ch];
    if (!glyph) throw new RangeError(`reversedTriggerPng: no glyph for ${JSON.stringify(ch)}`);
    for (let gy = 0; gy < GLYPH_H; gy++) {
      for (let gx = 0; gx < 5; gx++) {
        const x = x0 + i * GLYPH_ADVANCE + gx;
        if (glyph[gy][gx] !== '1' || x >= x0 + maxWidth) continue;
        const o = ((y0 + gy) * png.width + x) * 4;
        png.data[o] = png.data[o + 1] = png.data[o + 2] = 220;
      }
    }
  });
}

export function reversedTriggerPng(
  mask: Float32Array,
  pattern: Float32Array,
  shape: { height: number; width: number; channels: number },
  scale = 4,
): Buffer {
  const { height: H, width: W, channels: C } = shape;
  if (mask.length !== H * W || pattern.length !== H * W * C) {
    throw new RangeError(`reversedTriggerPng: mask ${mask.length} / pattern ${pattern.length} values for ${H}x${W}x${C}`);
  }
  const tileW = W * scale;
  const tileH = H * scale;
  const png = new PNG({ width: 2 * MARGIN + 3 * tileW + 2 * GAP, height: 2 * MARGIN + LABEL_H + tileH });
  png.data.fill(BACKGROUND);
  for (let p = 3; p < png.data.length; p += 4) png.data[p] = 255;
  const byte = (v: number) => Math.max(0, Math.min(255, Math.round(v * 255)));
  const rgb = (y: number, x: number, tile: number): [number, number, number] => {
    const m = mask[y * W + x];
    const ch = (k: number) => pattern[(y * W + x) * C + (C === 1 ? 0 : k)];
    if (tile === 0) return [byte(m), byte(m), byte(m)];
    const f = tile === 1 ? 1 : m;
    return [byte(f * ch(0)), byte(f * ch(1)), byte(f * ch(2))];
  };
  for (let tile = 0; tile < 3; tile++) {
    const x0 = MARGIN + tile * (tileW + GAP);
    drawText(png, TILE_LABELS[tile], x0, MARGIN, tileW);
    for (let y = 0; y < tileH; y++) {
      for (let x = 0; x < tileW; x++) {
        const o = ((MARGIN + LABEL_H + y) * png.width + x0 + x) * 4;
        const [r, g, b] = rgb(Math.floor(y / scale), Math.floor(x / scale), tile);
        png.data[o] = r;
        png.data[o + 1] = g;
        png.data[o + 2] = b;
      }
    }
  }
  return PNG.sync.write(png);
}

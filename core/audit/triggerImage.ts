/**
 * A reversed trigger as a picture (pngjs, as the attack previews): three tiles side by side,
 * magnified by nearest neighbour: the mask (white = replaced pixel), the pattern, and the
 * trigger as it lands on an image (mask * pattern, black where the mask is 0).
 */
import { PNG } from 'pngjs';

const BACKGROUND = 40;
const GAP = 4;
const MARGIN = 8;

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
  const png = new PNG({ width: 2 * MARGIN + 3 * tileW + 2 * GAP, height: 2 * MARGIN + tileH });
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
    for (let y = 0; y < tileH; y++) {
      for (let x = 0; x < tileW; x++) {
        const o = ((MARGIN + y) * png.width + x0 + x) * 4;
        const [r, g, b] = rgb(Math.floor(y / scale), Math.floor(x / scale), tile);
        png.data[o] = r;
        png.data[o + 1] = g;
        png.data[o + 2] = b;
      }
    }
  }
  return PNG.sync.write(png);
}

/**
 * Antialiased bilinear resizing of one uint8 HWC image (a triangle filter widened by the
 * scale factor when shrinking, as PIL's BILINEAR does and torchvision's Resize on images
 * therefore does). Plain bilinear sampling would read 4 of every 64 pixels of a 256-px
 * traffic sign shrunk to 32 px; widening the filter averages them all.
 */

interface Taps {
  start: Int32Array;
  count: Int32Array;
  /** count[i] normalised weights per output index, packed at i * maxTaps */
  weights: Float64Array;
  maxTaps: number;
}

function taps(inSize: number, outSize: number): Taps {
  const scale = inSize / outSize;
  const widen = Math.max(1, scale);
  const support = widen; // the triangle filter's support is 1 input pixel before widening
  const maxTaps = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * maxTaps);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const lo = Math.max(0, Math.floor(center - support + 0.5));
    const hi = Math.min(inSize, Math.floor(center + support + 0.5));
    let total = 0;
    for (let j = lo; j < hi; j++) {
      const w = Math.max(0, 1 - Math.abs((j + 0.5 - center) / widen));
      weights[i * maxTaps + (j - lo)] = w;
      total += w;
    }
    if (total === 0) {
      // a single nearest pixel when the window holds no positive weight (cannot happen for scale > 0, kept as a guard)
      weights[i * maxTaps] = 1;
      total = 1;
    }
    for (let k = 0; k < hi - lo; k++) weights[i * maxTaps + k] /= total;
    start[i] = lo;
    count[i] = Math.max(1, hi - lo);
  }
  return { start, count, weights, maxTaps };
}

/** `pixels`: height x width x channels uint8; returns outHeight x outWidth x channels. Same size: a copy. */
export function resizeImage(pixels: Uint8Array, height: number, width: number, channels: number, outHeight: number, outWidth: number): Uint8Array {
  if (pixels.length !== height * width * channels) throw new Error(`resizeImage: ${pixels.length} values for ${height}x${width}x${channels}`);
  if (height === outHeight && width === outWidth) return Uint8Array.from(pixels);
  const h = taps(width, outWidth);
  const v = taps(height, outHeight);
  // horizontal pass into floats, then vertical pass with one rounding at the end
  const mid = new Float64Array(height * outWidth * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < outWidth; x++) {
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let k = 0; k < h.count[x]; k++) s += h.weights[x * h.maxTaps + k] * pixels[(y * width + h.start[x] + k) * channels + c];
        mid[(y * outWidth + x) * channels + c] = s;
      }
    }
  }
  const out = new Uint8Array(outHeight * outWidth * channels);
  for (let y = 0; y < outHeight; y++) {
    for (let x = 0; x < outWidth; x++) {
      for (let c = 0; c < channels; c++) {
        let s = 0;
        for (let k = 0; k < v.count[y]; k++) s += v.weights[y * v.maxTaps + k] * mid[((v.start[y] + k) * outWidth + x) * channels + c];
        out[(y * outWidth + x) * channels + c] = Math.min(255, Math.max(0, Math.round(s)));
      }
    }
  }
  return out;
}

/**
 * STRIP (Gao et al., ACSAC 2019), an input-level backdoor detector: superimpose an input on
 * clean images and measure the entropy of the model's predictions. A clean input's class
 * changes with what it is blended with (high entropy); an input carrying a trigger stays with
 * the target whatever the overlay (low entropy). It assumes nothing about the trigger's size
 * or shape, which is what Neural Cleanse's small-mask search lacks (docs/audits.md, "Coverage");
 * it needs inputs that may carry a trigger, so it judges inputs, not a model on its own.
 *
 * Superimposition is the 50/50 blend by default. STRIP's own `addWeighted(x, 1, overlay, 1, 0)`
 * on 8-bit images (`sum`: saturated at 255) washes bright images out: on the synthetic audit
 * fixtures it flagged 36 of 89 BadNets-triggered inputs at 5 % false rejections against 89 of 89
 * for the blend (test/core/auditStrip.test.ts). The decision threshold is the
 * entropy below which only `falseRejectionRate` of clean inputs fall, measured on clean inputs
 * held apart from the overlays (the paper sets it from the clean entropy distribution the same way).
 */
import type { ImageDataset } from '../data/dataset';
import { Rng } from '../rng';

/**
 * How an input and an overlay are superimposed: `sum`, STRIP's addWeighted(x, 1, overlay, 1, 0)
 * saturated at 255; `average`, the 50/50 blend other implementations use (rounded).
 */
export type StripBlend = 'sum' | 'average';

/** Every (input, overlay) pair superimposed: row i*overlays + j. */
export function superimpose(inputs: ImageDataset, overlays: ImageDataset, overlayIndices: ArrayLike<number>[], blend: StripBlend = 'average'): ImageDataset {
  if (inputs.height !== overlays.height || inputs.width !== overlays.width || inputs.channels !== overlays.channels) {
    throw new Error(`STRIP: overlays of ${overlays.height}x${overlays.width}x${overlays.channels} do not match inputs of ${inputs.height}x${inputs.width}x${inputs.channels}`);
  }
  const per = inputs.height * inputs.width * inputs.channels;
  const n = inputs.labels.length;
  const k = overlayIndices[0]?.length ?? 0;
  const images = new Uint8Array(n * k * per);
  const labels = new Int32Array(n * k);
  for (let i = 0; i < n; i++) {
    const x = inputs.images.subarray(i * per, (i + 1) * per);
    for (let j = 0; j < k; j++) {
      const o = overlayIndices[i][j] * per;
      const row = (i * k + j) * per;
      if (blend === 'sum') for (let p = 0; p < per; p++) images[row + p] = Math.min(255, x[p] + overlays.images[o + p]);
      else for (let p = 0; p < per; p++) images[row + p] = (x[p] + overlays.images[o + p] + 1) >> 1;
      labels[i * k + j] = inputs.labels[i];
    }
  }
  return { ...inputs, name: `${inputs.name}+strip`, images, labels };
}

/** Shannon entropy (bits) of each row of a row-major probability matrix. */
export function rowEntropies(probabilities: Float32Array, numClasses: number): Float64Array {
  const rows = probabilities.length / numClasses;
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let h = 0;
    for (let c = 0; c < numClasses; c++) {
      const p = probabilities[r * numClasses + c];
      if (p > 0) h -= p * Math.log2(p);
    }
    out[r] = h;
  }
  return out;
}

/** Predicts softmax probabilities (row-major, size x numClasses) for a data set. */
export type Probabilities = (ds: ImageDataset) => Promise<Float32Array>;

/**
 * STRIP's score per input: the mean entropy over `overlaysPerInput` superimpositions with
 * overlays drawn (seeded, without repetition per input) from `overlays`.
 */
export async function stripEntropies(
  predict: Probabilities,
  inputs: ImageDataset,
  overlays: ImageDataset,
  options: { overlaysPerInput: number; seed: number; blend?: StripBlend },
): Promise<number[]> {
  const k = options.overlaysPerInput;
  if (!Number.isInteger(k) || k < 1 || k > overlays.labels.length) {
    throw new Error(`STRIP: overlaysPerInput must be an integer in [1, ${overlays.labels.length}] (the overlay images), got ${k}`);
  }
  const rng = new Rng(options.seed);
  const drawn = Array.from({ length: inputs.labels.length }, () => rng.permutation(overlays.labels.length).subarray(0, k));
  const blended = superimpose(inputs, overlays, drawn, options.blend);
  const h = rowEntropies(await predict(blended), inputs.numClasses);
  return Array.from({ length: inputs.labels.length }, (_, i) => {
    let sum = 0;
    for (let j = 0; j < k; j++) sum += h[i * k + j];
    return sum / k;
  });
}

/**
 * The entropy threshold that rejects `falseRejectionRate` of the clean inputs: the largest value
 * with at most that fraction of clean entropies strictly below it (an input is flagged when its
 * entropy is below the threshold).
 */
export function stripThreshold(cleanEntropies: number[], falseRejectionRate: number): number {
  if (cleanEntropies.length === 0) throw new Error('STRIP: no clean entropies to set the threshold on');
  if (!(falseRejectionRate >= 0 && falseRejectionRate < 1)) throw new Error(`STRIP: falseRejectionRate must be in [0, 1), got ${falseRejectionRate}`);
  const sorted = [...cleanEntropies].sort((a, b) => a - b);
  return sorted[Math.floor(falseRejectionRate * sorted.length)];
}

export interface StripResult {
  blend: StripBlend;
  overlaysPerInput: number;
  falseRejectionRate: number;
  threshold: number;
  /** clean inputs (held apart from the overlays) below the threshold */
  cleanFlagged: number;
  cleanInputs: number;
  /** suspect inputs below the threshold */
  flagged: number;
  inputs: number;
}

/**
 * STRIP on `suspect` inputs with the threshold set on `clean` inputs; `overlays` are clean
 * images neither set contains.
 */
export async function stripDetection(
  predict: Probabilities,
  sets: { overlays: ImageDataset; clean: ImageDataset; suspect: ImageDataset },
  options: { overlaysPerInput: number; falseRejectionRate: number; seed: number; blend?: StripBlend },
): Promise<StripResult> {
  const clean = await stripEntropies(predict, sets.clean, sets.overlays, options);
  const suspect = await stripEntropies(predict, sets.suspect, sets.overlays, { ...options, seed: options.seed + 1 });
  const threshold = stripThreshold(clean, options.falseRejectionRate);
  return {
    blend: options.blend ?? 'average',
    overlaysPerInput: options.overlaysPerInput,
    falseRejectionRate: options.falseRejectionRate,
    threshold,
    cleanFlagged: clean.filter((h) => h < threshold).length,
    cleanInputs: clean.length,
    flagged: suspect.filter((h) => h < threshold).length,
    inputs: suspect.length,
  };
}

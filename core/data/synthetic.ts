/**
 * A generated image classification task for the `ci` tier and the tests.
 *
 * Each class is a family of oriented sinusoidal gratings with a class-specific orientation
 * and spatial frequency (classes = orientations x frequency bands). Every image randomises
 * what a classifier must learn to ignore: phase, orientation/frequency jitter, a soft
 * Gaussian envelope at a random position and width (the "object"), a weak distractor
 * grating of random orientation, a colour tint, brightness, contrast, and Gaussian pixel
 * noise. A tiny CNN learns it to high accuracy in a few epochs, but a linear model on
 * raw pixels cannot (random phase cancels any fixed template).
 *
 * Pixels are clamped to [SYNTHETIC_PIXEL_MIN, SYNTHETIC_PIXEL_MAX] = [20, 225] and the
 * photometric ranges keep most of them well inside, so no image contains anything close to
 * a saturated white patch that could be mistaken for the BadNets trigger.
 */
import { Rng, deriveSeed } from '../rng';
import { DatasetError, type ImageDataset } from './dataset';

export const SYNTHETIC_PIXEL_MIN = 20;
export const SYNTHETIC_PIXEL_MAX = 225;

export interface SyntheticOptions {
  /** Number of images. */
  size: number;
  numClasses?: number;
  height?: number;
  width?: number;
  channels?: 1 | 3;
  seed: number;
  /** Standard deviation of the per-pixel Gaussian noise, 0-255 units. Default 8. */
  noise?: number;
  /**
   * Orientation jitter as a fraction of the spacing between class orientations: each image's
   * orientation is uniform within +-jitter of its class's. Default 0.2 (classes separable);
   * above 0.5 neighbouring classes overlap and the task gets an accuracy ceiling below 100%.
   */
  jitter?: number;
  name?: string;
}

export interface SyntheticSplitOptions extends Omit<SyntheticOptions, 'size' | 'name'> {
  trainSize: number;
  testSize: number;
}

/** Class c -> (orientation index, frequency band) on a grid of nOri x nFreq families. */
function classFamilies(numClasses: number): { nOri: number; nFreq: number; bands: number[] } {
  const nFreq = numClasses <= 5 ? 1 : numClasses <= 12 ? 2 : 3;
  const nOri = Math.ceil(numClasses / nFreq);
  // cycles per image width; well separated on a log scale
  const bands = nFreq === 1 ? [4] : nFreq === 2 ? [3, 6.5] : [2.5, 4.5, 8];
  return { nOri, nFreq, bands };
}

function checkPositiveInt(field: string, v: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(v) || v < 1 || v > max) {
    throw new DatasetError(`synthetic: ${field} must be an integer in [1, ${max}], got ${v}`);
  }
}

export function generateSyntheticDataset(opts: SyntheticOptions): ImageDataset {
  const numClasses = opts.numClasses ?? 10;
  const height = opts.height ?? 32;
  const width = opts.width ?? 32;
  const channels = opts.channels ?? 3;
  const noise = opts.noise ?? 8;
  const jitter = opts.jitter ?? 0.2;
  checkPositiveInt('size', opts.size);
  checkPositiveInt('numClasses', numClasses, 30);
  checkPositiveInt('height', height, 1024);
  checkPositiveInt('width', width, 1024);
  if (channels !== 1 && channels !== 3) throw new DatasetError(`synthetic: channels must be 1 or 3, got ${channels}`);
  if (!(noise >= 0 && noise <= 64)) throw new DatasetError(`synthetic: noise must be in [0, 64], got ${noise}`);
  if (!(jitter >= 0 && jitter <= 1)) throw new DatasetError(`synthetic: jitter must be in [0, 1], got ${jitter}`);
  if (!Number.isInteger(opts.seed)) throw new DatasetError(`synthetic: seed must be an integer, got ${opts.seed}`);

  const rng = new Rng(deriveSeed('synthetic', opts.seed, numClasses, height, width, channels));
  const n = opts.size;
  const { nOri, bands } = classFamilies(numClasses);
  const oriStep = Math.PI / nOri;
  const scale = Math.min(height, width);

  // balanced labels in random order
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = i % numClasses;
  rng.shuffle(labels);

  const per = height * width * channels;
  const images = new Uint8Array(n * per);
  const ex = new Float64Array(width);
  const ey = new Float64Array(height);
  const gain = new Float64Array(channels);

  for (let i = 0; i < n; i++) {
    const c = labels[i];
    const o = c % nOri;
    const f = Math.floor(c / nOri);
    // class signal, jittered
    const theta = o * oriStep + rng.uniform(-jitter, jitter) * oriStep;
    const cycles = bands[f] * rng.uniform(0.92, 1.08);
    const phase = rng.uniform(0, 2 * Math.PI);
    const k = (2 * Math.PI * cycles) / scale;
    const kx = k * Math.cos(theta);
    const ky = k * Math.sin(theta);
    // distractor grating: random orientation and frequency, weak
    const dTheta = rng.uniform(0, Math.PI);
    const dk = (2 * Math.PI * rng.uniform(1.5, 9)) / scale;
    const dkx = dk * Math.cos(dTheta);
    const dky = dk * Math.sin(dTheta);
    const dPhase = rng.uniform(0, 2 * Math.PI);
    const dAmp = rng.uniform(0.1, 0.3);
    // envelope: soft blob at a randomly translated centre
    const cx = (width - 1) / 2 + rng.uniform(-0.12, 0.12) * width;
    const cy = (height - 1) / 2 + rng.uniform(-0.12, 0.12) * height;
    const sigma = rng.uniform(0.28, 0.45) * scale;
    const floor = rng.uniform(0.25, 0.45);
    for (let x = 0; x < width; x++) ex[x] = Math.exp(-((x - cx) ** 2) / (2 * sigma * sigma));
    for (let y = 0; y < height; y++) ey[y] = Math.exp(-((y - cy) ** 2) / (2 * sigma * sigma));
    // photometric
    const mean = rng.uniform(70, 140);
    const amp = rng.uniform(30, 50);
    for (let ch = 0; ch < channels; ch++) gain[ch] = channels === 1 ? 1 : rng.uniform(0.8, 1.15);

    const base = i * per;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const env = floor + (1 - floor) * ex[x] * ey[y];
        const s = Math.sin(kx * x + ky * y + phase) * env + dAmp * Math.sin(dkx * x + dky * y + dPhase);
        const dv = amp * s;
        const o2 = base + (y * width + x) * channels;
        for (let ch = 0; ch < channels; ch++) {
          // tint scales the background level; the grating keeps its contrast
          let v = mean * gain[ch] + dv;
          if (noise > 0) v += noise * rng.normal();
          v = Math.round(v);
          images[o2 + ch] = v < SYNTHETIC_PIXEL_MIN ? SYNTHETIC_PIXEL_MIN : v > SYNTHETIC_PIXEL_MAX ? SYNTHETIC_PIXEL_MAX : v;
        }
      }
    }
  }

  const classNames: string[] = [];
  for (let c = 0; c < numClasses; c++) {
    const deg = Math.round(((c % nOri) * oriStep * 180) / Math.PI);
    classNames.push(`grating-${deg}deg-band${Math.floor(c / nOri)}`);
  }
  return {
    name: opts.name ?? `synthetic:seed=${opts.seed}`,
    height,
    width,
    channels,
    numClasses,
    images,
    labels,
    classNames,
  };
}

/** Train and test sets drawn from the same distribution with different derived seeds. */
export function generateSyntheticSplits(opts: SyntheticSplitOptions): { train: ImageDataset; test: ImageDataset } {
  const { trainSize, testSize, ...rest } = opts;
  const train = generateSyntheticDataset({
    ...rest,
    size: trainSize,
    seed: deriveSeed(opts.seed, 'train'),
    name: `synthetic:train:seed=${opts.seed}`,
  });
  const test = generateSyntheticDataset({
    ...rest,
    size: testSize,
    seed: deriveSeed(opts.seed, 'test'),
    name: `synthetic:test:seed=${opts.seed}`,
  });
  return { train, test };
}

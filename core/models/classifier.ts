/**
 * A classifier = a tfjs layers model that outputs logits + how it expects its inputs.
 * User models often end in softmax; training and distillation need logits, so such a
 * model is rebuilt with a linear last activation and the softmax is restored on export.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { ImageDataset } from '../data/dataset';
import { imageBytes } from '../data/dataset';

import type { InputRange } from './names';
import { evaluationGraph } from './graphInference';

export { InputRange } from './names';

export interface ClassifierMeta {
  /** "tinyCnn" | "smallCnn" | "resnet20" | "custom" */
  arch: string;
  inputShape: [number, number, number];
  numClasses: number;
  inputRange: InputRange;
  /** activation of the last layer in the user's original model, restored on export */
  exportedOutputActivation: 'linear' | 'softmax';
}

export interface Classifier {
  model: TF.LayersModel;
  meta: ClassifierMeta;
}

export function disposeClassifier(c: Classifier | undefined): void {
  c?.model.dispose();
}

function rangeTransform(range: InputRange): { scale: number; offset: number } {
  switch (range) {
    case '0-1':
      return { scale: 1 / 255, offset: 0 };
    case '0-255':
      return { scale: 1, offset: 0 };
    case '-1-1':
      return { scale: 2 / 255, offset: -1 };
  }
}

/** Fills `out` (length count*H*W*C) with the model's input encoding of uint8 pixels. */
export function encodePixels(src: Uint8Array, range: InputRange, out: Float32Array): Float32Array {
  const { scale, offset } = rangeTransform(range);
  for (let i = 0; i < src.length; i++) out[i] = src[i] * scale + offset;
  return out;
}

export function imagesToTensor(ds: ImageDataset, start: number, end: number, range: InputRange): TF.Tensor4D {
  const per = imageBytes(ds);
  const pixels = ds.images.subarray(start * per, end * per);
  const data = encodePixels(pixels, range, new Float32Array(pixels.length));
  return tf.tensor4d(data, [end - start, ds.height, ds.width, ds.channels]);
}

function checkCompatible(c: Classifier, ds: ImageDataset): void {
  const [h, w, ch] = c.meta.inputShape;
  if (ds.height !== h || ds.width !== w || ds.channels !== ch) {
    throw new Error(
      `model expects ${h}x${w}x${ch} images but data set "${ds.name}" has ${ds.height}x${ds.width}x${ds.channels}`,
    );
  }
  if (ds.numClasses !== c.meta.numClasses) {
    throw new Error(`model has ${c.meta.numClasses} outputs but data set "${ds.name}" has ${ds.numClasses} classes`);
  }
}

/**
 * Softmax probabilities (row-major, size x numClasses), inference mode, no augmentation; through
 * the BN-folded inference graph (./foldedInference), derived from the current weights per call.
 */
export async function predictProbabilities(
  c: Classifier,
  ds: ImageDataset,
  options: { temperature?: number; batchSize?: number } = {},
): Promise<Float32Array> {
  checkCompatible(c, ds);
  const n = ds.labels.length;
  const k = c.meta.numClasses;
  const batchSize = options.batchSize ?? 256;
  const temperature = options.temperature ?? 1;
  const out = new Float32Array(n * k);
  const graph = await evaluationGraph(c.model);
  try {
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize);
      const probs = tf.tidy(() => {
        const logits = graph.logits(imagesToTensor(ds, start, end, c.meta.inputRange));
        return tf.softmax(temperature === 1 ? logits : tf.div(logits, temperature));
      });
      out.set(await probs.data(), start * k);
      probs.dispose();
    }
  } finally {
    graph.dispose();
  }
  return out;
}

export async function predictLabels(c: Classifier, ds: ImageDataset, batchSize = 256): Promise<Int32Array> {
  checkCompatible(c, ds);
  const n = ds.labels.length;
  const out = new Int32Array(n);
  const graph = await evaluationGraph(c.model);
  try {
    for (let start = 0; start < n; start += batchSize) {
      const end = Math.min(n, start + batchSize);
      const pred = tf.tidy(() => tf.argMax(graph.logits(imagesToTensor(ds, start, end, c.meta.inputRange)), -1));
      out.set(await pred.data(), start);
      pred.dispose();
    }
  } finally {
    graph.dispose();
  }
  return out;
}


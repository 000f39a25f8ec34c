/**
 * A model's activation pattern (which ReLU units are on, which element wins each max-pool
 * window), recorded on one forward and frozen on later ones. A network of convolutions, dense
 * layers, inference-mode BN, residual adds, average pooling, ReLU and max pooling is piecewise
 * linear in its input: with the pattern frozen it is affine, exactly, on the whole input space.
 * That is what reverse-mode autograd differentiates twice (ReLU'' = 0, the max-pool's argmax
 * routing held fixed), so second-order products can be formed from frozen-pattern forwards
 * (core/defenses/ibau.ts) instead of differences of gradients across the pattern's kinks.
 *
 * The first fastApply with a fresh pattern records it (the forward's values are the model's
 * own: relu(x) = x * [x > 0], a 2x2 window's maximum = 4 x the mean of its entries times a one-hot
 * of its argmax), later ones replay it on inputs of the same batch size. The ops' gradients use
 * the frozen masks too, and the masks enter the custom ops as captured constants, not inputs, so
 * no gradient runs through them: both as autograd at the base point does.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';

/** tfjs-layers' pooling internals; typed here because the public typings hide them. */
interface PoolInternals {
  poolSize: [number, number];
  strides: [number, number];
  padding: 'valid' | 'same' | 'causal';
  dataFormat: 'channelsFirst' | 'channelsLast';
}

/** Layers that are affine in their input in inference mode (or shape-only), by class name. */
const AFFINE_LAYERS = new Set(['InputLayer', 'BatchNormalization', 'Add', 'GlobalAveragePooling2D', 'AveragePooling2D', 'Flatten', 'Reshape', 'Dropout']);
/** Layers with an `activation` that must be linear for the layer to be affine. */
const WITH_ACTIVATION = new Set(['Conv2D', 'Dense']);

/**
 * Why `layer` cannot run with a frozen pattern (undefined: it can): a layer that is neither affine
 * nor a ReLU / non-overlapping max pool, e.g. a tanh or sigmoid activation, whose second derivative
 * does not vanish, so freezing a pattern would not give autograd's products.
 */
export function frozenPatternRefusal(layer: TF.layers.Layer): string | undefined {
  const cls = layer.getClassName();
  if (AFFINE_LAYERS.has(cls)) return undefined;
  if (cls === 'ReLU') return (layer as unknown as { maxValue?: number | null }).maxValue == null ? undefined : 'a capped ReLU (not covered)';
  // tfjs-layers names activations in lower case ('linear', 'relu', 'tanh')
  const activation = (layer as unknown as { activation?: { getClassName(): string } }).activation?.getClassName().toLowerCase();
  const notCovered = `activation ${activation} (${activation === 'relu' ? 'not covered inside a layer' : 'not piecewise linear'})`;
  if (cls === 'Activation') return activation === 'relu' || activation === 'linear' ? undefined : notCovered;
  if (WITH_ACTIVATION.has(cls)) return activation === 'linear' ? undefined : notCovered;
  if (cls === 'MaxPooling2D') {
    const pool = layer as unknown as PoolInternals;
    const nonOverlapping = pool.strides[0] === pool.poolSize[0] && pool.strides[1] === pool.poolSize[1];
    return nonOverlapping && pool.padding === 'valid' && pool.dataFormat === 'channelsLast' ? undefined : 'a max pool with overlapping windows, padding or channels first (not covered)';
  }
  return 'a layer the frozen pattern does not cover';
}

export class ActivationPattern {
  private readonly masks: TF.Tensor[] = [];
  private cursor = 0;
  private rows?: number;

  /** Called by fastApply at the start of a forward of `rows` images. */
  begin(rows: number): void {
    if (this.rows !== undefined && rows !== this.rows) {
      throw new Error(`an activation pattern recorded on ${this.rows} images cannot be replayed on ${rows}`);
    }
    this.rows = rows;
    this.cursor = 0;
  }

  /** Called by fastApply at the end of a forward: a replay must have used every mask, in order. */
  end(): void {
    if (this.cursor !== this.masks.length) throw new Error(`the forward used ${this.cursor} of the pattern's ${this.masks.length} masks`);
  }

  get recorded(): number {
    return this.masks.length;
  }

  /** ReLU with its on/off mask recorded here (first forward) or taken from here (later ones). */
  relu(x: TF.Tensor): TF.Tensor {
    const mask = this.next(() => tf.cast(tf.greater(x, 0), 'float32'));
    return maskedOp(mask)(x) as TF.Tensor;
  }

  /** A non-overlapping 'valid' max pool, each window's winner recorded or taken from here. */
  maxPool(layer: TF.layers.Layer, x: TF.Tensor): TF.Tensor {
    const [kh, kw] = (layer as unknown as PoolInternals).poolSize;
    // one-hot of each window's argmax (the first of ties), laid out as x: 1 on the winners
    const winners = this.next(() => unwindows(tf.oneHot(tf.argMax(windows(x, kh, kw), -1), kh * kw).toFloat(), kh, kw, x.shape));
    return winnerPoolOp(winners, kh, kw)(x) as TF.Tensor;
  }

  dispose(): void {
    tf.dispose(this.masks);
    this.masks.length = 0;
  }

  private next(record: () => TF.Tensor): TF.Tensor {
    if (this.cursor === this.masks.length) this.masks.push(tf.keep(tf.tidy(record)));
    return this.masks[this.cursor++];
  }
}

/** [b, h, w, c] -> [b, h / kh, w / kw, c, kh * kw]: each non-overlapping window's entries last (a trailing partial window is dropped, as 'valid' pooling does). */
function windows(x: TF.Tensor, kh: number, kw: number): TF.Tensor {
  const [b, h, w, c] = x.shape;
  const [oh, ow] = [Math.floor(h / kh), Math.floor(w / kw)];
  const cropped = oh * kh === h && ow * kw === w ? x : tf.slice(x, [0, 0, 0, 0], [b, oh * kh, ow * kw, c]);
  return tf.reshape(tf.transpose(tf.reshape(cropped, [b, oh, kh, ow, kw, c]), [0, 1, 3, 5, 2, 4]), [b, oh, ow, c, kh * kw]);
}

/** The inverse of `windows`, zero-padded back to `shape`. */
function unwindows(win: TF.Tensor, kh: number, kw: number, shape: number[]): TF.Tensor {
  const [b, oh, ow, c] = win.shape;
  const x = tf.reshape(tf.transpose(tf.reshape(win, [b, oh, ow, c, kh, kw]), [0, 1, 4, 2, 5, 3]), [b, oh * kh, ow * kw, c]);
  const [h, w] = [shape[1], shape[2]];
  return h === oh * kh && w === ow * kw ? x : tf.pad(x, [[0, 0], [0, h - oh * kh], [0, w - ow * kw], [0, 0]]);
}

/** x * mask, differentiated as dy * mask (the mask a constant). */
function maskedOp(mask: TF.Tensor) {
  return tf.customGrad((...args: unknown[]) => {
    const [x] = args as [TF.Tensor];
    return { value: tf.mul(x, mask), gradFunc: (dy: TF.Tensor) => tf.mul(dy, mask) };
  });
}

/**
 * The max pool with its winners frozen: the mean of each window of x * winners times the window
 * size (the winner's value exactly for 2x2 windows), differentiated as dy spread back to the winners.
 */
function winnerPoolOp(winners: TF.Tensor, kh: number, kw: number) {
  return tf.customGrad((...args: unknown[]) => {
    const [x] = args as [TF.Tensor4D];
    return {
      value: tf.mul(tf.avgPool(tf.mul(x, winners) as TF.Tensor4D, [kh, kw], [kh, kw], 'valid'), kh * kw),
      gradFunc: (dy: TF.Tensor) => tf.mul(upsample(dy, kh, kw, x.shape), winners),
    };
  });
}

/** Each element of dy repeated over its kh x kw window, zero-padded back to `shape` (a dropped partial window gets 0). */
function upsample(dy: TF.Tensor, kh: number, kw: number, shape: number[]): TF.Tensor {
  const [b, oh, ow, c] = dy.shape;
  const up = tf.reshape(tf.tile(tf.reshape(dy, [b, oh, 1, ow, 1, c]), [1, 1, kh, 1, kw, 1]), [b, oh * kh, ow * kw, c]);
  const [h, w] = [shape[1], shape[2]];
  return h === oh * kh && w === ow * kw ? up : tf.pad(up, [[0, 0], [0, h - oh * kh], [0, w - ow * kw], [0, 0]]);
}

/** Throws, naming the layer, where `model` has a layer a frozen pattern cannot cover. */
export function assertFrozenPatternModel(model: TF.LayersModel, purpose: string): void {
  for (const layer of model.layers) {
    const refusal = frozenPatternRefusal(layer);
    if (refusal) throw new Error(`${purpose}: layer ${layer.name} (${layer.getClassName()}) of model ${model.name} is ${refusal}`);
  }
}

/**
 * Feature-level access to a tfjs layers classifier, for the defenses that work on inner
 * activations (FP prunes channels of the penultimate features, NAD distils attention maps
 * of the last stages). Everything is found from the model's graph, not from layer names,
 * so it works on the built-in architectures and on users' imported models alike.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { ImageDataset } from '../data/dataset';
import { imagesToTensor, type Classifier } from '../models/classifier';

type Layer = TF.layers.Layer;

export interface FeatureStage {
  layer: Layer;
  height: number;
  width: number;
  channels: number;
}

/** [height, width, channels] of a layer's single 4-D output, or undefined. */
function spatialShape(layer: Layer): [number, number, number] | undefined {
  let shape: TF.Shape | TF.Shape[];
  try {
    shape = layer.outputShape;
  } catch {
    return undefined;
  }
  if (shape.length !== 4 || Array.isArray(shape[0])) return undefined;
  const [, h, w, c] = shape as TF.Shape;
  return h && w && c ? [h, w, c] : undefined;
}

/** Conv-like layers carry a 4-D kernel (Conv2D, DepthwiseConv2D, SeparableConv2D, ...). */
const hasSpatialKernel = (layer: Layer) => layer.weights.some((w) => w.shape.length === 4);

/**
 * All stages of the model, shallowest first. A stage is one spatial resolution at which
 * some conv-like layer computes; its output is the last layer (in the model's topological
 * order) with a 4-D output of that resolution. A pooling layer that only shrinks the last
 * stage's output (tinyCnn's pool3) has no conv of its own and so is not a stage.
 */
export function allFeatureStages(model: TF.LayersModel): FeatureStage[] {
  const last = new Map<string, { index: number; stage: FeatureStage }>();
  const computed = new Set<string>();
  model.layers.forEach((layer, index) => {
    const s = spatialShape(layer);
    if (!s) return;
    const key = `${s[0]}x${s[1]}`;
    last.set(key, { index, stage: { layer, height: s[0], width: s[1], channels: s[2] } });
    if (hasSpatialKernel(layer)) computed.add(key);
  });
  return [...last.entries()]
    .filter(([key]) => computed.has(key))
    .sort((a, b) => a[1].index - b[1].index)
    .map(([, v]) => v.stage);
}

/** The outputs of the last `count` stages, shallowest first. */
export function featureStages(model: TF.LayersModel, count: number): FeatureStage[] {
  const stages = allFeatureStages(model);
  if (stages.length < count) {
    const found = stages.map((s) => `${s.layer.name} (${s.height}x${s.width}x${s.channels})`).join(', ') || 'none';
    throw new Error(
      `model "${model.name}" has ${stages.length} feature stage(s) (conv resolutions) but ${count} are needed; found: ${found}`,
    );
  }
  return stages.slice(stages.length - count);
}

function singleOutput(layer: Layer): TF.SymbolicTensor {
  if (layer.inboundNodes.length !== 1) {
    throw new Error(`layer "${layer.name}" is applied ${layer.inboundNodes.length} times in the model; its features are ambiguous`);
  }
  const out = layer.output;
  if (Array.isArray(out)) throw new Error(`layer "${layer.name}" has ${out.length} outputs; expected one feature map`);
  return out;
}

/**
 * A model with the outputs [...layers' outputs, logits] over the same layers and variables
 * as `model`: one forward pass yields features and logits, and gradients reach the shared
 * weights. It owns no tensors: never dispose it (that would free `model`'s weights).
 */
export function withFeatureOutputs(model: TF.LayersModel, layers: Layer[]): TF.LayersModel {
  if (model.outputs.length !== 1) throw new Error(`expected a single-output classifier, "${model.name}" has ${model.outputs.length}`);
  return tf.model({ inputs: model.inputs, outputs: [...layers.map(singleOutput), model.outputs[0]] });
}

// --- penultimate channels and their masks ---------------------------------------------

/** Layers between the penultimate features and the head that act on each channel separately. */
const CHANNELWISE = new Set([
  'MaxPooling2D',
  'AveragePooling2D',
  'GlobalAveragePooling2D',
  'GlobalMaxPooling2D',
  'Flatten',
  'Dropout',
  'SpatialDropout2D',
  'ReLU',
  'LeakyReLU',
  'Activation',
]);

function consumersIn(model: TF.LayersModel, layer: Layer): Layer[] {
  return layer.outboundNodes.map((n) => n.outboundLayer).filter((l) => model.layers.includes(l));
}

function producerOf(layer: Layer): Layer | undefined {
  const node = layer.inboundNodes[0];
  return layer.inboundNodes.length === 1 && node.inboundLayers.length === 1 ? node.inboundLayers[0] : undefined;
}

const weightRole = (w: TF.LayerVariable) => w.originalName.split('/').pop();

/** One masked weight: `multiplier(keep)` broadcasts over it, 0 on the pruned channels' entries. */
interface MaskTarget {
  variable: TF.LayerVariable;
  multiplier: (keep: Float32Array) => TF.Tensor;
}

export interface ChannelMask {
  /** how the mask is held in the weights, for the report */
  readonly via: string;
  /** the currently pruned channels */
  readonly pruned: number[];
  /** prunes exactly `channels`: the masked weights become their values at creation times the mask */
  set(channels: ArrayLike<number>): void;
  /** zeroes the pruned channels' weights again, keeping the rest as trained (after each optimiser step) */
  reapply(): void;
  /** frees the saved weights and multipliers (the model keeps its masked weights) */
  dispose(): void;
}

export interface PenultimateFeatures {
  /** the layer whose output channels are measured and pruned */
  layer: Layer;
  channels: number;
  height: number;
  width: number;
  /** how a mask will be held, decided from the graph */
  maskVia: string;
  createMask(): ChannelMask;
}

function makeMask(channels: number, via: string, targets: MaskTarget[]): ChannelMask {
  const originals = targets.map((t) => tf.keep(t.variable.read().clone()));
  let pruned: number[] = [];
  let multipliers: TF.Tensor[] = [];
  const rebuild = () => {
    tf.dispose(multipliers);
    const keep = new Float32Array(channels).fill(1);
    for (const c of pruned) keep[c] = 0;
    multipliers = targets.map((t) => tf.keep(t.multiplier(keep)));
  };
  const write = (base: (i: number) => TF.Tensor) =>
    tf.tidy(() => targets.forEach((t, i) => t.variable.write(tf.mul(base(i), multipliers[i]))));
  rebuild();
  return {
    via,
    get pruned() {
      return pruned.slice();
    },
    set(list) {
      const next = [...new Set(Array.from(list))].sort((a, b) => a - b);
      for (const c of next) {
        if (!Number.isInteger(c) || c < 0 || c >= channels) throw new RangeError(`channel ${c} is outside [0, ${channels})`);
      }
      pruned = next;
      rebuild();
      write((i) => originals[i]);
    },
    reapply() {
      if (pruned.length > 0) write((i) => targets[i].variable.read());
    },
    dispose() {
      tf.dispose(originals);
      tf.dispose(multipliers);
      multipliers = [];
    },
  };
}

interface MaskPlan {
  via: string;
  create(): ChannelMask;
}

/**
 * Masking through the BatchNorm that produces the features: with gamma = beta = 0 the BN
 * emits exactly 0 for that channel in both training and inference mode (whatever the batch
 * or moving statistics), and ReLU(0) = 0, so the channel's activation itself is zero, as
 * when FP removes the filter. Only exact when the BN feeds nothing but this ReLU and the
 * features are not a residual sum, hence the checks.
 */
function batchNormMask(model: TF.LayersModel, features: Layer, channels: number): MaskPlan | undefined {
  const cls = features.getClassName();
  let bn: Layer | undefined = features;
  if (cls === 'ReLU' || (cls === 'Activation' && features.getConfig().activation === 'relu')) {
    bn = producerOf(features);
    if (bn && consumersIn(model, bn).length !== 1) return undefined;
  }
  if (!bn || bn.getClassName() !== 'BatchNormalization') return undefined;
  const gamma = bn.weights.find((w) => weightRole(w) === 'gamma');
  const beta = bn.weights.find((w) => weightRole(w) === 'beta');
  if (!gamma || !beta || gamma.shape[0] !== channels) return undefined;
  const perChannel = (keep: Float32Array) => tf.tensor1d(keep);
  const via = `gamma and beta of BatchNorm "${bn.name}"`;
  return {
    via,
    create: () =>
      makeMask(channels, via, [
        { variable: gamma, multiplier: perChannel },
        { variable: beta, multiplier: perChannel },
      ]),
  };
}

/** Activations f with f(0) = 0: a zeroed channel stays zero through them. */
const ZERO_PRESERVING = new Set(['relu', 'relu6', 'linear', 'elu', 'selu', 'tanh', 'softsign', 'swish', 'mish', 'gelu']);

interface HeadPath {
  /** the head's first weighted layer (Dense or Conv2D) */
  head: Layer;
  /** inputs per channel position if a Flatten lies on the path */
  flattenedSize?: number;
  keepsZeros: boolean;
}

/** Follows the features to the head through channel-wise layers, or says why it cannot. */
function headPath(model: TF.LayersModel, features: Layer, channels: number): HeadPath | { error: string } {
  const path: string[] = [features.name];
  let layer = features;
  let flattenedSize: number | undefined;
  let keepsZeros = true;
  for (;;) {
    const next = consumersIn(model, layer);
    if (next.length !== 1) return { error: `"${layer.name}" feeds ${next.length} layers (${path.join(' -> ')})` };
    layer = next[0];
    path.push(layer.name);
    const cls = layer.getClassName();
    if (cls === 'Dense' || cls === 'Conv2D') return { head: layer, flattenedSize, keepsZeros };
    if (!CHANNELWISE.has(cls)) return { error: `${cls} layer "${layer.name}" mixes channels before the head (${path.join(' -> ')})` };
    if (cls === 'Activation' && !ZERO_PRESERVING.has(layer.getConfig().activation as string)) keepsZeros = false;
    if (cls === 'Flatten') {
      const s = spatialShape(producerOf(layer)!);
      if (!s || s[2] !== channels) return { error: `cannot map the inputs of "${layer.name}" to channels` };
      flattenedSize = s[0] * s[1] * s[2];
    }
  }
}

/**
 * Masking in the head's first weighted layer: the features reach it through channel-wise
 * layers only (pooling, flatten, dropout, activations), so the kernel entries that read
 * channel c are all the head sees of c; zeroing them removes the channel from the output
 * exactly (and stops gradients into it). Needed where no single BN produces the channel,
 * e.g. a ResNet whose last activation is ReLU(residual + shortcut).
 */
function headMask(path: HeadPath, channels: number): MaskPlan | { error: string } {
  const { head, flattenedSize } = path;
  const kernel = head.weights.find((w) => weightRole(w) === 'kernel');
  if (!kernel) return { error: `head layer "${head.name}" has no kernel` };
  const shape = kernel.shape as number[];
  let multiplier: (keep: Float32Array) => TF.Tensor;
  if (head.getClassName() === 'Dense') {
    const rows = shape[0];
    if (rows !== (flattenedSize ?? channels)) return { error: `"${head.name}" has ${rows} inputs, expected ${flattenedSize ?? channels}` };
    // a channels-last flatten puts channel i % channels at input i
    multiplier = (keep) => tf.tensor2d(Float32Array.from({ length: rows }, (_, i) => keep[i % channels]), [rows, 1]);
  } else {
    if (flattenedSize !== undefined || shape[2] !== channels) return { error: `cannot map "${head.name}"'s kernel to channels` };
    multiplier = (keep) => tf.tensor4d(keep, [1, 1, channels, 1]);
  }
  const via = `input ${head.getClassName() === 'Dense' ? 'rows' : 'slices'} of "${head.name}"'s kernel`;
  return { via, create: () => makeMask(channels, via, [{ variable: kernel, multiplier }]) };
}

/**
 * The penultimate features: the output of the last stage (featureStages), i.e. the last
 * conv activation before the head (tinyCnn b3_relu, smallCnn b3b_relu, resnet20 s3b3_relu).
 * The mask zeroes a channel's activation through its BatchNorm where that is exact (and the
 * zero reaches the head unchanged), else removes the channel from the head's kernel. Either
 * way the mask lives in the weights, so it survives export to the tfjs layers format.
 */
export function penultimateChannels(model: TF.LayersModel): PenultimateFeatures {
  const [{ layer, channels, height, width }] = featureStages(model, 1);
  const path = headPath(model, layer, channels);
  if ('error' in path) throw new Error(`"${layer.name}" is not followed by a channel-wise head: ${path.error}`);
  const viaBn = path.keepsZeros ? batchNormMask(model, layer, channels) : undefined;
  const plan = viaBn ?? headMask(path, channels);
  if ('error' in plan) throw new Error(`cannot mask the channels of "${layer.name}" exactly: ${plan.error}`);
  return { layer, channels, height, width, maskVia: plan.via, createMask: plan.create };
}

/** Mean activation per channel of `layer`'s output over `data` (inference mode, no augmentation). */
export async function meanChannelActivation(c: Classifier, layer: Layer, data: ImageDataset, batchSize = 128): Promise<Float32Array> {
  const shape = spatialShape(layer);
  if (!shape) throw new Error(`layer "${layer.name}" has no 4-D feature output`);
  const view = tf.model({ inputs: c.model.inputs, outputs: singleOutput(layer) });
  const n = data.labels.length;
  if (n === 0) throw new Error('cannot measure activations on an empty data set');
  let sum: TF.Tensor1D | undefined;
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const batchSum = tf.tidy(() => {
      const f = view.apply(imagesToTensor(data, start, end, c.meta.inputRange), { training: false }) as TF.Tensor4D;
      return tf.sum(f, [0, 1, 2]) as TF.Tensor1D;
    });
    const prev = sum;
    sum = prev ? (tf.add(prev, batchSum) as TF.Tensor1D) : batchSum;
    if (prev) tf.dispose([prev, batchSum]);
  }
  const [h, w] = shape;
  const total = await sum!.data();
  sum!.dispose();
  return Float32Array.from(total, (v) => v / (n * h * w));
}

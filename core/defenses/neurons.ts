/**
 * BatchNorm channels as prunable "neurons" (ANP's unit of pruning): a forward pass of a
 * functional tfjs layers model in which every BN layer is computed explicitly, in
 * inference mode, with a per-channel mask and multiplicative perturbations of its scale
 * and shift:
 *
 *   y = ((x - movingMean) / sqrt(movingVar + eps)) * gamma * (mask + noiseScale) + beta * (1 + noiseShift)
 *
 * and the pruning that makes a channel's output exactly zero (gamma = beta = 0), which
 * leaves an ordinary layers model that exports like any other.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { fastRelu, fusedBatchNorm, inputGradientConv, isPlainRelu, useFastPath } from '../train/fast';

type Layer = TF.layers.Layer;

export interface BnNeuronLayer {
  name: string;
  channels: number;
}

/** Per-channel modulation of one BN layer; any part left out is the identity (mask 1, noise 0). */
export interface BnModulation {
  mask?: TF.Tensor1D;
  noiseScale?: TF.Tensor1D;
  noiseShift?: TF.Tensor1D;
}

interface BnParts {
  gamma?: TF.Tensor;
  beta?: TF.Tensor;
  movingMean: TF.Tensor;
  movingVariance: TF.Tensor;
  epsilon: number;
}

function isBatchNorm(layer: Layer): boolean {
  return layer.getClassName() === 'BatchNormalization';
}

function bnConfig(layer: Layer): { axis: number; epsilon: number } {
  const cfg = layer.getConfig() as { axis?: number | number[]; epsilon?: number };
  const axis = Array.isArray(cfg.axis) ? cfg.axis : [cfg.axis ?? -1];
  const rank = (layer.inputSpec?.[0]?.ndim ?? (layer.input as TF.SymbolicTensor).shape.length) as number;
  if (axis.length !== 1 || (axis[0] !== -1 && axis[0] !== rank - 1)) {
    throw new Error(`BatchNorm layer "${layer.name}" normalises axis ${JSON.stringify(cfg.axis)}; only the channels-last axis is supported`);
  }
  return { axis: -1, epsilon: cfg.epsilon ?? 1e-3 };
}

/** The layer's own variables (not copies), by role. */
function bnParts(layer: Layer): BnParts {
  const byRole = new Map(layer.weights.map((w) => [w.originalName.split('/').pop() as string, w.read()]));
  const movingMean = byRole.get('moving_mean');
  const movingVariance = byRole.get('moving_variance');
  if (!movingMean || !movingVariance) throw new Error(`BatchNorm layer "${layer.name}" has no moving statistics`);
  return { gamma: byRole.get('gamma'), beta: byRole.get('beta'), movingMean, movingVariance, epsilon: bnConfig(layer).epsilon };
}

/**
 * The model's BN layers in graph order, with their channel counts. Throws, naming the
 * model, if it has none: ANP's neurons are BN channels.
 */
export function bnNeuronLayers(model: TF.LayersModel, what = `model "${model.name}"`): BnNeuronLayer[] {
  const out = model.layers.filter(isBatchNorm).map((l) => {
    bnConfig(l);
    const mean = l.weights.find((w) => w.originalName.endsWith('moving_mean'));
    return { name: l.name, channels: mean ? (mean.shape[0] as number) : 0 };
  });
  if (out.length === 0) {
    throw new Error(
      `ANP needs BatchNorm layers; ${what} has none (its neurons are the channels of BatchNormalization layers). ` +
        'Use a defense that does not prune BN channels (ft, fp, nad, ibau) for this model.',
    );
  }
  return out;
}

function explicitBatchNorm(x: TF.Tensor, p: BnParts, m: BnModulation | undefined, fast: boolean, batchStats = false): TF.Tensor {
  let scale: TF.Tensor = p.gamma ?? tf.onesLike(p.movingMean);
  if (m?.mask || m?.noiseScale) {
    const factor = m.mask && m.noiseScale ? tf.add(m.mask, m.noiseScale) : m.mask ?? tf.add(1, m.noiseScale!);
    scale = tf.mul(scale, factor);
  }
  const shift = p.beta && m?.noiseShift ? tf.mul(p.beta, tf.add(1, m.noiseShift)) : p.beta;
  if (batchStats) {
    // the batch's own statistics (training-mode BN, the ANP authors' mask learning), composed so
    // that the gradient also flows through the mean and variance; moving statistics untouched
    const { mean, variance } = tf.moments(x, Array.from({ length: x.rank - 1 }, (_, i) => i));
    const y = tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, p.epsilon))), scale);
    return shift ? tf.add(y, shift) : y;
  }
  if (fast && x.rank === 4) {
    // the modulated scale and shift go in as gamma and beta of the fused kernel, whose gradient
    // reaches them (and through them the masks and noise): two passes over the activations
    // instead of five composed ops forward and their gradients backward
    return fusedBatchNorm(x as TF.Tensor4D, scale as TF.Tensor1D, (shift ?? tf.zerosLike(p.movingMean)) as TF.Tensor1D, p.movingMean as TF.Tensor1D, p.movingVariance as TF.Tensor1D, p.epsilon, false).y;
  }
  const normalised = tf.mul(tf.sub(x, p.movingMean), tf.rsqrt(tf.add(p.movingVariance, p.epsilon)));
  const y = tf.mul(normalised, scale);
  return shift ? tf.add(y, shift) : y;
}

export interface NeuronForwardOptions {
  /** every BN layer normalises with the batch's statistics instead of its moving ones */
  batchStats?: boolean;
  /**
   * the loss will be differentiated to the masks and noise only, never to the model's weights:
   * on the fast path the convolutions run unfused, so their backward skips the filter gradients
   * (Conv2DBackpropFilter). Same function, same gradients to the masks and noise.
   */
  inputGradientsOnly?: boolean;
}

/**
 * Logits of `model` on `x` in inference mode, with the BN layers named in `modulations`
 * computed explicitly (see the file comment); every other layer runs through its own
 * `apply`. Walks the functional graph from the model's inputs: a layer runs once every
 * tensor its node consumes is known, so any DAG (residual Adds included) is covered.
 * Call inside tf.tidy or a gradient function: the intermediates are not disposed here.
 */
export function forwardWithNeurons(
  model: TF.LayersModel,
  x: TF.Tensor,
  modulations: Record<string, BnModulation> = {},
  fast: boolean = useFastPath(),
  options: NeuronForwardOptions = {},
): TF.Tensor {
  const { batchStats = false, inputGradientsOnly = false } = options;
  if (model.inputs.length !== 1 || model.outputs.length !== 1) {
    throw new Error(`model "${model.name}" has ${model.inputs.length} inputs and ${model.outputs.length} outputs; expected one of each`);
  }
  for (const name of Object.keys(modulations)) {
    const layer = model.layers.find((l) => l.name === name);
    if (!layer || !isBatchNorm(layer)) throw new Error(`model "${model.name}" has no BatchNorm layer "${name}"`);
  }
  const known = new Map<number, TF.Tensor>([[model.inputs[0].id, x]]);
  const pending = model.layers.filter((l) => l.getClassName() !== 'InputLayer');
  const outputId = model.outputs[0].id;
  while (!known.has(outputId)) {
    const before = pending.length;
    for (let i = 0; i < pending.length; i++) {
      const layer = pending[i];
      const node = layer.inboundNodes.find((n) => n.inputTensors.length > 0 && n.inputTensors.every((t) => known.has(t.id)));
      if (!node) continue;
      const inputs = node.inputTensors.map((t) => known.get(t.id)!);
      let outputs: TF.Tensor | TF.Tensor[];
      if (isBatchNorm(layer)) {
        outputs = explicitBatchNorm(inputs[0], bnParts(layer), modulations[layer.name], fast, batchStats);
      } else if (fast && inputs.length === 1 && isPlainRelu(layer)) {
        outputs = fastRelu(inputs[0]);
      } else {
        const conv = fast && inputGradientsOnly && inputs.length === 1 ? inputGradientConv(layer, inputs[0]) : undefined;
        outputs = conv ?? (layer.apply(inputs.length === 1 ? inputs[0] : inputs, { training: false }) as TF.Tensor | TF.Tensor[]);
      }
      const list = Array.isArray(outputs) ? outputs : [outputs];
      node.outputTensors.forEach((t, k) => known.set(t.id, list[k]));
      pending.splice(i, 1);
      i--;
    }
    if (pending.length === before) {
      throw new Error(`model "${model.name}": cannot order its layers from the input (is it a functional model with one input?)`);
    }
  }
  return known.get(outputId)!;
}

/** A copy of the weights of the named layers (getWeights hands out the live variables). */
export function saveLayerWeights(model: TF.LayersModel, layers: string[]): Map<string, Array<{ shape: number[]; values: Float32Array }>> {
  return new Map(
    layers.map((name) => [
      name,
      model.getLayer(name).weights.map((w) => ({ shape: w.shape as number[], values: w.read().dataSync().slice() as Float32Array })),
    ]),
  );
}

export function restoreLayerWeights(model: TF.LayersModel, saved: ReturnType<typeof saveLayerWeights>): void {
  for (const [name, arrays] of saved) {
    const tensors = arrays.map((a) => tf.tensor(a.values, a.shape));
    model.getLayer(name).setWeights(tensors);
    tf.dispose(tensors);
  }
}

/**
 * Prunes BN channels in place: gamma and beta of each listed channel become 0, so its
 * output is exactly 0 whatever the input and the neuron contributes nothing downstream
 * (ReLU(0) = 0; a residual Add passes only the shortcut). ANP's reference code zeroes only
 * gamma, which leaves the constant beta; zeroing both removes the neuron (`zero: 'scale'`
 * does as that code). Returns how many distinct channels were zeroed.
 */
export function pruneNeurons(
  model: TF.LayersModel,
  channelsByLayer: Record<string, ArrayLike<number>>,
  opts: { zero: 'scaleAndShift' | 'scale' } = { zero: 'scaleAndShift' },
): number {
  const zeroed = opts.zero === 'scale' ? ['gamma'] : ['gamma', 'beta'];
  let count = 0;
  for (const [name, channels] of Object.entries(channelsByLayer)) {
    if (channels.length === 0) continue;
    const layer = model.getLayer(name);
    if (!isBatchNorm(layer)) throw new Error(`cannot prune "${name}": it is a ${layer.getClassName()} layer, not BatchNorm`);
    const roles = layer.weights.map((w) => w.originalName.split('/').pop());
    if (!roles.includes('gamma')) throw new Error(`cannot prune BatchNorm layer "${name}": it has no scale (gamma)`);
    // getWeights returns the layer's live variables: read them, never dispose them
    const replaced = layer.getWeights().map((t, k) => {
      const values = t.dataSync().slice() as Float32Array;
      if (!zeroed.includes(roles[k] ?? '')) return tf.tensor(values, t.shape);
      for (let i = 0; i < channels.length; i++) {
        const c = channels[i];
        if (!Number.isInteger(c) || c < 0 || c >= values.length) {
          throw new Error(`cannot prune channel ${c} of "${name}": it has ${values.length} channels`);
        }
        values[c] = 0;
      }
      return tf.tensor(values, t.shape);
    });
    layer.setWeights(replaced);
    tf.dispose(replaced);
    count += new Set(Array.from(channels)).size;
  }
  return count;
}

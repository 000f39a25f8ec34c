/**
 * The model's forward pass with TensorFlow's fused kernels where tfjs composes many small
 * ops: BatchNormalization layers run as FusedBatchNormV3 (+ FusedBatchNormGradV3), ReLU
 * layers get the native ReluGrad, residual Add layers are one add whose gradient passes dy
 * to both inputs; every other layer runs through its own layer.apply. The model stays a
 * standard tfjs layers model: this only walks its graph, in the same order tfjs-layers'
 * runInternalGraph does, and updates the BN moving statistics with the values
 * tfjs-layers' BatchNormalization.call computes, all layers' in one set of native calls.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';
import { fusedBatchNorm } from './batchNorm';
import { fastRelu } from './relu';
import { residualAdd } from './add';
import { MovingUpdates, type BatchNormInternals, type LayerVariableRef } from './movingUpdates';
import { nativeMath } from './native';
import { layerGraph } from './layerGraph';
import { frozenPatternRefusal, type ActivationPattern } from './activationPattern';

type Kind = 'batchNorm' | 'relu' | 'add' | 'layer';

interface Step {
  layer: TF.layers.Layer;
  kind: Kind;
  inputs: number[];
  outputs: number[];
}

interface Plan {
  input: number;
  outputs: number[];
  steps: Step[];
}

/** tfjs-layers internals read beyond the layer graph (./layerGraph); typed here because the public typings hide them. */

interface ConvInternals {
  rank: number;
  kernel: LayerVariableRef;
  bias: LayerVariableRef | null;
  strides: [number, number];
  padding: 'valid' | 'same' | 'causal';
  dataFormat: 'channelsFirst' | 'channelsLast';
  dilationRate: [number, number];
  activation: { getClassName(): string; apply(x: TF.Tensor): TF.Tensor };
}

// layers whose masks would have to be threaded through the graph; models with them keep model.apply
const MASKING_LAYERS = new Set(['Masking', 'Embedding']);

function kindOf(layer: TF.layers.Layer): Kind {
  const cls = layer.getClassName();
  if (cls === 'BatchNormalization') {
    const bn = layer as unknown as BatchNormInternals;
    const rank = (layer.inputSpec?.[0]?.ndim as number | undefined) ?? 0;
    if (rank === 4 && (bn.axis === -1 || bn.axis === 3) && bn.gamma && bn.beta) return 'batchNorm';
  }
  if (cls === 'Add') return 'add';
  return isPlainRelu(layer) ? 'relu' : 'layer';
}

/** A ReLU layer (or relu Activation) without a cap: what fastRelu computes. */
export function isPlainRelu(layer: TF.layers.Layer): boolean {
  const cls = layer.getClassName();
  if (cls === 'ReLU') return (layer as unknown as { maxValue?: number | null }).maxValue == null;
  // tfjs-layers' activation class names are lower case ('relu')
  return cls === 'Activation' && (layer as unknown as { activation: { getClassName(): string } }).activation.getClassName().toLowerCase() === 'relu';
}

function buildPlan(model: TF.LayersModel): Plan | undefined {
  const graph = layerGraph(model);
  if (!graph?.nodesByDepth || graph.inputs.length !== 1) return undefined;
  const depths = Object.keys(graph.nodesByDepth)
    .map(Number)
    .sort((a, b) => b - a);
  const steps: Step[] = [];
  for (const depth of depths) {
    for (const node of graph.nodesByDepth[String(depth)]) {
      const layer = node.outboundLayer;
      const cls = layer.getClassName();
      if (cls === 'InputLayer') continue;
      if (MASKING_LAYERS.has(cls)) return undefined;
      steps.push({
        layer,
        kind: kindOf(layer),
        inputs: node.inputTensors.map((t) => t.id),
        outputs: node.outputTensors.map((t) => t.id),
      });
    }
  }
  return { input: graph.inputs[0].id, outputs: graph.outputs.map((t) => t.id), steps };
}

const plans = new WeakMap<TF.LayersModel, Plan | null>();

function planOf(model: TF.LayersModel): Plan | undefined {
  let plan = plans.get(model);
  if (plan === undefined) {
    plan = buildPlan(model) ?? null;
    plans.set(model, plan);
  }
  return plan ?? undefined;
}

/**
 * tfjs-layers' doMovingAverage, op for op: moving - (moving - batch) * (1 - momentum), with the
 * decay rounded to float32 as tfjs does; bare TensorFlow ops, as nothing differentiates it.
 */
function updateMoving(variable: LayerVariableRef, batch: TF.Tensor, momentum: number): void {
  const { sub, mul } = nativeMath;
  tf.tidy(() => {
    const orig = variable.read();
    variable.write(sub(orig, mul(sub(orig, batch), tf.scalar(1 - momentum))));
  });
}

function batchNormLayer(layer: TF.layers.Layer, x: TF.Tensor, training: boolean, moving?: MovingUpdates): TF.Tensor {
  const bn = layer as unknown as BatchNormInternals;
  if (x.rank !== 4) return layer.apply(x, { training }) as TF.Tensor;
  const r = fusedBatchNorm(
    x as TF.Tensor4D,
    bn.gamma!.read() as TF.Tensor1D,
    bn.beta!.read() as TF.Tensor1D,
    bn.movingMean.read() as TF.Tensor1D,
    bn.movingVariance.read() as TF.Tensor1D,
    bn.epsilon,
    training,
    { besselVariance: moving !== undefined },
  );
  if (moving && r.batchMean && r.batchVariance) moving.add(bn, r.batchMean, r.batchVariance, r.count!);
  else if (r.batchMean && r.batchVariance) {
    updateMoving(bn.movingMean, r.batchMean, bn.momentum);
    updateMoving(bn.movingVariance, r.batchVariance, bn.momentum);
    r.batchMean.dispose();
    r.batchVariance.dispose();
  }
  return r.y;
}

/**
 * A Conv2D layer on tf.conv2d (+ bias, + its activation) instead of the layer's fused conv2d:
 * the fused op's gradient computes the filter and bias gradients eagerly, while tf.conv2d's
 * gradient computes each input's part only when the tape asks for it, so a backward to the
 * model's input alone (weights held constant) skips Conv2DBackpropFilter. Same function.
 * undefined for layers it does not cover (not a 2-D channels-last Conv2D): apply those as they are.
 */
export function inputGradientConv(layer: TF.layers.Layer, x: TF.Tensor): TF.Tensor | undefined {
  const conv = layer as unknown as ConvInternals;
  if (layer.getClassName() !== 'Conv2D' || conv.rank !== 2 || conv.dataFormat !== 'channelsLast' || conv.padding === 'causal' || x.rank !== 4) {
    return undefined;
  }
  let y: TF.Tensor = tf.conv2d(x as TF.Tensor4D, conv.kernel.read() as TF.Tensor4D, conv.strides, conv.padding, 'NHWC', conv.dilationRate);
  if (conv.bias) y = tf.add(y, conv.bias.read());
  return conv.activation.getClassName() === 'Linear' ? y : conv.activation.apply(y);
}

/** Whether `model` runs through fastApply's own graph walk (one input, no masking layers). */
export function supportsFastApply(model: TF.LayersModel): boolean {
  return planOf(model) !== undefined;
}

export interface FastApplyOptions {
  /**
   * only gradients to the input will be taken (the weights are constants, as in trigger
   * reverse-engineering): convolutions run unfused so their backward skips the filter gradient
   */
  inputGradientsOnly?: boolean;
  /**
   * The walk as it was before the per-step savings (Add layers through their own layer.apply,
   * each BN's moving statistics updated by its own native ops as the layer runs): the same
   * values by other calls, kept so tests can assert the savings changed no number.
   */
  reference?: boolean;
  /**
   * Record the ReLU and max-pool pattern into this (a fresh one) or freeze it to what it holds
   * (./activationPattern); inference mode only. Models with a layer that is not piecewise linear
   * are refused with its name.
   */
  activationPattern?: ActivationPattern;
}

/** Same-shape inputs: what residualAdd sums (the Add layer broadcasts other shapes by reshaping). */
function sameShapes(inputs: TF.Tensor[]): boolean {
  return inputs.length >= 2 && inputs.every((t) => t.shape.length === inputs[0].shape.length && t.shape.every((d, i) => d === inputs[0].shape[i]));
}

/**
 * model.apply(x, { training }) with fused BN and ReLU kernels; falls back to model.apply for
 * models whose graph it does not handle. Call inside tf.tidy (intermediates are not freed early).
 */
export function fastApply(model: TF.LayersModel, x: TF.Tensor, training: boolean, options: FastApplyOptions = {}): TF.Tensor | TF.Tensor[] {
  const plan = planOf(model);
  const pattern = options.activationPattern;
  if (pattern && (training || !plan)) throw new Error(`a frozen activation pattern needs an inference-mode forward of a model fastApply walks (${model.name})`);
  if (!plan) return model.apply(x, { training }) as TF.Tensor | TF.Tensor[];
  pattern?.begin(x.shape[0]);
  const moving = training && !options.reference ? new MovingUpdates() : undefined;
  try {
    const values = new Map<number, TF.Tensor>([[plan.input, x]]);
    for (const step of plan.steps) {
      const inputs = step.inputs.map((id) => {
        const v = values.get(id);
        if (!v) throw new Error(`fastApply: input of layer ${step.layer.name} was not computed`);
        return v;
      });
      let outputs: TF.Tensor[];
      if (pattern) {
        const refusal = frozenPatternRefusal(step.layer);
        if (refusal) throw new Error(`layer ${step.layer.name} (${step.layer.getClassName()}, ${refusal}) cannot run with a frozen activation pattern`);
      }
      if (step.kind === 'batchNorm') outputs = [batchNormLayer(step.layer, inputs[0], training, moving)];
      else if (step.kind === 'relu') outputs = [pattern ? pattern.relu(inputs[0]) : fastRelu(inputs[0])];
      else if (pattern && step.layer.getClassName() === 'MaxPooling2D') outputs = [pattern.maxPool(step.layer, inputs[0])];
      // tfjs-layers' Add clones its first input and sums left to right; the same sums without
      // the clone, whose backward (a Cast per add) and the add's (a Reshape per input) go too
      else if (step.kind === 'add' && !options.reference && sameShapes(inputs)) outputs = [inputs.slice(1).reduce(residualAdd, inputs[0])];
      else {
        const conv = options.inputGradientsOnly && inputs.length === 1 ? inputGradientConv(step.layer, inputs[0]) : undefined;
        const out = conv ?? (step.layer.apply(inputs.length === 1 ? inputs[0] : inputs, { training }) as TF.Tensor | TF.Tensor[]);
        outputs = Array.isArray(out) ? out : [out];
      }
      step.outputs.forEach((id, i) => values.set(id, outputs[i]));
    }
    moving?.flush();
    pattern?.end();
    const outputs = plan.outputs.map((id) => values.get(id)!);
    return outputs.length === 1 ? outputs[0] : outputs;
  } finally {
    moving?.dispose();
  }
}

/**
 * The inference graph every evaluation runs (predictLabels, predictProbabilities): derived from
 * a trained tfjs layers model at call time, with each BatchNormalization that follows a Conv2D
 * folded into that convolution's weights and bias, and a ReLU that follows folded into the same
 * call: one tf.fused.conv2d (conv + bias + relu) where the training graph runs conv, BN, ReLU.
 *
 * Folding, per output channel c, with s = gamma / sqrt(movingVariance + epsilon):
 *   kernel'[..., c] = kernel[..., c] * s[c]
 *   bias'[c]        = beta[c] - movingMean[c] * s[c]  (+ convBias[c] * s[c])
 * which is BN's inference formula applied to the convolution's output, up to float rounding.
 *
 * The derived weights are new tensors; the model's own variables are only read, never written,
 * so the trained model (what is saved and exported) is unchanged. The graph is rebuilt for every
 * evaluation call (a few small ops per BN layer) rather than cached, so it can never be stale
 * after the model trains further. Models whose graph cannot be walked (several inputs, masking
 * layers) run through applyModel instead, with the reason logged once.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { applyModel, isPlainRelu } from '../train/fast';
import { layerGraph } from '../train/fast/layerGraph';

/** tfjs-layers internals the walk reads beyond the layer graph; typed here because the public typings hide them. */
interface VariableRef {
  read(): TF.Tensor;
}
interface ConvInternals {
  kernel: VariableRef;
  bias?: VariableRef | null;
  strides: number[];
  padding: string;
  dilationRate: number[] | number;
  dataFormat: string;
  activation: { getClassName(): string };
}
interface BatchNormInternals {
  axis: number;
  epsilon: number;
  gamma?: VariableRef | null;
  beta?: VariableRef | null;
  movingMean: VariableRef;
  movingVariance: VariableRef;
}

interface WalkNode {
  layer: TF.layers.Layer;
  inputs: number[];
  outputs: number[];
}

/** One call of the inference graph: a folded conv (+ bias + relu), or a layer as tfjs runs it. */
export type FoldedOp =
  | { kind: 'conv'; input: number; output: number; filter: TF.Tensor4D; bias: TF.Tensor1D; relu: boolean; strides: [number, number]; pad: 'same' | 'valid'; dilations: [number, number] }
  | { kind: 'relu'; input: number; output: number }
  | { kind: 'add'; inputs: number[]; output: number }
  | { kind: 'layer'; layer: TF.layers.Layer; inputs: number[]; outputs: number[] };
type Op = FoldedOp;

/** The folded graph as a list of ops over symbolic tensor ids (its conv weights owned by the caller). */
export interface FoldedPlan {
  input: number;
  output: number;
  ops: FoldedOp[];
  foldedBatchNorms: number;
  foldedRelus: number;
}

/** The folded plan of `model`, or why it has none. Dispose the conv ops' filter and bias when done. */
export function foldedPlan(model: TF.LayersModel): FoldedPlan | string {
  const walk = graphNodes(model);
  if (typeof walk === 'string') return walk;
  if (walk.outputs.length !== 1) return `the model has ${walk.outputs.length} outputs`;
  return { input: walk.input, output: walk.outputs[0], ...buildOps(walk.nodes, walk.outputs) };
}

export interface InferenceGraph {
  /** The model's logits for x (inference mode). Call inside tf.tidy: intermediates are not freed early. */
  logits(x: TF.Tensor): TF.Tensor;
  /** Frees the derived weights. The model itself is untouched. */
  dispose(): void;
  /** BatchNormalization layers folded into a preceding convolution */
  readonly foldedBatchNorms: number;
  /** ReLU layers folded into a preceding (folded) convolution */
  readonly foldedRelus: number;
  /** why the model runs through applyModel instead; undefined when the folded walk runs it */
  readonly fallbackReason?: string;
}

// layers whose masks would have to be threaded through the graph; models with them keep applyModel
const MASKING_LAYERS = new Set(['Masking', 'Embedding']);
const OFF = new Set(['0', 'false', 'off', 'no']);

/** NTML_FOLDED_INFERENCE unset or anything but 0/false/off/no: evaluations use the folded graph (one session or eager). */
export function foldedInferenceRequested(): boolean {
  return foldedInferenceMode() !== 'off';
}

const GRAPH = new Set(['', '1', 'true', 'on', 'yes', 'graph']);

/**
 * NTML_FOLDED_INFERENCE: unset, 1/true/on/yes or graph -> the folded graph as one TensorFlow
 * session (./graphInference); eager -> the eager folded graph; 0/false/off/no -> off (unfolded).
 * The session is the default because it measured fastest on a quiet machine (bench/results/
 * throughput.md, 2026-12-07: resnet20 1.33x and smallCnn 1.57x PyTorch's inference, median of 3
 * rounds, where the eager fold gave 0.67x and 1.29x and the unfolded pass 0.73x and 1.13x).
 */
export function foldedInferenceMode(): 'off' | 'eager' | 'graph' {
  const raw = process.env.NTML_FOLDED_INFERENCE;
  const v = raw?.trim().toLowerCase();
  if (v === undefined || GRAPH.has(v)) return 'graph';
  if (OFF.has(v)) return 'off';
  if (v === 'eager') return 'eager';
  throw new Error(`NTML_FOLDED_INFERENCE must be 1 or graph (the folded graph as one TensorFlow session, the default), eager (the eager folded graph) or 0 (unfolded), got "${raw}"`);
}

function graphNodes(model: TF.LayersModel): { input: number; outputs: number[]; nodes: WalkNode[] } | string {
  const graph = layerGraph(model);
  if (!graph?.nodesByDepth) return 'the model has no layer graph to walk';
  if (graph.inputs.length !== 1) return `the model has ${graph.inputs.length} inputs`;
  const depths = Object.keys(graph.nodesByDepth)
    .map(Number)
    .sort((a, b) => b - a);
  const nodes: WalkNode[] = [];
  for (const depth of depths) {
    for (const node of graph.nodesByDepth[String(depth)]) {
      const cls = node.outboundLayer.getClassName();
      if (cls === 'InputLayer') continue;
      if (MASKING_LAYERS.has(cls)) return `layer ${node.outboundLayer.name} is a ${cls} layer (masks are not threaded through)`;
      nodes.push({ layer: node.outboundLayer, inputs: node.inputTensors.map((t) => t.id), outputs: node.outputTensors.map((t) => t.id) });
    }
  }
  return { input: graph.inputs[0].id, outputs: graph.outputs.map((t) => t.id), nodes };
}

function isFoldableConv(layer: TF.layers.Layer): boolean {
  if (layer.getClassName() !== 'Conv2D') return false;
  const conv = layer as unknown as ConvInternals;
  return conv.dataFormat === 'channelsLast' && conv.activation.getClassName().toLowerCase() === 'linear' && (conv.padding === 'same' || conv.padding === 'valid');
}

function isFoldableBatchNorm(layer: TF.layers.Layer): boolean {
  if (layer.getClassName() !== 'BatchNormalization') return false;
  const bn = layer as unknown as BatchNormInternals;
  const rank = (layer.inputSpec?.[0]?.ndim as number | undefined) ?? 0;
  return rank === 4 && (bn.axis === -1 || bn.axis === 3);
}

function pair(v: number[] | number): [number, number] {
  return typeof v === 'number' ? [v, v] : [v[0], v[1] ?? v[0]];
}

/** The folded filter and bias of `conv` followed by `bn` (or the conv's own, without a BN). */
function foldWeights(conv: ConvInternals, bn: BatchNormInternals | undefined): { filter: TF.Tensor4D; bias: TF.Tensor1D } {
  const folded = tf.tidy(() => {
    const kernel = conv.kernel.read() as TF.Tensor4D;
    const filters = kernel.shape[3];
    const convBias = conv.bias ? (conv.bias.read() as TF.Tensor1D) : tf.zeros([filters]);
    if (!bn) return { filter: tf.clone(kernel), bias: tf.clone(convBias) as TF.Tensor1D };
    const gamma = bn.gamma ? bn.gamma.read() : tf.ones([filters]);
    const beta = bn.beta ? bn.beta.read() : tf.zeros([filters]);
    const scale = tf.mul(gamma, tf.rsqrt(tf.add(bn.movingVariance.read(), bn.epsilon)));
    // the kernel's last axis is the output channel, so the scale broadcasts over it
    const filter = tf.mul(kernel, scale) as TF.Tensor4D;
    const bias = tf.add(beta, tf.mul(tf.sub(convBias, bn.movingMean.read()), scale)) as TF.Tensor1D;
    return { filter, bias };
  });
  // kept, so that a caller's tidy does not free weights the graph uses after it returns
  tf.keep(folded.filter);
  tf.keep(folded.bias);
  return folded;
}

function buildOps(nodes: WalkNode[], modelOutputs: number[]): { ops: Op[]; foldedBatchNorms: number; foldedRelus: number } {
  // how many nodes (and model outputs) read each tensor: only a tensor read once can be folded away
  const readers = new Map<number, WalkNode[]>();
  for (const n of nodes) for (const id of n.inputs) readers.set(id, [...(readers.get(id) ?? []), n]);
  const isOutput = new Set(modelOutputs);
  const soleReader = (id: number): WalkNode | undefined => {
    const r = readers.get(id);
    return r && r.length === 1 && !isOutput.has(id) && r[0].inputs.length === 1 ? r[0] : undefined;
  };

  const absorbed = new Set<WalkNode>();
  const ops: Op[] = [];
  let foldedBatchNorms = 0;
  let foldedRelus = 0;
  for (const node of nodes) {
    if (absorbed.has(node)) continue;
    if (isFoldableConv(node.layer) && node.inputs.length === 1) {
      let output = node.outputs[0];
      const next = soleReader(output);
      const bnNode = next && isFoldableBatchNorm(next.layer) ? next : undefined;
      if (bnNode) output = bnNode.outputs[0];
      const after = soleReader(output);
      const reluNode = after && isPlainRelu(after.layer) ? after : undefined;
      if (reluNode) output = reluNode.outputs[0];
      if (bnNode || reluNode) {
        const conv = node.layer as unknown as ConvInternals;
        const { filter, bias } = foldWeights(conv, bnNode?.layer as unknown as BatchNormInternals | undefined);
        ops.push({
          kind: 'conv',
          input: node.inputs[0],
          output,
          filter,
          bias,
          relu: !!reluNode,
          strides: pair(conv.strides),
          pad: conv.padding as 'same' | 'valid',
          dilations: pair(conv.dilationRate),
        });
        if (bnNode) {
          absorbed.add(bnNode);
          foldedBatchNorms++;
        }
        if (reluNode) {
          absorbed.add(reluNode);
          foldedRelus++;
        }
        continue;
      }
    }
    if (isPlainRelu(node.layer) && node.inputs.length === 1) ops.push({ kind: 'relu', input: node.inputs[0], output: node.outputs[0] });
    // tfjs-layers' Add clones its first input before summing (an Identity call per residual add)
    else if (node.layer.getClassName() === 'Add' && node.inputs.length >= 2) ops.push({ kind: 'add', inputs: node.inputs, output: node.outputs[0] });
    else ops.push({ kind: 'layer', layer: node.layer, inputs: node.inputs, outputs: node.outputs });
  }
  return { ops, foldedBatchNorms, foldedRelus };
}

const loggedFallbacks = new Set<string>();

function fallback(model: TF.LayersModel, reason: string): InferenceGraph {
  const line = `ntml: inference of model "${model.name}" runs unfolded: ${reason}`;
  if (!loggedFallbacks.has(line)) {
    loggedFallbacks.add(line);
    console.warn(line);
  }
  return {
    logits: (x) => applyModel(model, x, false),
    dispose: () => {},
    foldedBatchNorms: 0,
    foldedRelus: 0,
    fallbackReason: reason,
  };
}

/**
 * The model's inference graph with BN (and a following ReLU) folded into each convolution.
 * `folded: false` (default: NTML_FOLDED_INFERENCE) gives applyModel's inference pass instead.
 * Dispose the result when the evaluation is done; rebuild it after the weights change.
 */
export function inferenceGraph(model: TF.LayersModel, folded: boolean = foldedInferenceRequested()): InferenceGraph {
  if (!folded) {
    return { logits: (x) => applyModel(model, x, false), dispose: () => {}, foldedBatchNorms: 0, foldedRelus: 0, fallbackReason: 'NTML_FOLDED_INFERENCE=0' };
  }
  const walk = graphNodes(model);
  if (typeof walk === 'string') return fallback(model, walk);
  if (walk.outputs.length !== 1) return fallback(model, `the model has ${walk.outputs.length} outputs`);
  const { ops, foldedBatchNorms, foldedRelus } = buildOps(walk.nodes, walk.outputs);
  let disposed = false;
  return {
    foldedBatchNorms,
    foldedRelus,
    logits(x: TF.Tensor): TF.Tensor {
      if (disposed) throw new Error(`the inference graph of model "${model.name}" was disposed`);
      const values = new Map<number, TF.Tensor>([[walk.input, x]]);
      const read = (id: number, layer: string) => {
        const v = values.get(id);
        if (!v) throw new Error(`inference graph: input of layer ${layer} was not computed`);
        return v;
      };
      for (const op of ops) {
        if (op.kind === 'conv') {
          const y = tf.fused.conv2d({
            x: read(op.input, 'conv') as TF.Tensor4D,
            filter: op.filter,
            bias: op.bias,
            strides: op.strides,
            pad: op.pad,
            dilations: op.dilations,
            activation: op.relu ? 'relu' : 'linear',
          });
          values.set(op.output, y);
        } else if (op.kind === 'relu') {
          values.set(op.output, tf.relu(read(op.input, 'relu')));
        } else if (op.kind === 'add') {
          const terms = op.inputs.map((id) => read(id, 'add'));
          values.set(op.output, terms.length === 2 ? tf.add(terms[0], terms[1]) : tf.addN(terms));
        } else {
          const inputs = op.inputs.map((id) => read(id, op.layer.name));
          const out = op.layer.apply(inputs.length === 1 ? inputs[0] : inputs, { training: false }) as TF.Tensor | TF.Tensor[];
          const outs = Array.isArray(out) ? out : [out];
          op.outputs.forEach((id, i) => values.set(id, outs[i]));
        }
      }
      return values.get(walk.outputs[0])!;
    },
    dispose() {
      if (disposed) return;
      disposed = true;
      for (const op of ops) if (op.kind === 'conv') tf.dispose([op.filter, op.bias]);
    },
  };
}

/**
 * The layer graph of a tfjs-layers model, as the fast training forward (./forward) and the folded
 * inference graph (core/models/foldedInference) walk it: tfjs-layers internals, typed here
 * because the public typings hide them.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';

export interface SymbolicRef {
  id: number;
}
export interface GraphNode {
  outboundLayer: TF.layers.Layer;
  inputTensors: SymbolicRef[];
  outputTensors: SymbolicRef[];
}
export interface LayerGraph {
  nodesByDepth?: Record<string, GraphNode[]>;
  inputs: SymbolicRef[];
  outputs: SymbolicRef[];
}

/** The model's functional graph: a Sequential model wraps one, which it builds on first use as its call() does. */
export function layerGraph(model: TF.LayersModel): LayerGraph {
  const seq = model as unknown as { model?: TF.LayersModel; build(): void };
  if (model instanceof tf.Sequential && !seq.model) seq.build();
  return (model instanceof tf.Sequential ? seq.model : model) as unknown as LayerGraph;
}

/**
 * Opt-in (NTML_FOLDED_INFERENCE=graph; issue 22 item 1): the BN-folded inference plan (./foldedInference) as one
 * TensorFlow graph, run by one native session call per batch instead of one binding call per
 * kernel. tfjs-node runs graphs only from a SavedModel on disk, so the plan is written as a
 * SavedModel with the folded weights as constants (no variables) in a temporary folder, loaded
 * with tf.node.loadSavedModel, and the folder removed. In a session TensorFlow's graph
 * optimiser runs, which eager execution never does: its remapper can fuse Conv2D + BiasAdd +
 * Relu into one _FusedConv2D, the call the binding cannot make eagerly.
 *
 * Supported layers: folded convs, ReLU, residual Add, MaxPooling2D, GlobalAveragePooling2D,
 * Flatten, linear Dense. Anything else: undefined (the caller keeps the eager folded graph).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { foldedPlan, foldedInferenceMode, inferenceGraph, type FoldedOp, type InferenceGraph } from './foldedInference';

// tfjs-node's own compiled TensorFlow protos (google-protobuf, a dependency of tfjs-node): untyped JavaScript
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const pb = require('@tensorflow/tfjs-node/dist/proto/api_pb') as Record<string, any>;

const DT_FLOAT = 1;
const DT_INT32 = 3;

function shape(dims: number[]) {
  const s = new pb.TensorShape();
  for (const d of dims) {
    const dim = new pb.TensorShape.Dim();
    dim.setSize(d);
    s.addDim(dim);
  }
  return s;
}

const attr = {
  type(t: number) {
    const a = new pb.AttrValue();
    a.setType(t);
    return a;
  },
  ints(v: number[]) {
    const a = new pb.AttrValue();
    const l = new pb.AttrValue.ListValue();
    l.setIList(v);
    a.setList(l);
    return a;
  },
  str(s: string) {
    const a = new pb.AttrValue();
    a.setS(Buffer.from(s));
    return a;
  },
  bool(b: boolean) {
    const a = new pb.AttrValue();
    a.setB(b);
    return a;
  },
  shape(dims: number[]) {
    const a = new pb.AttrValue();
    a.setShape(shape(dims));
    return a;
  },
  tensor(data: Float32Array | Int32Array, dims: number[], dtype: number) {
    const t = new pb.Tensor();
    t.setDtype(dtype);
    t.setTensorShape(shape(dims));
    t.setTensorContent(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    const a = new pb.AttrValue();
    a.setTensor(t);
    return a;
  },
};

class GraphWriter {
  readonly graph = new pb.GraphDef();
  private count = 0;

  node(op: string, inputs: string[], attrs: Record<string, unknown>): string {
    const name = `${op.toLowerCase()}_${this.count++}`;
    const n = new pb.NodeDef();
    n.setName(name);
    n.setOp(op);
    for (const i of inputs) n.addInput(i);
    const m = n.getAttrMap();
    for (const [k, v] of Object.entries(attrs)) m.set(k, v);
    this.graph.addNode(n);
    return name;
  }

  constFloat(t: TF.Tensor): string {
    return this.node('Const', [], { dtype: attr.type(DT_FLOAT), value: attr.tensor(new Float32Array(t.dataSync()), t.shape, DT_FLOAT) });
  }

  constInt(v: number[]): string {
    return this.node('Const', [], { dtype: attr.type(DT_INT32), value: attr.tensor(Int32Array.from(v), [v.length], DT_INT32) });
  }
}

const F = () => ({ T: attr.type(DT_FLOAT) });

/** The graph node for one op of the plan, or a reason it has none. */
function emit(w: GraphWriter, op: FoldedOp, read: (id: number) => string): { outputs: number[]; names: string[] } | string {
  if (op.kind === 'conv') {
    const conv = w.node('Conv2D', [read(op.input), w.constFloat(op.filter)], {
      ...F(),
      strides: attr.ints([1, op.strides[0], op.strides[1], 1]),
      padding: attr.str(op.pad.toUpperCase()),
      data_format: attr.str('NHWC'),
      dilations: attr.ints([1, op.dilations[0], op.dilations[1], 1]),
      use_cudnn_on_gpu: attr.bool(true),
    });
    let y = w.node('BiasAdd', [conv, w.constFloat(op.bias)], { ...F(), data_format: attr.str('NHWC') });
    if (op.relu) y = w.node('Relu', [y], F());
    return { outputs: [op.output], names: [y] };
  }
  if (op.kind === 'relu') return { outputs: [op.output], names: [w.node('Relu', [read(op.input)], F())] };
  if (op.kind === 'add') {
    const ins = op.inputs.map(read);
    const y = ins.length === 2 ? w.node('AddV2', ins, F()) : w.node('AddN', ins, { ...F(), N: (() => { const a = new pb.AttrValue(); a.setI(ins.length); return a; })() });
    return { outputs: [op.output], names: [y] };
  }
  const layer = op.layer as unknown as Record<string, unknown> & TF.layers.Layer;
  const cls = layer.getClassName();
  const x = read(op.inputs[0]);
  const one = (name: string) => ({ outputs: op.outputs, names: [name] });
  switch (cls) {
    case 'MaxPooling2D': {
      const pool = layer.poolSize as number[];
      const strides = (layer.strides as number[] | undefined) ?? pool;
      if (layer.dataFormat !== 'channelsLast') return `${layer.name}: channels-first pooling`;
      return one(w.node('MaxPool', [x], {
        ...F(),
        ksize: attr.ints([1, pool[0], pool[1], 1]),
        strides: attr.ints([1, strides[0], strides[1], 1]),
        padding: attr.str(String(layer.padding).toUpperCase()),
        data_format: attr.str('NHWC'),
      }));
    }
    case 'GlobalAveragePooling2D':
      if (layer.dataFormat !== 'channelsLast') return `${layer.name}: channels-first pooling`;
      return one(w.node('Mean', [x, w.constInt([1, 2])], { ...F(), Tidx: attr.type(DT_INT32), keep_dims: attr.bool(false) }));
    case 'Flatten': {
      const dims = (layer.outputShape as number[]).slice(1);
      return one(w.node('Reshape', [x, w.constInt([-1, dims.reduce((a, b) => a * b, 1)])], { ...F(), Tshape: attr.type(DT_INT32) }));
    }
    case 'Dense': {
      const activation = (layer.activation as { getClassName(): string }).getClassName().toLowerCase();
      if (activation !== 'linear') return `${layer.name}: Dense with activation ${activation}`;
      const kernel = (layer.kernel as { read(): TF.Tensor }).read();
      let y = w.node('MatMul', [x, w.constFloat(kernel)], { ...F(), transpose_a: attr.bool(false), transpose_b: attr.bool(false) });
      const bias = layer.bias as { read(): TF.Tensor } | null | undefined;
      if (bias) y = w.node('BiasAdd', [y, w.constFloat(bias.read())], { ...F(), data_format: attr.str('NHWC') });
      return one(y);
    }
    default:
      return `layer ${layer.name} (${cls}) has no graph form here`;
  }
}

/** The model's folded graph as a TensorFlow session, or the reason it could not be built. */
export async function sessionInferenceGraph(model: TF.LayersModel): Promise<InferenceGraph | string> {
  if (tf.getBackend() !== 'tensorflow') return `the active tfjs backend is "${tf.getBackend()}", not the native "tensorflow" one`;
  const plan = foldedPlan(model);
  if (typeof plan === 'string') return plan;
  const w = new GraphWriter();
  try {
    const inputShape = (model.inputs[0].shape as (number | null)[]).map((d) => d ?? -1);
    const outputShape = (model.outputs[0].shape as (number | null)[]).map((d) => d ?? -1);
    const names = new Map<number, string>([[plan.input, w.node('Placeholder', [], { dtype: attr.type(DT_FLOAT), shape: attr.shape(inputShape) })]]);
    const read = (id: number) => {
      const n = names.get(id);
      if (!n) throw new Error(`graph inference: tensor ${id} used before it is computed`);
      return n;
    };
    for (const op of plan.ops) {
      const r = emit(w, op, read);
      if (typeof r === 'string') return r;
      r.outputs.forEach((id, i) => names.set(id, r.names[i]));
    }
    const out = w.node('Identity', [read(plan.output)], F());

    const meta = new pb.MetaGraphDef();
    const info = new pb.MetaGraphDef.MetaInfoDef();
    info.addTags('serve');
    meta.setMetaInfoDef(info);
    meta.setGraphDef(w.graph);
    const tensorInfo = (name: string, dims: number[]) => {
      const t = new pb.TensorInfo();
      t.setName(`${name}:0`);
      t.setDtype(DT_FLOAT);
      t.setTensorShape(shape(dims));
      return t;
    };
    const sig = new pb.SignatureDef();
    sig.getInputsMap().set('x', tensorInfo(names.get(plan.input)!, inputShape));
    sig.getOutputsMap().set('logits', tensorInfo(out, outputShape));
    sig.setMethodName('tensorflow/serving/predict');
    meta.getSignatureDefMap().set('serving_default', sig);
    const saved = new pb.SavedModel();
    saved.setSavedModelSchemaVersion(1);
    saved.addMetaGraphs(meta);

    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-inference-'));
    try {
      await fs.writeFile(path.join(dir, 'saved_model.pb'), saved.serializeBinary());
      const session = await tf.node.loadSavedModel(dir, ['serve'], 'serving_default');
      let disposed = false;
      return {
        logits: (x) => session.predict(x) as TF.Tensor,
        dispose: () => {
          if (!disposed) session.dispose();
          disposed = true;
        },
        foldedBatchNorms: plan.foldedBatchNorms,
        foldedRelus: plan.foldedRelus,
      };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  } finally {
    for (const op of plan.ops) if (op.kind === 'conv') tf.dispose([op.filter, op.bias]);
  }
}

const loggedFallbacks = new Set<string>();

/**
 * The forward every evaluation runs, by NTML_FOLDED_INFERENCE: unset, 1 or "graph", the folded
 * graph as one TensorFlow session (falling back to the eager folded graph, with the reason logged
 * once, where it cannot be built); "eager", the eager folded graph; 0, the unfolded applyModel pass.
 */
export async function evaluationGraph(model: TF.LayersModel): Promise<InferenceGraph> {
  const mode = foldedInferenceMode();
  if (mode !== 'graph') return inferenceGraph(model, mode === 'eager');
  // a session that cannot be built (no writable temporary folder, a graph TensorFlow refuses)
  // costs the evaluation its speed-up, never its result
  const g = await sessionInferenceGraph(model).catch((err: unknown) => `building the session failed: ${(err as Error).message.split('\n')[0]}`);
  if (typeof g !== 'string') return g;
  const line = `ntml: inference of model "${model.name}" runs as eager ops, not one graph: ${g}`;
  if (!loggedFallbacks.has(line)) {
    loggedFallbacks.add(line);
    console.warn(line);
  }
  return inferenceGraph(model, true);
}

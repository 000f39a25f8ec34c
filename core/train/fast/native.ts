/**
 * Runs TensorFlow ops that tfjs has no kernel for (FusedBatchNormV3 in training mode and its
 * gradient, ReluGrad) straight through tfjs-node's native binding. The outputs are ordinary
 * engine tensors (tidy and dispose track them) but the gradient tape does not see them, so
 * every caller wraps them in tf.customGrad.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../tf';

interface Binding {
  TF_ATTR_TYPE: number;
  TF_ATTR_FLOAT: number;
  TF_ATTR_BOOL: number;
  TF_ATTR_STRING: number;
  TF_ATTR_INT: number;
  TF_FLOAT: number;
  TF_INT32: number;
}

export interface OpAttr {
  name: string;
  type: number;
  value: number | boolean | string;
}

interface NodeBackend {
  binding: Binding;
  executeMultipleOutputs(name: string, attrs: OpAttr[], inputs: TF.Tensor[], numOutputs: number): TF.Tensor[];
}

function nodeBackend(): NodeBackend | undefined {
  if (tf.getBackend() !== 'tensorflow') return undefined;
  const b = tf.backend() as unknown as Partial<NodeBackend>;
  return b.binding && typeof b.executeMultipleOutputs === 'function' ? (b as NodeBackend) : undefined;
}

function binding(): Binding {
  const b = nodeBackend();
  if (!b) throw new Error(`native TensorFlow ops need the "tensorflow" backend, the active one is "${tf.getBackend()}"`);
  return b.binding;
}

/** Op attributes in the binding's encoding. */
export const attr = {
  float32Type: (name: string): OpAttr => ({ name, type: binding().TF_ATTR_TYPE, value: binding().TF_FLOAT }),
  int32Type: (name: string): OpAttr => ({ name, type: binding().TF_ATTR_TYPE, value: binding().TF_INT32 }),
  float: (name: string, value: number): OpAttr => ({ name, type: binding().TF_ATTR_FLOAT, value }),
  bool: (name: string, value: boolean): OpAttr => ({ name, type: binding().TF_ATTR_BOOL, value }),
  string: (name: string, value: string): OpAttr => ({ name, type: binding().TF_ATTR_STRING, value }),
  int: (name: string, value: number): OpAttr => ({ name, type: binding().TF_ATTR_INT, value }),
};

/** Executes one TensorFlow op eagerly; the inputs must be tensors on the native backend of the types `attrs` names. */
export function runNative(op: string, attrs: OpAttr[], inputs: TF.Tensor[], numOutputs: number): TF.Tensor[] {
  const b = nodeBackend();
  if (!b) throw new Error(`native op ${op} needs the "tensorflow" backend, the active one is "${tf.getBackend()}"`);
  return b.executeMultipleOutputs(op, attrs, inputs, numOutputs);
}

export function nativeBackendActive(): boolean {
  return nodeBackend() !== undefined;
}

/**
 * Elementwise float32 ops without the tfjs engine's per-op bookkeeping (kernel lookup, tape,
 * scopes): for the many tiny per-variable updates of a step, where that bookkeeping costs more
 * than the arithmetic. Not differentiable: use them outside gradient recording only.
 */
export const nativeMath = {
  mul: (a: TF.Tensor, b: TF.Tensor): TF.Tensor => runNative('Mul', [attr.float32Type('T')], [a, b], 1)[0],
  sub: (a: TF.Tensor, b: TF.Tensor): TF.Tensor => runNative('Sub', [attr.float32Type('T')], [a, b], 1)[0],
  addN: (inputs: TF.Tensor[]): TF.Tensor =>
    runNative('AddN', [attr.float32Type('T'), attr.int('N', inputs.length)], inputs, 1)[0],
  /** 1-D float32 tensors end to end, in one call */
  concat1d: (inputs: TF.Tensor[]): TF.Tensor =>
    tf.tidy(() =>
      runNative(
        'ConcatV2',
        [attr.float32Type('T'), attr.int('N', inputs.length), attr.int32Type('Tidx')],
        [...inputs, tf.scalar(0, 'int32')],
        1,
      )[0],
    ),
  /** a 1-D float32 tensor cut into consecutive pieces of the given lengths, in one call */
  split1d: (x: TF.Tensor, sizes: number[]): TF.Tensor[] =>
    tf.tidy(() =>
      runNative(
        'SplitV',
        [attr.float32Type('T'), attr.int32Type('Tlen'), attr.int('num_split', sizes.length)],
        [x, tf.tensor1d(sizes, 'int32'), tf.scalar(0, 'int32')],
        sizes.length,
      ),
    ),
};

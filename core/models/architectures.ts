/**
 * The built-in classifier architectures. Every layer is named explicitly so that a model's
 * topology (and so its exported model.json) is the same in every process, and every weight
 * is initialised from the project's seeded RNG, not from tfjs's global one.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { Rng } from '../rng';

import type { ArchitectureName } from './names';

export { ArchitectureName, architectureNames } from './names';

export interface InputShape {
  height: number;
  width: number;
  channels: number;
}

type SymbolicTensor = TF.SymbolicTensor;

function convBnRelu(x: SymbolicTensor, filters: number, name: string, strides = 1): SymbolicTensor {
  let y = tf.layers
    .conv2d({ name: `${name}_conv`, filters, kernelSize: 3, strides, padding: 'same', useBias: false })
    .apply(x) as SymbolicTensor;
  // PyTorch's BN defaults (momentum 0.1, eps 1e-5) so the reference numbers stay comparable.
  y = tf.layers.batchNormalization({ name: `${name}_bn`, momentum: 0.9, epsilon: 1e-5 }).apply(y) as SymbolicTensor;
  return tf.layers.reLU({ name: `${name}_relu` }).apply(y) as SymbolicTensor;
}

function head(x: SymbolicTensor, numClasses: number): SymbolicTensor {
  const pooled = tf.layers.globalAveragePooling2d({ name: 'gap' }).apply(x) as SymbolicTensor;
  return tf.layers.dense({ name: 'logits', units: numClasses }).apply(pooled) as SymbolicTensor;
}

/**
 * ci tier: three conv blocks and a flatten + dense head (~50k parameters). A global-average
 * head at this size learns a 3x3 corner trigger only erratically; flattening keeps position.
 */
function tinyCnn(input: SymbolicTensor, numClasses: number): SymbolicTensor {
  let x = convBnRelu(input, 16, 'b1');
  x = tf.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }).apply(x) as SymbolicTensor;
  x = convBnRelu(x, 32, 'b2');
  x = tf.layers.maxPooling2d({ name: 'pool2', poolSize: 2 }).apply(x) as SymbolicTensor;
  x = convBnRelu(x, 32, 'b3');
  x = tf.layers.maxPooling2d({ name: 'pool3', poolSize: 2 }).apply(x) as SymbolicTensor;
  const flat = tf.layers.flatten({ name: 'flatten' }).apply(x) as SymbolicTensor;
  return tf.layers.dense({ name: 'logits', units: numClasses }).apply(flat) as SymbolicTensor;
}

/** cpu tier (protocol.md): 32-32-pool-64-64-pool-128-128-GAP-linear. */
function smallCnn(input: SymbolicTensor, numClasses: number): SymbolicTensor {
  let x = convBnRelu(input, 32, 'b1a');
  x = convBnRelu(x, 32, 'b1b');
  x = tf.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }).apply(x) as SymbolicTensor;
  x = convBnRelu(x, 64, 'b2a');
  x = convBnRelu(x, 64, 'b2b');
  x = tf.layers.maxPooling2d({ name: 'pool2', poolSize: 2 }).apply(x) as SymbolicTensor;
  x = convBnRelu(x, 128, 'b3a');
  x = convBnRelu(x, 128, 'b3b');
  return head(x, numClasses);
}

/** He et al. 2016 CIFAR ResNet-20: 3 stages x 3 basic blocks, 16/32/64 filters, 1x1 projection shortcuts. */
function resnet20(input: SymbolicTensor, numClasses: number): SymbolicTensor {
  let x = convBnRelu(input, 16, 'stem');
  const stages = [16, 32, 64];
  stages.forEach((filters, s) => {
    for (let b = 0; b < 3; b++) {
      const name = `s${s + 1}b${b + 1}`;
      const strides = s > 0 && b === 0 ? 2 : 1;
      let y = convBnRelu(x, filters, `${name}a`, strides);
      y = tf.layers
        .conv2d({ name: `${name}b_conv`, filters, kernelSize: 3, padding: 'same', useBias: false })
        .apply(y) as SymbolicTensor;
      y = tf.layers.batchNormalization({ name: `${name}b_bn`, momentum: 0.9, epsilon: 1e-5 }).apply(y) as SymbolicTensor;
      let shortcut = x;
      if (strides !== 1 || (x.shape[3] as number) !== filters) {
        shortcut = tf.layers
          .conv2d({ name: `${name}_proj_conv`, filters, kernelSize: 1, strides, useBias: false })
          .apply(x) as SymbolicTensor;
        shortcut = tf.layers
          .batchNormalization({ name: `${name}_proj_bn`, momentum: 0.9, epsilon: 1e-5 })
          .apply(shortcut) as SymbolicTensor;
      }
      const sum = tf.layers.add({ name: `${name}_add` }).apply([y, shortcut]) as SymbolicTensor;
      x = tf.layers.reLU({ name: `${name}_relu` }).apply(sum) as SymbolicTensor;
    }
  });
  return head(x, numClasses);
}

function bn(name: string): TF.layers.Layer {
  return tf.layers.batchNormalization({ name, momentum: 0.9, epsilon: 1e-5 });
}

function conv(name: string, filters: number, kernelSize: number, strides = 1): TF.layers.Layer {
  return tf.layers.conv2d({ name, filters, kernelSize, strides, padding: 'same', useBias: false });
}

/**
 * paper tier (protocol.md, the BackdoorBench protocol): PreAct-ResNet18 for 32x32 inputs (He et
 * al. 2016, "Identity mappings"): a 3x3 64-filter stem, four stages of two pre-activation basic
 * blocks (64/128/256/512 filters, stride 2 from the second stage on), global average pooling and
 * a linear layer; 11,171,146 trainable parameters for 10 classes. A block computes
 * a = relu(bn1(x)); y = conv2(relu(bn2(conv1(a)))) + shortcut, where the shortcut is x, or a 1x1
 * strided projection of a when the shape changes.
 */
function preactResnet18(input: SymbolicTensor, numClasses: number): SymbolicTensor {
  let x = conv('stem_conv', 64, 3).apply(input) as SymbolicTensor;
  [64, 128, 256, 512].forEach((filters, s) => {
    for (let b = 0; b < 2; b++) {
      const name = `s${s + 1}b${b + 1}`;
      const strides = s > 0 && b === 0 ? 2 : 1;
      let a = bn(`${name}_bn1`).apply(x) as SymbolicTensor;
      a = tf.layers.reLU({ name: `${name}_relu1` }).apply(a) as SymbolicTensor;
      const project = strides !== 1 || (x.shape[3] as number) !== filters;
      const shortcut = project ? (conv(`${name}_proj_conv`, filters, 1, strides).apply(a) as SymbolicTensor) : x;
      let y = conv(`${name}_conv1`, filters, 3, strides).apply(a) as SymbolicTensor;
      y = bn(`${name}_bn2`).apply(y) as SymbolicTensor;
      y = tf.layers.reLU({ name: `${name}_relu2` }).apply(y) as SymbolicTensor;
      y = conv(`${name}_conv2`, filters, 3).apply(y) as SymbolicTensor;
      x = tf.layers.add({ name: `${name}_add` }).apply([y, shortcut]) as SymbolicTensor;
    }
  });
  return head(x, numClasses);
}

const builders: Record<ArchitectureName, (input: SymbolicTensor, numClasses: number) => SymbolicTensor> = {
  tinyCnn,
  smallCnn,
  resnet20,
  preactResnet18,
};

/** Builds an architecture with logits output and seeded weights. */
export function buildModel(arch: ArchitectureName, input: InputShape, numClasses: number, seed: number): TF.LayersModel {
  const inputs = tf.input({ name: 'image', shape: [input.height, input.width, input.channels] });
  const outputs = builders[arch](inputs, numClasses);
  const model = tf.model({ name: arch, inputs, outputs });
  initialiseWeights(model, seed);
  return model;
}

/**
 * Seeded initialisation: He-normal conv kernels (fan-in, ReLU nets), PyTorch-style uniform
 * dense layers, BN gamma 1 / beta 0 / moving mean 0 / moving variance 1, biases 0.
 */
export function initialiseWeights(model: TF.LayersModel, seed: number): void {
  const rng = Rng.derive('init', seed);
  const layerClass = new Map(model.layers.map((l) => [l.name, l.getClassName()]));
  const values = model.weights.map((w) => {
    const shape = w.shape as number[];
    const size = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(size);
    const [layerName, role] = w.originalName.split('/');
    const className = layerClass.get(layerName);
    if (role === 'kernel' && className === 'Conv2D') {
      const std = Math.sqrt(2 / (shape[0] * shape[1] * shape[2]));
      for (let i = 0; i < size; i++) data[i] = rng.normal() * std;
    } else if (role === 'kernel') {
      const bound = 1 / Math.sqrt(shape[0]);
      for (let i = 0; i < size; i++) data[i] = rng.uniform(-bound, bound);
    } else if (role === 'gamma' || role === 'moving_variance') {
      data.fill(1);
    } else if (role === 'bias' && className === 'Dense') {
      const fanIn = model.getLayer(layerName).weights[0].shape[0] as number;
      const bound = 1 / Math.sqrt(fanIn);
      for (let i = 0; i < size; i++) data[i] = rng.uniform(-bound, bound);
    }
    return tf.tensor(data, shape);
  });
  model.setWeights(values);
  tf.dispose(values);
}

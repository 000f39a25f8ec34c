/**
 * I-BAU's second-order products against PyTorch autograd (issue 19: the authors differentiate
 * twice with autograd; issue 22: the finite-difference step). A check, not a test: never in CI.
 *   node dist/bench/reference/ibauSecondOrder.js [--arch smallCnn|tinyCnn|resnet20] [--batch 16] [--seed 1]
 *       [--python PATH] [--out DIR]
 * Builds the model with seeded random weights (BN's gamma, beta and moving statistics randomised
 * too, so inference-mode BN is not the identity), a batch of random 8-bit images in [0, 1], a delta
 * that pushes some pixels past the range (the clip acts) and a random direction v; computes our
 * H v and grad_theta <grad_delta L_in, v> both ways (frozen pattern, finite differences at t),
 * and the finite-difference mixed product's change from t to t/4 and 4t; writes the weights,
 * data and products to <out>/case.json and runs bench/reference/ibau_second_order_autograd.py,
 * which rebuilds the same network in PyTorch (float64) and compares with autograd's double
 * backward. --python: a python with torch (default: the bench venv, bench/reference/pytorchEnv.ts).
 */
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../../core/tf';
import { Rng } from '../../core/rng';
import { createClassifier } from '../../core/models/layersFormat';
import type { ArchitectureName } from '../../core/models/names';
import { trainableVariables } from '../../core/train/sgd';
import { applyModel, applyModelForInputGradients, applyModelWithPattern } from '../../core/train/fast';
import {
  finiteDifferenceHvp,
  finiteDifferenceMixedProduct,
  finiteDifferenceStep,
  frozenPatternHvp,
  frozenPatternMixedProduct,
  type UnlearningBatch,
} from '../../core/defenses/ibau';
import { UsageError } from '../../cli/errors';
import { parseBenchArgs, type OptionSpecs } from '../args';
import { pytorchPython, referenceDir } from './pytorchEnv';

const USAGE = 'usage: ibauSecondOrder.js [--arch smallCnn|tinyCnn|resnet20] [--batch N] [--seed N] [--python PATH] [--out DIR]';
const OPTIONS: OptionSpecs = { arch: { type: 'string' }, batch: { type: 'string' }, seed: { type: 'string' }, python: { type: 'string' }, out: { type: 'string' } };
const CLASSES = 10;
const PENALTY = 0.001;

/** The model's layers in graph order, each with its inputs' layer names, as the PyTorch side rebuilds them (TF layouts: NHWC, HWIO kernels). */
function exportLayers(model: TF.LayersModel): unknown[] {
  const values = (t: TF.Tensor) => Array.from(t.dataSync());
  return model.layers.map((layer) => {
    const cls = layer.getClassName();
    const w = layer.getWeights();
    const cfg = layer.getConfig() as Record<string, unknown>;
    const inputs = (layer as unknown as { inboundNodes: Array<{ inboundLayers: TF.layers.Layer[] }> }).inboundNodes[0].inboundLayers.map((l) => l.name);
    const base = { name: layer.name, inputs };
    switch (cls) {
      case 'InputLayer':
        return { ...base, type: 'input' };
      case 'Conv2D':
        return { ...base, type: 'conv', kernel: values(w[0]), shape: w[0].shape, strides: cfg.strides, padding: cfg.padding, bias: w[1] ? values(w[1]) : null };
      case 'BatchNormalization':
        return { ...base, type: 'bn', gamma: values(w[0]), beta: values(w[1]), mean: values(w[2]), variance: values(w[3]), epsilon: cfg.epsilon };
      case 'ReLU':
        return { ...base, type: 'relu' };
      case 'MaxPooling2D':
        return { ...base, type: 'maxpool', pool: cfg.poolSize };
      case 'Flatten':
        return { ...base, type: 'flatten' };
      case 'GlobalAveragePooling2D':
        return { ...base, type: 'gap' };
      case 'Add':
        return { ...base, type: 'add' };
      case 'Dense':
        return { ...base, type: 'dense', kernel: values(w[0]), shape: w[0].shape, bias: values(w[1]) };
      default:
        throw new Error(`layer ${layer.name} (${cls}) is not exported`);
    }
  });
}

/** BN layers with random gamma, beta and moving statistics (fresh ones are the identity in inference mode). */
function randomiseBatchNorm(model: TF.LayersModel, rng: Rng): void {
  for (const layer of model.layers.filter((l) => l.getClassName() === 'BatchNormalization')) {
    const c = layer.getWeights()[0].shape[0];
    const vec = (f: () => number) => tf.tensor1d(Float32Array.from({ length: c }, f));
    const w = [vec(() => rng.uniform(0.5, 1.5)), vec(() => 0.2 * rng.normal()), vec(() => 0.2 * rng.normal()), vec(() => rng.uniform(0.5, 1.5))];
    layer.setWeights(w);
    tf.dispose(w);
  }
}

const relChange = (a: TF.Tensor[], b: TF.Tensor[]) =>
  tf.tidy(() => {
    const num = a.reduce((s, t, i) => s + tf.sum(tf.square(tf.sub(t, b[i]))).dataSync()[0], 0);
    const den = b.reduce((s, t) => s + tf.sum(tf.square(t)).dataSync()[0], 0);
    return Math.sqrt(num / den);
  });

async function main() {
  const a = parseBenchArgs(process.argv.slice(2), OPTIONS, USAGE);
  const arch = a.choice('arch', ['smallCnn', 'tinyCnn', 'resnet20'] as const, 'smallCnn') as ArchitectureName;
  const n = a.integer('batch', 16, 1);
  const seed = a.integer('seed', 1);
  const out = a.path('out', path.join(os.tmpdir(), 'ntml-ibau-second-order'));
  const python = a.text('python') ?? pytorchPython();

  const c = createClassifier(arch, { height: 32, width: 32, channels: 3 }, CLASSES, seed);
  const rng = new Rng(seed + 100);
  randomiseBatchNorm(c.model, rng);
  const size = 32 * 32 * 3;
  const xs = Float32Array.from({ length: n * size }, () => Math.floor(rng.next() * 256) / 255);
  const ys = Int32Array.from({ length: n }, () => rng.int(CLASSES));
  const deltaValues = Float32Array.from({ length: size }, () => rng.uniform(-0.5, 0.5));
  const vValues = Float32Array.from({ length: size }, () => rng.normal());
  const p: UnlearningBatch = {
    forward: (x) => applyModel(c.model, x, false) as TF.Tensor2D,
    inputGradientForward: (x) => applyModelForInputGradients(c.model, x) as TF.Tensor2D,
    patternForward: (x, pattern, inputGradientsOnly) => applyModelWithPattern(c.model, x, pattern, inputGradientsOnly) as TF.Tensor2D,
    vars: trainableVariables(c.model),
    x: tf.tensor4d(xs, [n, 32, 32, 3]),
    y: tf.tensor1d(ys, 'int32'),
    range: '0-1',
    penalty: PENALTY,
  };
  const delta = tf.tensor4d(deltaValues, [1, 32, 32, 3]);
  const v = tf.tensor4d(vValues, [1, 32, 32, 3]);
  const t = finiteDifferenceStep(size);

  const frozenHv = frozenPatternHvp(p, delta, v);
  const frozenMixed = frozenPatternMixedProduct(p, delta, v);
  const [fdHvQuarter, fdHv, fdHvFour] = [t / 4, t, 4 * t].map((s) => finiteDifferenceHvp(p, delta, v, s));
  const [fdMixedQuarter, fdMixed, fdMixedFour] = [t / 4, t, 4 * t].map((s) => finiteDifferenceMixedProduct(p, delta, v, s));
  const [frozenHvSmall, frozenHvLarge] = [1e-2, 1e2].map((s) => frozenPatternHvp(p, delta, v, s));
  const [frozenMixedSmall, frozenMixedLarge] = [1e-2, 1e2].map((s) => frozenPatternMixedProduct(p, delta, v, s));
  const sensitivity = {
    step: t,
    finiteDifferenceHv: { quarter: relChange([fdHvQuarter], [fdHv]), fourTimes: relChange([fdHvFour], [fdHv]) },
    finiteDifferenceMixed: { quarter: relChange(fdMixedQuarter, fdMixed), fourTimes: relChange(fdMixedFour, fdMixed) },
    frozenHvStep1e2vs1e_2: relChange([frozenHvLarge], [frozenHvSmall]),
    frozenMixedStep1e2vs1e_2: relChange(frozenMixedLarge, frozenMixedSmall),
    finiteDifferenceVsFrozenHv: relChange([fdHv], [frozenHv]),
    finiteDifferenceVsFrozenMixed: relChange(fdMixed, frozenMixed),
  };
  console.log(`${arch}, batch ${n}, seed ${seed}; finite-difference step t = ${t.toExponential(2)}`);
  console.log(JSON.stringify(sensitivity, null, 2));

  const values = (ts: TF.Tensor[]) => ts.map((x) => Array.from(x.dataSync()));
  const kase = {
    arch,
    layers: exportLayers(c.model),
    varNames: c.model.trainableWeights.map((w) => w.originalName),
    x: Array.from(xs),
    xShape: [n, 32, 32, 3],
    y: Array.from(ys),
    delta: Array.from(deltaValues),
    v: Array.from(vValues),
    penalty: PENALTY,
    low: 0,
    high: 1,
    deltaUnit: 0.25,
    ours: {
      frozenPattern: { hv: values([frozenHv])[0], mixed: values(frozenMixed) },
      finiteDifference: { hv: values([fdHv])[0], mixed: values(fdMixed) },
    },
  };
  await fs.mkdir(out, { recursive: true });
  const casePath = path.join(out, 'case.json');
  await fs.writeFile(casePath, JSON.stringify(kase));
  tf.dispose([frozenHv, ...frozenMixed, fdHvQuarter, fdHv, fdHvFour, ...fdMixedQuarter, ...fdMixed, ...fdMixedFour, frozenHvSmall, frozenHvLarge, ...frozenMixedSmall, ...frozenMixedLarge, p.x, p.y, delta, v]);
  c.model.dispose();
  const r = spawnSync(python, [path.join(referenceDir, 'ibau_second_order_autograd.py'), casePath], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof UsageError ? err.message : err);
    process.exit(err instanceof UsageError ? 2 : 1);
  });
}

/**
 * IAD training (TensorFlow side of inputAware.ts): the attacker's own training run, whose
 * classifier is the backdoored model.
 *
 * Generators: conv encoder-decoders, encoder widths c1-c2-c3 (default 32-64-128):
 * conv(c1)-pool-conv(c2)-pool-conv(c3)-up-conv(c2)-up-conv(c1)-conv(out), each conv 3x3 + BN +
 * ReLU except the last (linear, with bias); the output z becomes tanh(z)/2 + 0.5 in [0,1].
 * G has 3 (or 1) output channels, M one; m(x) = tanh(20 M(x) - 10)/2 + 0.5. Their forward
 * passes take the fast path (fused BN and ReLU kernels, core/train/fast): measured 1.7x faster
 * per mask-generator training step at 32x32, batch 128, one thread.
 *
 * 1. Mask phase (`maskEpochs`, Adam lr `maskLearningRate`, betas (0.5, 0.9)) on every training
 *    image, batches of recipe.batchSize, no augmentation:
 *    loss = maskNormWeight * mean(relu(m - maskDensity)) + diversityWeight * div(x, x', m, m'),
 *    x' = the batch rotated by a random offset, div = mean_k ||x_k - x'_k|| / (||m_k - m'_k|| + 1e-7)
 *    with ||.|| the per-image RMS distance, images in per-channel standard-deviation units of the
 *    training set (as the authors' standardised inputs; see channelStd).
 * 2. Joint phase (recipe: epochs (`config.epochs` when the attacker sets them: attackerRecipe.ts),
 *    batch, SGD momentum/wd/schedule and augmentation for the classifier; G by Adam lr `generatorLearningRate`, betas (0.5, 0.9); M frozen, BN in
 *    inference): in each (augmented) batch of bs images, the first round(rate * bs) eligible
 *    positions become x + (G(x) - x) m(x) with the target label, the next round(crossRatio *
 *    that) eligible positions become x + (G(x') - x) m(x') for another image x' of the batch
 *    (random offset) and keep their labels; eligible = outside the clean budget.
 *    loss = CE(classifier(batch)) + diversityWeight * div over the generator's inputs/patterns.
 * 3. The generators are registered under their sha256 and the poisoned training set is
 *    materialised from them (inputAware.poisonTrainingSet) at the same rate.
 *
 * Every draw is seeded from `seed`; on one backend the result is a function of its inputs.
 * After every epoch of either phase `hooks.onCheckpoint` gets a TrainingCheckpoint (epochs
 * counted across both phases: mask epochs first): the generators, the classifier, every
 * optimiser's buffers and RNG position. Passed back as `resume`, training continues from it
 * and ends with the same weights as an uninterrupted run.
 */
import { createHash } from 'node:crypto';
import type * as TF from '@tensorflow/tfjs-node';
import type { io } from '@tensorflow/tfjs-core';
import { tf } from '../tf';
import { Rng, deriveSeed, type RngState } from '../rng';
import { imageBytes, subsetDataset, type ImageDataset } from '../data/dataset';
import { initialiseWeights } from '../models/architectures';
import { saveArtifacts } from '../models/layersFormat';
import { encodePixels, type Classifier, type InputRange } from '../models/classifier';
import { trainableVariables } from '../train/sgd';
import { recipeOptimizer, recipeSchedule } from '../train/recipeRun';
import { attackerRecipe } from './attackerRecipe';
import { Adam } from '../train/adam';
import { assertResumable, CheckpointFormatError, modelWeights, setModelWeights, type TrainingCheckpoint } from '../train/checkpoint';
import { crossEntropy } from '../train/losses';
import { applyModel } from '../train/fast';
import { runEpochs, TrainingCancelledError, type EpochRecord } from '../train/epochLoop';
import type { TrainRecipe } from '../train/recipe';
import { assembleBatch, noAugmentation } from '../train/augment';
import { attackTargetLabel, checkEligible, toPixel, validateBaseConfig, type PoisonResult, type TriggerParameters } from './base';
import {
  inputAware,
  inputAwareBatchCounts,
  registerInputAwareGenerators,
  type InputAwareGeneratorHandle,
} from './inputAware';
import type { InputAwareConfig } from './configs';

export interface InputAwareGenerators {
  /** M: image -> one-channel map; m(x) = tanh(20 (tanh(M(x))/2 + 0.5) - 10)/2 + 0.5 */
  mask: TF.LayersModel;
  /** G: image -> pattern, tanh(G(x))/2 + 0.5 */
  pattern: TF.LayersModel;
}

export interface InputAwareHooks {
  onBatch?: (phase: 'mask' | 'joint', epoch: number, batch: number, batches: number) => Promise<void> | void;
  onEpochEnd?: (phase: 'mask' | 'joint', record: EpochRecord) => Promise<void> | void;
  /** after each epoch of either phase; `record.epoch` counts mask epochs first, then joint epochs */
  onCheckpoint?: (record: EpochRecord, checkpoint: () => TrainingCheckpoint) => Promise<void> | void;
  signal?: AbortSignal;
}

export interface TrainInputAwareOptions {
  train: ImageDataset;
  /** training indices outside the clean budget: only these are ever poisoned or crossed */
  eligibleIndices: Int32Array;
  config: InputAwareConfig;
  /** a fresh classifier; it is trained in place and returned */
  classifier: Classifier;
  /** the tier's recipe; `config.epochs`, when set, replaces its epochs for the joint phase (attackerRecipe.ts) */
  recipe: TrainRecipe;
  seed: number;
  hooks?: InputAwareHooks;
  /** a checkpoint this same run handed to hooks.onCheckpoint: continue from it */
  resume?: TrainingCheckpoint;
}

export interface InputAwareResult {
  /** the backdoored model (the same object as the input classifier) */
  classifier: Classifier;
  generators: InputAwareGenerators;
  /** the training set materialised from the trained generators at the same rate */
  poisoned: PoisonResult;
  /** what the record stores: generatorsId names the registered generators */
  triggerParameters: TriggerParameters;
  /** the generators' encoding (store it as an artifact; loadInputAwareGenerators reads it back) */
  encodedGenerators: Uint8Array;
  maskHistory: EpochRecord[];
  history: EpochRecord[];
  /** mean m(x) over the training images after the mask phase */
  meanMask: number;
}

const EPS = 1e-7;
const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

// --- generators ---------------------------------------------------------------------------

function convBnRelu(x: TF.SymbolicTensor, filters: number, name: string): TF.SymbolicTensor {
  let y = tf.layers.conv2d({ name: `${name}_conv`, filters, kernelSize: 3, padding: 'same', useBias: false }).apply(x) as TF.SymbolicTensor;
  y = tf.layers.batchNormalization({ name: `${name}_bn`, momentum: 0.9, epsilon: 1e-5 }).apply(y) as TF.SymbolicTensor;
  return tf.layers.reLU({ name: `${name}_relu` }).apply(y) as TF.SymbolicTensor;
}

/** One generator (see the file comment); seeded weights. Height and width must be multiples of 4. */
export function buildInputAwareGenerator(
  shape: { height: number; width: number; channels: number },
  outChannels: number,
  widths: readonly [number, number, number],
  seed: number,
  name: string,
): TF.LayersModel {
  const [c1, c2, c3] = widths;
  const input = tf.input({ name: 'image', shape: [shape.height, shape.width, shape.channels] });
  let x = convBnRelu(input, c1, 'enc1');
  x = tf.layers.maxPooling2d({ name: 'pool1', poolSize: 2 }).apply(x) as TF.SymbolicTensor;
  x = convBnRelu(x, c2, 'enc2');
  x = tf.layers.maxPooling2d({ name: 'pool2', poolSize: 2 }).apply(x) as TF.SymbolicTensor;
  x = convBnRelu(x, c3, 'enc3');
  x = tf.layers.upSampling2d({ name: 'up2', size: [2, 2] }).apply(x) as TF.SymbolicTensor;
  x = convBnRelu(x, c2, 'dec2');
  x = tf.layers.upSampling2d({ name: 'up1', size: [2, 2] }).apply(x) as TF.SymbolicTensor;
  x = convBnRelu(x, c1, 'dec1');
  const out = tf.layers.conv2d({ name: 'out_conv', filters: outChannels, kernelSize: 3, padding: 'same' }).apply(x) as TF.SymbolicTensor;
  const model = tf.model({ name, inputs: input, outputs: out });
  initialiseWeights(model, seed);
  return model;
}

function createGenerators(shape: { height: number; width: number; channels: number }, config: InputAwareConfig, seed: number): InputAwareGenerators {
  return {
    mask: buildInputAwareGenerator(shape, 1, config.generatorChannels, deriveSeed(seed, 'inputaware', 'mask-init'), 'iad_mask'),
    pattern: buildInputAwareGenerator(shape, shape.channels, config.generatorChannels, deriveSeed(seed, 'inputaware', 'pattern-init'), 'iad_pattern'),
  };
}

function unit(z: TF.Tensor): TF.Tensor {
  return tf.add(tf.mul(tf.tanh(z), 0.5), 0.5);
}

/** G(x) in [0,1], x in [0,1] */
export function patternOf(g: InputAwareGenerators, x01: TF.Tensor4D, training: boolean): TF.Tensor4D {
  return unit(applyModel(g.pattern, x01, training)) as TF.Tensor4D;
}

/** m(x) = tanh(20 M(x) - 10)/2 + 0.5, shape [n, H, W, 1] */
export function maskOf(g: InputAwareGenerators, x01: TF.Tensor4D, training: boolean): TF.Tensor4D {
  const mx = unit(applyModel(g.mask, x01, training));
  return unit(tf.sub(tf.mul(mx, 20), 10)) as TF.Tensor4D;
}

/** per-image RMS distance; the 1e-12 keeps sqrt's gradient finite when two rows are the same image */
function rmsDistance(a: TF.Tensor, b: TF.Tensor): TF.Tensor1D {
  return tf.sqrt(tf.add(tf.mean(tf.square(tf.sub(a, b)), [1, 2, 3]), 1e-12)) as TF.Tensor1D;
}

/** mean_k ||x_k - x'_k|| / (||p_k - p'_k|| + eps): large when different inputs get the same output */
function diversityLoss(x: TF.Tensor, x2: TF.Tensor, p: TF.Tensor, p2: TF.Tensor): TF.Scalar {
  return tf.mean(tf.div(rmsDistance(x, x2), tf.add(rmsDistance(p, p2), EPS))) as TF.Scalar;
}

/**
 * Per-channel standard deviation of the training images in [0,1] units. The authors' CIFAR-10
 * inputs are standardised per channel (std 0.247 / 0.243 / 0.261), so the mask phase's image
 * distance ||x - x'|| is in standard-deviation units while the mask distance is in mask units;
 * measuring the images in [0,1] units instead weakens the diversity term about 4x against the
 * density hinge, and the mask generator collapsed to all-zero masks (measured: CIFAR-10, seed 1,
 * by mask epoch 11 every test image's mask was 0).
 */
export function channelStd(ds: ImageDataset): number[] {
  const c = ds.channels;
  const sum = new Float64Array(c);
  const sq = new Float64Array(c);
  for (let i = 0; i < ds.images.length; i++) {
    const v = ds.images[i] / 255;
    sum[i % c] += v;
    sq[i % c] += v * v;
  }
  const count = ds.images.length / c;
  return Array.from(sum, (s, k) => Math.sqrt(Math.max(sq[k] / count - (s / count) ** 2, 1e-12)));
}

/** [scale, offset] of the model's input encoding, from [0,1] images: enc = x01 * s + o */
function rangeAffine(range: InputRange): [number, number] {
  return range === '0-1' ? [1, 0] : range === '0-255' ? [255, 0] : [2, -1];
}

function rotation(n: number, offset: number): Int32Array {
  return Int32Array.from({ length: n }, (_, k) => (k + offset) % n);
}

function images01(ds: ImageDataset, start: number, end: number): TF.Tensor4D {
  const per = imageBytes(ds);
  const pixels = ds.images.subarray(start * per, end * per);
  return tf.tensor4d(encodePixels(pixels, '0-1', new Float32Array(pixels.length)), [end - start, ds.height, ds.width, ds.channels]);
}

/** x + (G(s) - x) m(s) in uint8 (float, clipped, rounded once), s = sources' image or x itself. */
export function applyGenerators(g: InputAwareGenerators, images: ImageDataset, sources?: ImageDataset, batchSize = 128): ImageDataset {
  const n = images.labels.length;
  if (sources && sources.labels.length !== n) throw new RangeError(`applyGenerators: ${sources.labels.length} pattern sources for ${n} images`);
  const per = imageBytes(images);
  const out = new Uint8Array(images.images.length);
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const y = tf.tidy(() => {
      const x = images01(images, start, end);
      const s = sources ? images01(sources, start, end) : x;
      const mixed = tf.add(x, tf.mul(tf.sub(patternOf(g, s, false), x), maskOf(g, s, false)));
      return tf.mul(mixed, 255);
    });
    const v = y.dataSync();
    y.dispose();
    for (let i = 0; i < v.length; i++) out[start * per + i] = toPixel(v[i]);
  }
  return { ...images, images: out, labels: new Int32Array(images.labels) };
}

/** Mean of m(x) over the images. */
export function meanMaskValue(g: InputAwareGenerators, images: ImageDataset, batchSize = 128): number {
  const n = images.labels.length;
  let sum = 0;
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const s = tf.tidy(() => tf.sum(maskOf(g, images01(images, start, end), false)));
    sum += s.dataSync()[0];
    s.dispose();
  }
  return sum / (n * images.height * images.width);
}

/**
 * Mask-phase health on a probe set: the mean of m(x), and the share of images whose mask is
 * (almost) empty. A collapsing mask generator (every mask 0: no trigger at all) shows here
 * epochs before the attack silently fails.
 */
export function maskHealth(g: InputAwareGenerators, images: ImageDataset, batchSize = 128): { meanMask: number; emptyMasks: number } {
  const n = images.labels.length;
  let sum = 0;
  let empty = 0;
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const perImage = tf.tidy(() => tf.mean(maskOf(g, images01(images, start, end), false), [1, 2, 3]));
    for (const v of perImage.dataSync()) {
      sum += v;
      if (v < 1e-4) empty++;
    }
    perImage.dispose();
  }
  return { meanMask: Number((sum / n).toFixed(5)), emptyMasks: Number((empty / n).toFixed(4)) };
}

// --- encoding and the registry ------------------------------------------------------------

const MAGIC = 'NTMLIAD1';

/** One blob: magic, header length, JSON header (both topologies and weight specs), mask weights, pattern weights. */
export async function encodeInputAwareGenerators(g: InputAwareGenerators): Promise<Uint8Array> {
  const mask = await saveArtifacts(g.mask);
  const pattern = await saveArtifacts(g.pattern);
  const header = Buffer.from(
    JSON.stringify({
      mask: { modelTopology: mask.modelTopology, weightSpecs: mask.weightSpecs, bytes: mask.weightData.byteLength },
      pattern: { modelTopology: pattern.modelTopology, weightSpecs: pattern.weightSpecs, bytes: pattern.weightData.byteLength },
    }),
  );
  return new Uint8Array(
    Buffer.concat([Buffer.from(MAGIC, 'latin1'), Buffer.from(new Uint32Array([header.length]).buffer), header, Buffer.from(mask.weightData), Buffer.from(pattern.weightData)]),
  );
}

export async function decodeInputAwareGenerators(bytes: Uint8Array, source = 'inputaware generators'): Promise<InputAwareGenerators> {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw new Error(`${source}: not an encoded IAD generator pair (bad magic)`);
  const headerLen = buf.readUInt32LE(8);
  let header: Record<'mask' | 'pattern', { modelTopology: object; weightSpecs: io.WeightsManifestEntry[]; bytes: number }>;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + headerLen));
  } catch {
    throw new Error(`${source}: header is not valid JSON`);
  }
  let offset = 12 + headerLen;
  if (offset + header.mask.bytes + header.pattern.bytes !== buf.length) {
    throw new Error(`${source}: ${buf.length - offset} weight bytes, the header declares ${header.mask.bytes + header.pattern.bytes}`);
  }
  const load = async (part: 'mask' | 'pattern') => {
    const h = header[part];
    const w = buf.subarray(offset, offset + h.bytes);
    offset += h.bytes;
    const weightData = w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength) as ArrayBuffer;
    return tf.loadLayersModel(tf.io.fromMemory({ modelTopology: h.modelTopology, weightSpecs: h.weightSpecs, weightData }));
  };
  const mask = await load('mask');
  const pattern = await load('pattern');
  return { mask, pattern };
}

export function generatorsId(encoded: Uint8Array): string {
  return createHash('sha256').update(encoded).digest('hex');
}

/** Registers trained generators under `id`; the registry keeps the models (dispose them with disposeInputAwareGenerators). */
export function registerGenerators(g: InputAwareGenerators, id: string): InputAwareGeneratorHandle {
  const inShape = g.pattern.inputs[0].shape;
  const handle: InputAwareGeneratorHandle = {
    id,
    shape: [inShape[1] as number, inShape[2] as number, inShape[3] as number],
    trigger: (images, sources) => applyGenerators(g, images, sources),
    meanMask: (images) => meanMaskValue(g, images),
  };
  registerInputAwareGenerators(handle);
  return handle;
}

/** Decodes stored generators and registers them: what a process does before applying the IAD trigger. */
export async function loadInputAwareGenerators(bytes: Uint8Array, source?: string): Promise<{ generators: InputAwareGenerators; handle: InputAwareGeneratorHandle }> {
  const generators = await decodeInputAwareGenerators(bytes, source);
  return { generators, handle: registerGenerators(generators, generatorsId(bytes)) };
}

export function disposeInputAwareGenerators(g: InputAwareGenerators): void {
  g.mask.dispose();
  g.pattern.dispose();
}

// --- training -------------------------------------------------------------------------------

/** Adam with the betas of the IAD code (0.5, 0.9) and TensorFlow's epsilon. */
function generatorAdam(vars: TF.Variable[]): Adam {
  return new Adam(vars, { beta1: 0.5, beta2: 0.9, epsilon: 1e-7 });
}

interface MaskPhaseState {
  phase: 'mask';
  history: EpochRecord[];
}

interface JointPhaseState {
  phase: 'joint';
  maskHistory: EpochRecord[];
  meanMask: number;
  pairRng: RngState;
}

async function trainMask(
  g: InputAwareGenerators,
  train: ImageDataset,
  config: InputAwareConfig,
  batchSize: number,
  seed: number,
  hooks: InputAwareHooks | undefined,
  resume: TrainingCheckpoint | undefined,
): Promise<EpochRecord[]> {
  const vars = trainableVariables(g.mask);
  const optimiser = generatorAdam(vars);
  let rng = new Rng(deriveSeed(seed, 'inputaware', 'mask-train'));
  const n = train.labels.length;
  const bs = Math.min(batchSize, n);
  const batches = Math.ceil(n / bs) - (n % bs === 1 && n > 1 ? 1 : 0);
  const per = imageBytes(train);
  let history: EpochRecord[] = [];
  let first = 0;
  // a fixed probe of the first training images: inference only, so training is unchanged
  const probe = subsetDataset(train, Int32Array.from({ length: Math.min(n, 512) }, (_, i) => i));
  // image distances in per-channel standard-deviation units (see channelStd)
  const invStd = tf.tensor1d(channelStd(train).map((v) => 1 / v));
  try {
    if (resume) {
      setModelWeights(g.mask, resume.arrays.mask, 'IAD checkpoint (mask generator)');
      optimiser.restore(resume.arrays['optimizer:mask']);
      rng = new Rng(resume.rngState);
      history = (resume.extra as unknown as MaskPhaseState).history.slice();
      first = resume.epoch;
    }
    for (let epoch = first; epoch < config.maskEpochs; epoch++) {
      const t0 = Date.now();
      const order = rng.permutation(n);
      let lossSum = 0;
      for (let b = 0; b < batches; b++) {
        if (hooks?.signal?.aborted) throw new TrainingCancelledError();
        const idx = order.subarray(b * bs, b === batches - 1 ? n : (b + 1) * bs);
        const x = tf.tensor4d(assembleBatch(train, idx, noAugmentation, rng, '0-1', new Float32Array(idx.length * per)), [idx.length, train.height, train.width, train.channels]);
        const perm = tf.tensor1d(rotation(idx.length, 1 + rng.int(Math.max(1, idx.length - 1))), 'int32');
        const { value, grads } = tf.variableGrads(() => {
          const m = maskOf(g, x, true);
          const norm = tf.mean(tf.relu(tf.sub(m, config.maskDensity)));
          const xs = tf.mul(x, invStd);
          const div = diversityLoss(xs, tf.gather(xs, perm), m, tf.gather(m, perm));
          return tf.add(tf.mul(norm, config.maskNormWeight), tf.mul(div, config.diversityWeight)) as TF.Scalar;
        }, vars);
        optimiser.step(vars.map((v) => grads[v.name]), config.maskLearningRate);
        lossSum += value.dataSync()[0] * idx.length;
        tf.dispose(grads);
        tf.dispose([value, x, perm]);
        await hooks?.onBatch?.('mask', epoch, b, batches);
        await yieldToEventLoop();
      }
      const record: EpochRecord = {
        epoch: epoch + 1,
        loss: lossSum / n,
        learningRate: config.maskLearningRate,
        seconds: (Date.now() - t0) / 1000,
        images: n,
        diagnostics: maskHealth(g, probe),
      };
      history.push(record);
      await hooks?.onEpochEnd?.('mask', record);
      await hooks?.onCheckpoint?.(record, () => ({
        epoch: epoch + 1,
        rngState: rng.state(),
        arrays: { mask: modelWeights(g.mask), 'optimizer:mask': optimiser.state() },
        extra: { phase: 'mask', history: history.slice() } satisfies MaskPhaseState,
      }));
    }
  } finally {
    optimiser.dispose();
    invStd.dispose();
  }
  return history;
}

/** Which phase a resume state belongs to, checked against this run's epochs. */
function resumePhase(c: TrainingCheckpoint | undefined, config: InputAwareConfig, jointEpochs: number): 'mask' | 'joint' | undefined {
  if (!c) return undefined;
  const phase = (c.extra as { phase?: unknown }).phase;
  const total = config.maskEpochs + jointEpochs;
  assertResumable(c, total, 'IAD training');
  if (phase === 'mask' && Number.isInteger(c.epoch) && c.epoch >= 1 && c.epoch <= config.maskEpochs && c.arrays.mask && c.arrays['optimizer:mask']) return 'mask';
  if (phase === 'joint' && Number.isInteger(c.epoch) && c.epoch > config.maskEpochs && c.epoch <= total && c.arrays.mask && c.arrays.pattern) return 'joint';
  throw new CheckpointFormatError(`cannot continue IAD training from this checkpoint: phase ${String(phase)} at epoch ${c.epoch} does not fit ${config.maskEpochs} mask + ${jointEpochs} joint epochs`);
}

/** IAD: mask generator, then pattern generator + classifier jointly; see the file comment. */
export async function trainInputAwareBackdoor(o: TrainInputAwareOptions): Promise<InputAwareResult> {
  const { train, config, classifier: c, seed } = o;
  const recipe = attackerRecipe(config, o.recipe);
  validateBaseConfig(config, train);
  inputAware.validateAgainst!(config, train);
  checkEligible(o.eligibleIndices, train.labels.length);
  const [h, w, ch] = c.meta.inputShape;
  if (h !== train.height || w !== train.width || ch !== train.channels || c.meta.numClasses !== train.numClasses) {
    throw new Error(`classifier takes ${h}x${w}x${ch} images and ${c.meta.numClasses} classes, ${train.name} is ${train.height}x${train.width}x${train.channels} with ${train.numClasses}`);
  }
  const shape = { height: train.height, width: train.width, channels: train.channels };
  const g = createGenerators(shape, config, seed);
  const phase = resumePhase(o.resume, config, recipe.epochs);
  let done = false;
  try {
    let maskHistory: EpochRecord[];
    let meanMask: number;
    if (phase === 'joint') {
      const saved = o.resume!.extra as unknown as JointPhaseState;
      setModelWeights(g.mask, o.resume!.arrays.mask, 'IAD checkpoint (mask generator)');
      maskHistory = saved.maskHistory;
      meanMask = saved.meanMask;
    } else {
      maskHistory = await trainMask(g, train, config, recipe.batchSize, seed, o.hooks, phase === 'mask' ? o.resume : undefined);
      meanMask = meanMaskValue(g, train);
    }

    const eligible = new Uint8Array(train.labels.length);
    o.eligibleIndices.forEach((i) => (eligible[i] = 1));
    const targetOf = Int32Array.from(train.labels, (y) => attackTargetLabel(config, y, train.numClasses));
    const [scale, offset] = rangeAffine(c.meta.inputRange);
    const cVars = trainableVariables(c.model);
    const gVars = trainableVariables(g.pattern);
    const sgd = recipeOptimizer(cVars, recipe);
    const adam = generatorAdam(gVars);
    let pairRng = new Rng(deriveSeed(seed, 'inputaware', 'cross-partners'));
    const training = recipe.batchNorm === 'train';
    let loop;
    try {
      loop = await runEpochs({
        data: train,
        ...recipeSchedule(recipe),
        augment: recipe.augment,
        seed: deriveSeed(seed, 'inputaware', 'joint'),
        models: { model: c },
        optimizers: { model: sgd, pattern: adam },
        carry: {
          save: () => ({
            arrays: { mask: modelWeights(g.mask), pattern: modelWeights(g.pattern) },
            extra: { phase: 'joint', maskHistory, meanMask, pairRng: pairRng.state() } satisfies JointPhaseState,
          }),
          restore: (r) => {
            setModelWeights(g.pattern, r.arrays.pattern, 'IAD checkpoint (pattern generator)');
            pairRng = new Rng((r.extra as unknown as JointPhaseState).pairRng);
          },
        },
        resume: phase === 'joint' ? { ...o.resume!, epoch: o.resume!.epoch - config.maskEpochs } : undefined,
        hooks: {
          signal: o.hooks?.signal,
          onBatch: (epoch, b, batches) => o.hooks?.onBatch?.('joint', epoch, b, batches),
          onEpochEnd: async (record, snapshot) => {
            await o.hooks?.onEpochEnd?.('joint', record);
            const epoch = config.maskEpochs + record.epoch;
            await o.hooks?.onCheckpoint?.({ ...record, epoch }, () => ({ ...snapshot(), epoch }));
          },
        },
        step: (x, idx, lr) => {
          const bs = idx.length;
          const positions: number[] = [];
          for (let k = 0; k < bs; k++) if (eligible[idx[k]]) positions.push(k);
          const { backdoor: nb, cross: nc } = inputAwareBatchCounts(config, bs, positions.length);
          const bdPos = positions.slice(0, nb);
          const crossPos = positions.slice(nb, nb + nc);
          const shift = 1 + pairRng.int(Math.max(1, bs - 1));
          const partners = crossPos.map((k) => (k + shift) % bs);
          const labels = new Int32Array(bs);
          for (let k = 0; k < bs; k++) labels[k] = train.labels[idx[k]];
          for (const k of bdPos) labels[k] = targetOf[idx[k]];
          const order = Int32Array.from({ length: bs }, (_, k) => k);
          [...bdPos, ...crossPos].forEach((k, j) => (order[k] = bs + j));
          const vars = nb + nc > 0 ? [...cVars, ...gVars] : cVars;
          const { value, grads } = tf.variableGrads(
            () =>
              tf.tidy(() => {
                const y = tf.tensor1d(labels, 'int32');
                if (nb + nc === 0) return crossEntropy(applyModel(c.model, x, training) as TF.Tensor2D, y);
                const x01 = scale === 1 && offset === 0 ? x : tf.div(tf.sub(x, offset), scale);
                const src = tf.gather(x01, tf.tensor1d([...bdPos, ...partners], 'int32'));
                const dst = tf.gather(x01, tf.tensor1d([...bdPos, ...crossPos], 'int32'));
                const p = patternOf(g, src as TF.Tensor4D, true);
                const m = maskOf(g, src as TF.Tensor4D, false);
                const mixed = tf.add(dst, tf.mul(tf.sub(p, dst), m));
                const batch01 = tf.gather(tf.concat([x01, mixed]), tf.tensor1d(order, 'int32'));
                const input = scale === 1 && offset === 0 ? batch01 : tf.add(tf.mul(batch01, scale), offset);
                const ce = crossEntropy(applyModel(c.model, input, training) as TF.Tensor2D, y);
                if (src.shape[0] < 2 || config.diversityWeight === 0) return ce;
                const rot = tf.tensor1d(rotation(src.shape[0], 1), 'int32');
                const div = diversityLoss(src, tf.gather(src, rot), p, tf.gather(p, rot));
                return tf.add(ce, tf.mul(div, config.diversityWeight)) as TF.Scalar;
              }),
            vars,
          );
          sgd.step(
            cVars.map((v) => grads[v.name]),
            lr,
          );
          if (vars.length > cVars.length) adam.step(gVars.map((v) => grads[v.name]), config.generatorLearningRate);
          tf.dispose(grads);
          return value;
        },
      });
    } finally {
      sgd.dispose();
      adam.dispose();
    }

    const encodedGenerators = await encodeInputAwareGenerators(g);
    const id = generatorsId(encodedGenerators);
    registerGenerators(g, id);
    const triggerParameters: TriggerParameters = {
      generatorsId: id,
      generatorChannels: [...config.generatorChannels],
      generatorBytes: encodedGenerators.length,
      meanMask: Number(meanMask.toFixed(5)),
      maskDensity: config.maskDensity,
      where: 'generators registered in the training process under generatorsId; elsewhere loadInputAwareGenerators(<stored bytes>)',
    };
    const poisoned = inputAware.poisonTrainingSet(train, o.eligibleIndices, config, seed, triggerParameters);
    done = true;
    return { classifier: c, generators: g, poisoned, triggerParameters, encodedGenerators, maskHistory, history: loop.history, meanMask };
  } finally {
    if (!done) disposeInputAwareGenerators(g);
  }
}

/**
 * Learns the Narcissus trigger (TensorFlow side of narcissus.ts), in three steps:
 *
 * 1. Surrogate: a fresh classifier (`surrogateArch`) trained on the POOD set plus the
 *    attacker's target-class samples as one extra class (index K_pood). The attacker of the
 *    threat model knows only target-class images; the POOD classes give the surrogate
 *    general features and the extra class is "the target" the trigger must point to.
 * 2. Poison warm-up: `warmupRounds` passes of SGD (momentum 0.9, constant lr 0.1) on the
 *    target-class samples alone, labelled K_pood.
 * 3. Trigger generation: delta (HWC, [0,1] units, starts at 0) minimises the surrogate's mean
 *    cross-entropy towards K_pood on clip(x + delta, 0, 1) over the target-class samples,
 *    with BN in inference mode and x augmented (`augment`: crop/flip) so delta does not fit
 *    individual pixels of individual images. `triggerRounds` passes in mini-batches of
 *    `batchSize`; each step moves delta by `triggerLearningRate` against d loss / d delta,
 *    then clamps it to [-r, r], r = `linfRadius` (projected gradient descent on the L-inf
 *    ball). `triggerStep: sign` (default) steps by lr * sign(gradient), as L-inf PGD does;
 *    `adam` takes Adam steps (betas 0.9/0.999) instead, as the original's RAdam did. Why sign
 *    by default: after the warm-up the surrogate calls every target-class image the target
 *    with logit margins of tens, so the gradient is ~1e-20 and Adam's epsilon (1e-7) turns its
 *    steps into ~1e-15: delta never leaves 0. A sign step keeps the direction at any scale.
 *
 * Every draw (weights, shuffles, augmentation) is seeded from `seed`: the trigger is a
 * deterministic function of (training set, eligible indices, config, seed) on one backend.
 *
 * At the paper's budget step 3 is hours on a CPU, so it checkpoints (`control.checkpoint`):
 * once steps 1-2 are done and every `checkpointEvery` rounds, a TrainingCheckpoint holding the
 * surrogate's weights, delta, the optimiser state and the RNG position. Continuing from one
 * (`control.resume`) skips what it covers and ends with the same delta bit for bit.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { Rng, deriveSeed } from '../rng';
import { DatasetError, imageBytes, subsetDataset, type ImageDataset } from '../data/dataset';
import { generateSyntheticDataset } from '../data/synthetic';
import { DEFAULT_FASHION_MNIST_DIR, loadFashionMnist, toRgb32 } from '../data/idx';
import { stratifiedSubset } from '../data/splits';
import { createClassifier } from '../models/layersFormat';
import { disposeClassifier, type Classifier } from '../models/classifier';
import { trainClassifier } from '../train/trainClassifier';
import { TrainRecipe } from '../train/recipe';
import { assembleBatch } from '../train/augment';
import { crossEntropy } from '../train/losses';
import { applyModel } from '../train/fast';
import { Adam } from '../train/adam';
import { CheckpointFormatError, modelWeights, setModelWeights, type TrainingCheckpoint } from '../train/checkpoint';
import { TrainingCancelledError } from '../train/epochLoop';
import { AttackConfigError } from './base';
import type { PrepareControl } from './attack';
import { narcissusPoodSchema, type NarcissusConfig, type NarcissusPood } from './configs';
import { encodePerturbation, type NarcissusTriggerParameters } from './narcissusPerturbation';

export interface NarcissusTriggerOptions {
  train: ImageDataset;
  eligibleIndices: Int32Array;
  config: NarcissusConfig;
  seed: number;
  /** cancellation, checkpoints, resume and progress (heartbeats) */
  control?: PrepareControl;
}

const CHECKPOINT_STAGE = 'narcissus-trigger';

/** What a checkpoint's `extra` holds besides the arrays. */
interface TriggerCheckpointExtra {
  stage: typeof CHECKPOINT_STAGE;
  triggerLoss: number[];
  attackerSamples: number;
  triggerStep: NarcissusConfig['triggerStep'];
}

/** ~40 checkpoints over the optimisation: at the benchmark budget one per ~25 rounds (minutes on a CPU). */
export function defaultCheckpointEvery(rounds: number): number {
  return Math.max(1, Math.round(rounds / 40));
}

export interface ResolvedPood {
  dataset: ImageDataset;
  format: 'synthetic' | 'fashionMnist';
  description: string;
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * `auto` -> Fashion-MNIST padded to 32x32x3 for real 32x32x3 data (CIFAR-10, GTSRB: attacks.md's
 * default), otherwise the synthetic set: for the generated data (name "synthetic:...") and for
 * any other shape (for Fashion-MNIST itself, Fashion-MNIST would not be out of distribution).
 */
export function resolvePoodChoice(pood: NarcissusPood, train: ImageDataset): Exclude<NarcissusPood, { format: 'auto' }> {
  if (pood.format !== 'auto') return pood;
  const rgb32 = train.height === 32 && train.width === 32 && train.channels === 3;
  const format = rgb32 && !train.name.startsWith('synthetic') ? 'fashionMnist' : 'synthetic';
  return narcissusPoodSchema.parse({ format }) as Exclude<NarcissusPood, { format: 'auto' }>;
}

/** Loads (or generates) the POOD set in the training images' shape. */
export async function loadNarcissusPood(pood: NarcissusPood, train: ImageDataset, seed: number): Promise<ResolvedPood> {
  const choice = resolvePoodChoice(pood, train);
  const shape = `${train.height}x${train.width}x${train.channels}`;
  if (choice.format === 'synthetic') {
    if (train.channels !== 1 && train.channels !== 3) throw new AttackConfigError('pood', `synthetic POOD needs 1 or 3 channels, the images have ${train.channels}`);
    const dataset = generateSyntheticDataset({
      size: choice.size,
      numClasses: choice.numClasses,
      height: train.height,
      width: train.width,
      channels: train.channels as 1 | 3,
      seed: deriveSeed('narcissus-pood', choice.seed),
      name: `narcissus-pood:synthetic:seed=${choice.seed}`,
    });
    return { dataset, format: 'synthetic', description: `synthetic (${choice.size} images, ${choice.numClasses} classes, seed ${choice.seed}, ${shape})` };
  }
  const dir = choice.path ?? DEFAULT_FASHION_MNIST_DIR;
  const fits32 = train.height === 32 && train.width === 32 && train.channels === 3;
  const fits28 = train.height === 28 && train.width === 28 && train.channels === 1;
  if (!fits32 && !fits28) {
    throw new AttackConfigError('pood', `a Fashion-MNIST POOD set fits 32x32x3 or 28x28x1 images; ${train.name} has ${shape} (use pood: { format: synthetic })`);
  }
  let raw: ImageDataset;
  try {
    raw = await loadFashionMnist(dir, 'train');
  } catch (err) {
    if (err instanceof DatasetError) throw new AttackConfigError('pood.path', `cannot load the Fashion-MNIST POOD set: ${err.message}`);
    throw err;
  }
  const size = Math.min(choice.size, raw.labels.length);
  const subset = size < raw.labels.length ? stratifiedSubset(raw, size, deriveSeed(seed, 'narcissus', 'pood-subset')) : raw;
  const dataset = fits32 ? toRgb32(subset) : subset;
  return { dataset, format: 'fashionMnist', description: `Fashion-MNIST (${dir}, ${size}-image class-stratified subset${fits32 ? ', zero-padded to 32x32x3' : ''})` };
}

/** The largest float32 <= v (v > 0): clamping to it keeps |delta| <= v exactly, not just to float32 precision. */
function float32AtMost(v: number): number {
  const f = new Float32Array([v]);
  if (f[0] > v) new Uint32Array(f.buffer)[0] -= 1;
  return f[0];
}

/** POOD images with their own labels, then the attacker's samples labelled `extraClass`. */
function surrogateSet(pood: ImageDataset, attacker: ImageDataset, extraClass: number): ImageDataset {
  const images = new Uint8Array(pood.images.length + attacker.images.length);
  images.set(pood.images, 0);
  images.set(attacker.images, pood.images.length);
  const labels = new Int32Array(pood.labels.length + attacker.labels.length);
  labels.set(pood.labels, 0);
  labels.fill(extraClass, pood.labels.length);
  return { ...attacker, name: `${pood.name}+target-class`, numClasses: extraClass + 1, images, labels, classNames: undefined };
}

/** Mean CE towards `label` of the surrogate on clip(x + delta) for every attacker sample, no augmentation. */
function meanTriggerLoss(surrogate: Classifier, attacker: ImageDataset, delta: TF.Tensor3D, label: number, batchSize: number): number {
  const n = attacker.labels.length;
  const per = imageBytes(attacker);
  let sum = 0;
  for (let start = 0; start < n; start += batchSize) {
    const end = Math.min(n, start + batchSize);
    const x = new Float32Array((end - start) * per);
    for (let i = 0; i < x.length; i++) x[i] = attacker.images[start * per + i] / 255;
    const loss = tf.tidy(() => {
      const xt = tf.tensor4d(x, [end - start, attacker.height, attacker.width, attacker.channels]);
      const logits = applyModel(surrogate.model, tf.clipByValue(tf.add(xt, delta), 0, 1), false) as TF.Tensor2D;
      return crossEntropy(logits, tf.fill([end - start], label, 'int32') as TF.Tensor1D);
    });
    sum += loss.dataSync()[0] * (end - start);
    loss.dispose();
  }
  return sum / n;
}

export async function generateNarcissusTrigger(o: NarcissusTriggerOptions): Promise<NarcissusTriggerParameters> {
  const { train, config, seed, control = {} } = o;
  const attackerIndices = Array.from(o.eligibleIndices).filter((i) => train.labels[i] === config.target);
  if (attackerIndices.length === 0) {
    throw new AttackConfigError('target', `no eligible training image of target class ${config.target}: Narcissus needs target-class samples to learn its trigger`);
  }
  const attacker = subsetDataset(train, attackerIndices, `${train.name}:target-class`);
  const pood = await loadNarcissusPood(config.pood, train, seed);
  const extraClass = pood.dataset.numClasses;
  const shape = { height: train.height, width: train.width, channels: train.channels };
  const n = attacker.labels.length;
  const resume = control.resume ? checkResumable(control.resume, config, n, shape) : undefined;
  const signal = control.signal;
  const every = control.checkpointEvery ?? defaultCheckpointEvery(config.triggerRounds);
  if (!Number.isInteger(every) || every < 1) throw new Error(`checkpointEvery must be a positive integer of rounds, got ${every}`);

  const surrogate = createClassifier(config.surrogateArch, shape, extraClass + 1, deriveSeed(seed, 'narcissus', 'surrogate-init'));
  const radius = float32AtMost(config.linfRadius);
  const delta = tf.tidy(() => tf.variable(tf.zeros([train.height, train.width, train.channels]), true)) as TF.Variable<TF.Rank.R3>;
  const adam = config.triggerStep === 'adam' ? new Adam([delta], { epsilon: 1e-7 }) : undefined;
  let rng = new Rng(deriveSeed(seed, 'narcissus', 'trigger'));
  let triggerLoss: number[] = [];
  let firstRound = 0;
  const snapshot = (roundsDone: number): TrainingCheckpoint => ({
    epoch: roundsDone,
    rngState: rng.state(),
    arrays: {
      surrogate: modelWeights(surrogate.model),
      delta: [{ shape: delta.shape.slice(), values: Float32Array.from(delta.dataSync() as Float32Array) }],
      ...(adam ? { optimizer: adam.state() } : {}),
    },
    extra: { stage: CHECKPOINT_STAGE, triggerLoss: triggerLoss.slice(), attackerSamples: n, triggerStep: config.triggerStep } satisfies TriggerCheckpointExtra,
  });
  try {
    if (resume) {
      setModelWeights(surrogate.model, resume.arrays.surrogate, 'narcissus checkpoint (surrogate)');
      const saved = tf.tensor3d(resume.arrays.delta[0].values, delta.shape as [number, number, number]);
      delta.assign(saved);
      saved.dispose();
      adam?.restore(resume.arrays.optimizer);
      rng = new Rng(resume.rngState);
      triggerLoss = (resume.extra as unknown as TriggerCheckpointExtra).triggerLoss.slice();
      firstRound = resume.epoch;
    } else {
      // 1. surrogate on POOD + the target class as one more class
      await trainClassifier({
        classifier: surrogate,
        data: surrogateSet(pood.dataset, attacker, extraClass),
        recipe: TrainRecipe.parse({ epochs: config.surrogateEpochs, batchSize: config.batchSize, learningRate: config.surrogateLearningRate, augment: config.augment }),
        seed: deriveSeed(seed, 'narcissus', 'surrogate-train'),
        hooks: { signal },
      });
      // 2. poison warm-up on the target class alone
      if (config.warmupRounds > 0) {
        await trainClassifier({
          classifier: surrogate,
          data: attacker,
          targets: { kind: 'hard', labels: new Int32Array(attacker.labels.length).fill(extraClass) },
          recipe: TrainRecipe.parse({
            epochs: config.warmupRounds,
            batchSize: config.batchSize,
            learningRate: config.warmupLearningRate,
            schedule: 'constant',
            augment: config.augment,
          }),
          seed: deriveSeed(seed, 'narcissus', 'warmup'),
          hooks: { signal },
        });
      }
      await control.checkpoint?.(snapshot(0));
    }

    // 3. projected steps on delta
    const bs = Math.min(config.batchSize, n);
    const per = imageBytes(attacker);
    const buffer = new Float32Array(bs * per);
    const reportEvery = Math.max(1, Math.round(config.triggerRounds / 10));
    for (let round = firstRound; round < config.triggerRounds; round++) {
      const order = rng.permutation(n);
      for (let start = 0; start < n; start += bs) {
        if (signal?.aborted) throw new TrainingCancelledError();
        const idx = order.subarray(start, Math.min(n, start + bs));
        const out = idx.length === bs ? buffer : new Float32Array(idx.length * per);
        const x = tf.tensor4d(assembleBatch(attacker, idx, config.augment, rng, '0-1', out), [idx.length, train.height, train.width, train.channels]);
        const labels = tf.fill([idx.length], extraClass, 'int32') as TF.Tensor1D;
        const loss = () => crossEntropy(applyModel(surrogate.model, tf.clipByValue(tf.add(x, delta), 0, 1), false) as TF.Tensor2D, labels);
        tf.tidy(() => {
          const { grads } = tf.variableGrads(loss, [delta]);
          const g = grads[delta.name];
          if (adam) adam.step([g], config.triggerLearningRate);
          else delta.assign(tf.sub(delta, tf.mul(tf.sign(g), config.triggerLearningRate)) as TF.Tensor3D);
          delta.assign(tf.clipByValue(delta, -radius, radius) as TF.Tensor3D);
        });
        tf.dispose([x, labels]);
        await control.onProgress?.(round, config.triggerRounds);
        await yieldToEventLoop();
      }
      if ((round + 1) % reportEvery === 0 || round + 1 === config.triggerRounds) {
        triggerLoss.push(Number(meanTriggerLoss(surrogate, attacker, delta, extraClass, config.batchSize).toPrecision(4)));
      }
      if ((round + 1) % every === 0 && round + 1 < config.triggerRounds) await control.checkpoint?.(snapshot(round + 1));
    }
    const values = Float32Array.from(delta.dataSync() as Float32Array);
    return {
      perturbation: encodePerturbation(values),
      shape: [train.height, train.width, train.channels],
      linfRadius: config.linfRadius,
      testMultiplier: config.testMultiplier,
      pood: pood.description,
      poodFormat: pood.format,
      attackerSamples: n,
      surrogate: { arch: config.surrogateArch, epochs: config.surrogateEpochs, classes: extraClass + 1 },
      triggerLoss,
      optimiser:
        config.triggerStep === 'adam'
          ? `Adam(lr ${config.triggerLearningRate}, betas 0.9/0.999) on the input gradient, projected onto L-inf ${config.linfRadius}`
          : `signed gradient steps of ${config.triggerLearningRate}, projected onto L-inf ${config.linfRadius}`,
    };
  } finally {
    adam?.dispose();
    delta.dispose();
    disposeClassifier(surrogate);
  }
}

/** The resume state fits this computation (a state of another attack or budget is an error, not a silent restart). */
function checkResumable(c: TrainingCheckpoint, config: NarcissusConfig, attackerSamples: number, shape: { height: number; width: number; channels: number }): TrainingCheckpoint {
  const extra = c.extra as Partial<TriggerCheckpointExtra>;
  const problem =
    extra.stage !== CHECKPOINT_STAGE
      ? `it is not a Narcissus trigger checkpoint (stage ${String(extra.stage)})`
      : extra.attackerSamples !== attackerSamples
        ? `it was taken over ${extra.attackerSamples} target-class samples, this run has ${attackerSamples}`
        : extra.triggerStep !== config.triggerStep
          ? `it used triggerStep ${extra.triggerStep}, this run ${config.triggerStep}`
          : !Number.isInteger(c.epoch) || c.epoch < 0 || c.epoch > config.triggerRounds
            ? `round ${c.epoch} is outside 0..${config.triggerRounds}`
            : !c.arrays.surrogate || c.arrays.delta?.length !== 1 || c.arrays.delta[0].shape.join('x') !== `${shape.height}x${shape.width}x${shape.channels}`
              ? `it lacks the surrogate or a ${shape.height}x${shape.width}x${shape.channels} delta`
              : config.triggerStep === 'adam' && !c.arrays.optimizer
                ? 'it lacks the Adam state'
                : undefined;
  if (problem) throw new CheckpointFormatError(`cannot continue the Narcissus trigger from this checkpoint: ${problem}`);
  return c;
}

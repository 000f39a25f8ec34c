/**
 * The epoch loop shared by every training stage: seeded shuffling, host-side augmentation,
 * per-step learning-rate schedule, per-epoch checkpoints, exact resume, and checkpoint
 * selection on a held-out score. What a step does (one model or two, which loss) is the
 * caller's `step` function.
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { Rng } from '../rng';
import type { ImageDataset } from '../data/dataset';
import { imageBytes } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { assembleBatch, type AugmentOptions } from './augment';
import { learningRateAt, type NamedArray } from './sgd';
import type { LearningRateSchedule } from './recipe';
import { assertResumable, CheckpointFormatError, modelWeights, setModelWeights, type TrainingCheckpoint } from './checkpoint';

export interface EpochRecord {
  epoch: number;
  loss: number;
  learningRate: number;
  seconds: number;
  images: number;
  /** held-out score used for selection, if any */
  score?: number;
  /** stage-specific diagnostics (e.g. ACC/ASR of the student per ML epoch) */
  diagnostics?: Record<string, number>;
}

export interface EpochHooks {
  /** After each epoch, with a function that builds the checkpoint (only call it if you store it). */
  onEpochEnd?: (record: EpochRecord, checkpoint: () => TrainingCheckpoint) => Promise<void> | void;
  /** Between batches; training yields to the event loop here so heartbeats get through. */
  onBatch?: (epoch: number, batch: number, batches: number) => Promise<void> | void;
  signal?: AbortSignal;
}

export interface EpochLoopOptions {
  data: ImageDataset;
  /** which records of `data` to train on (default: all) */
  indices?: Int32Array;
  /** length of the learning-rate schedule (and of training, unless `stopAfterEpoch` ends it sooner) */
  epochs: number;
  /**
   * Train only the first epochs of the schedule: a refit replays the run a selection chose,
   * epoch for epoch at the same learning rates, on more data.
   */
  stopAfterEpoch?: number;
  batchSize: number;
  peakLearningRate: number;
  schedule: LearningRateSchedule;
  /** oneCycle: the share of the steps spent warming up (sgd.ts learningRateAt) */
  warmupFraction?: number;
  augment: AugmentOptions;
  seed: number;
  /** models whose weights go into checkpoints, by name */
  models: Record<string, Classifier>;
  optimizers: Record<string, CheckpointableOptimizer>;
  /**
   * State the caller's `step` keeps outside `models` and `optimizers` (another RNG stream, a
   * generator trained alongside): saved into every checkpoint, handed back on resume.
   */
  carry?: {
    save(): { arrays: Record<string, NamedArray[]>; extra: Record<string, unknown> };
    restore(checkpoint: TrainingCheckpoint): void;
  };
  /** one optimisation step on an encoded batch; returns the loss to log (kept on device) */
  step: (x: TF.Tensor4D, batchIndices: Int32Array, learningRate: number) => TF.Scalar;
  /** selection: higher is better; the best epoch's weights of `model` are returned */
  select?: { model: string; score: () => Promise<number>; /** also consider the weights before training (epoch 0) */ includeInitial?: boolean };
  /** per-epoch diagnostics recorded in the history (never used for selection) */
  diagnostics?: (epoch: number) => Promise<Record<string, number>>;
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
}

/** SgdMomentum, Adam: buffers that a checkpoint captures and restores exactly. */
export interface CheckpointableOptimizer {
  state(): NamedArray[];
  restore(state: NamedArray[]): void;
}

export interface EpochLoopResult {
  history: EpochRecord[];
  /** epoch (1-based) whose weights were kept by selection, or the last epoch */
  selectedEpoch: number;
  selectedScore?: number;
  resumedFromEpoch: number;
}

export class TrainingCancelledError extends Error {
  constructor() {
    super('training cancelled');
    this.name = 'TrainingCancelledError';
  }
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Process-wide running totals of where the loop's wall time goes, for benchmarks
 * (bench/throughput): batch assembly (gather + augmentation + encoding + tensor creation)
 * and the step itself. Read a difference before/after a run; nothing in training depends on it.
 */
export const loopTimings = { batchAssemblySeconds: 0, stepSeconds: 0, batches: 0 };

export async function runEpochs(o: EpochLoopOptions): Promise<EpochLoopResult> {
  const all = o.indices ?? Int32Array.from({ length: o.data.labels.length }, (_, i) => i);
  const n = all.length;
  if (n === 0) throw new Error('cannot train on an empty data set');
  const bs = Math.min(o.batchSize, n);
  // a trailing batch of one sample breaks batch statistics; fold it into the previous epoch order
  const batchesPerEpoch = Math.ceil(n / bs) - (n % bs === 1 && n > 1 ? 1 : 0);
  const totalSteps = batchesPerEpoch * o.epochs;
  const range = Object.values(o.models)[0].meta.inputRange;

  let rng = new Rng(o.seed);
  let history: EpochRecord[] = [];
  let best: { epoch: number; score: number; weights: ReturnType<typeof modelWeights> } | undefined;
  let startEpoch = 0;
  const lastEpoch = Math.min(o.epochs, o.stopAfterEpoch ?? o.epochs);
  if (o.resume) {
    const r = o.resume;
    assertResumable(r, lastEpoch, 'resume');
    for (const [name, c] of Object.entries(o.models)) {
      if (!r.arrays[name]) {
        const from = r.weightsFrom?.[name];
        throw new CheckpointFormatError(`the checkpoint holds no weights of model "${name}"${from ? ` (they are the stored model ${from.sha256}, which was not loaded into it)` : ''}`);
      }
      setModelWeights(c.model, r.arrays[name], `checkpoint model "${name}"`);
    }
    // a finished run's final checkpoint has no optimiser state, and trains no epoch (assertResumable)
    if (!r.finished) for (const [name, opt] of Object.entries(o.optimizers)) opt.restore(r.arrays[`optimizer:${name}`]);
    o.carry?.restore(r);
    rng = new Rng(r.rngState);
    history = (r.extra.history as EpochRecord[]) ?? [];
    const b = r.extra.best as { epoch: number; score: number } | undefined;
    if (b && o.select) best = { ...b, weights: r.arrays[`best:${o.select.model}`] };
    startEpoch = r.epoch;
  }

  if (o.select?.includeInitial && !o.resume) {
    best = { epoch: 0, score: await o.select.score(), weights: modelWeights(o.models[o.select.model].model) };
  }

  const per = imageBytes(o.data);
  const buffer = new Float32Array(bs * per);
  for (let epoch = startEpoch; epoch < lastEpoch; epoch++) {
    const t0 = Date.now();
    const order = rng.shuffle(Int32Array.from(all));
    let lossSum: TF.Scalar = tf.scalar(0);
    let lr = 0;
    for (let b = 0; b < batchesPerEpoch; b++) {
      if (o.hooks?.signal?.aborted) {
        lossSum.dispose();
        throw new TrainingCancelledError();
      }
      const start = b * bs;
      const end = b === batchesPerEpoch - 1 ? n : start + bs;
      const idx = order.subarray(start, end);
      const tData = performance.now();
      const x = tf.tensor4d(
        assembleBatch(o.data, idx, o.augment, rng, range, end - start === bs ? buffer : new Float32Array((end - start) * per)),
        [end - start, o.data.height, o.data.width, o.data.channels],
      );
      lr = learningRateAt({ schedule: o.schedule, warmupFraction: o.warmupFraction }, o.peakLearningRate, epoch * batchesPerEpoch + b, totalSteps);
      const tStep = performance.now();
      const loss = o.step(x, idx, lr);
      x.dispose();
      loopTimings.batchAssemblySeconds += (tStep - tData) / 1000;
      loopTimings.stepSeconds += (performance.now() - tStep) / 1000;
      loopTimings.batches++;
      const sum = lossSum;
      const next = tf.tidy(() => tf.add(sum, tf.mul(loss, end - start)) as TF.Scalar);
      lossSum.dispose();
      loss.dispose();
      lossSum = next;
      await o.hooks?.onBatch?.(epoch, b, batchesPerEpoch);
      await yieldToEventLoop();
    }
    const loss = (await lossSum.data())[0] / n;
    lossSum.dispose();
    const record: EpochRecord = { epoch: epoch + 1, loss, learningRate: lr, seconds: (Date.now() - t0) / 1000, images: n };
    if (o.select) {
      record.score = await o.select.score();
      if (!best || record.score > best.score) {
        best = { epoch: epoch + 1, score: record.score, weights: modelWeights(o.models[o.select.model].model) };
      }
    }
    if (o.diagnostics) record.diagnostics = await o.diagnostics(epoch + 1);
    history.push(record);
    const finished = epoch + 1;
    const snapshot = (): TrainingCheckpoint => {
      const arrays: TrainingCheckpoint['arrays'] = {};
      for (const [name, c] of Object.entries(o.models)) arrays[name] = modelWeights(c.model);
      for (const [name, opt] of Object.entries(o.optimizers)) arrays[`optimizer:${name}`] = opt.state();
      if (best && o.select) arrays[`best:${o.select.model}`] = best.weights;
      const carried = o.carry?.save();
      return {
        epoch: finished,
        rngState: rng.state(),
        arrays: { ...carried?.arrays, ...arrays },
        // a copy: the loop keeps appending to `history` after this snapshot is taken
        extra: { ...carried?.extra, history: history.slice(), best: best ? { epoch: best.epoch, score: best.score } : undefined },
      };
    };
    await o.hooks?.onEpochEnd?.(record, snapshot);
  }

  if (best && o.select) {
    setModelWeights(o.models[o.select.model].model, best.weights, 'selected weights');
    return { history, selectedEpoch: best.epoch, selectedScore: best.score, resumedFromEpoch: startEpoch };
  }
  return { history, selectedEpoch: lastEpoch, resumedFromEpoch: startEpoch };
}

/**
 * ANP: Adversarial Neuron Pruning (Wu & Wang, NeurIPS 2021), with BN channels as neurons.
 *
 * A mask m in [0, 1] per channel (initialised to 1) is learned on clean data while an
 * adversary perturbs every channel's scale and shift multiplicatively: a random start in
 * [-eps, eps], then signed-gradient steps of eps / perturbSteps, unclipped as in the authors'
 * code (so up to 2 eps; `clipNoise` keeps it in [-eps, eps]). Neurons that the backdoor relies
 * on are the ones whose perturbation hurts the clean loss most, and the loss
 * alpha * CE(natural) + (1 - alpha) * CE(perturbed) drives their masks down. Channels with low
 * masks are then pruned by a rule chosen in advance: the authors' fixed mask threshold (0.2,
 * the default: mask <= 0.2 is pruned), a count, or a threshold searched on the held-out clean
 * slice (never the test set).
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import { deriveSeed, Rng } from '../rng';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { predictLabels } from '../models/classifier';
import { accuracy } from '../metrics';
import type { AugmentOptions } from '../train/augment';
import type { TrainingCheckpoint } from '../train/checkpoint';
import { TrainingCancelledError, type EpochRecord } from '../train/epochLoop';
import { crossEntropy } from '../train/losses';
import { SgdMomentum, type NamedArray } from '../train/sgd';
import { anpDefenseSchema, type AnpDefenseConfig } from './configs';
import type { DefensePlugin, PhaseControl } from './defense';
import { batchTensors, passBatches } from './batches';
import { describeStepBudget, stepBudget } from './budgets';
import {
  bnNeuronLayers,
  forwardWithNeurons,
  pruneNeurons,
  restoreLayerWeights,
  saveLayerWeights,
  type BnModulation,
  type BnNeuronLayer,
} from './neurons';

/** ANP's reference code uses SGD with momentum 0.9 on the masks. */
const MASK_MOMENTUM = 0.9;

type MaskConfig = Pick<
  AnpDefenseConfig,
  'eps' | 'perturbSteps' | 'clipNoise' | 'maskBatchNorm' | 'alpha' | 'iterations' | 'checkpoints' | 'maskLearningRate' | 'batchSize'
>;

export interface MaskResult {
  /** learned mask per BN layer, one value per channel */
  masks: Record<string, Float32Array>;
  history: EpochRecord[];
  resumedFromEpoch: number;
}

/** Iterations [start, end) of checkpointed epoch `e` of `epochs`. */
export function epochIterations(e: number, epochs: number, iterations: number): [number, number] {
  return [Math.floor((e * iterations) / epochs), Math.floor(((e + 1) * iterations) / epochs)];
}

export function maskEpochs(cfg: Pick<MaskConfig, 'iterations' | 'checkpoints'>): number {
  return Math.min(cfg.checkpoints, cfg.iterations);
}

export interface MaskOptions {
  /**
   * The loop as before issue 22: fused convolutions (their backward computes filter gradients
   * nobody reads) and the noise start, noise step and mask clip one variable at a time. Default:
   * convolutions on the input-gradient path, those updates stacked. The same numbers by other
   * calls, kept for tests and bench/ibauStep.ts.
   */
  reference?: boolean;
}

/** The mask, scale-noise and shift-noise variables of every BN layer, in graph order. */
class NeuronState {
  readonly masks: TF.Variable[];
  readonly noiseScale: TF.Variable[];
  readonly noiseShift: TF.Variable[];

  constructor(readonly layers: BnNeuronLayer[]) {
    this.masks = tf.tidy(() => layers.map((l) => tf.variable(tf.ones([l.channels]), true)));
    this.noiseScale = tf.tidy(() => layers.map((l) => tf.variable(tf.zeros([l.channels]), true)));
    this.noiseShift = tf.tidy(() => layers.map((l) => tf.variable(tf.zeros([l.channels]), true)));
  }

  get noise(): TF.Variable[] {
    return [...this.noiseScale, ...this.noiseShift];
  }

  modulations(withNoise: boolean): Record<string, BnModulation> {
    const out: Record<string, BnModulation> = {};
    this.layers.forEach((l, i) => {
      out[l.name] = withNoise
        ? { mask: this.masks[i] as TF.Tensor1D, noiseScale: this.noiseScale[i] as TF.Tensor1D, noiseShift: this.noiseShift[i] as TF.Tensor1D }
        : { mask: this.masks[i] as TF.Tensor1D };
    });
    return out;
  }

  /**
   * ANP starts every perturbation uniformly inside the eps box. Stacked: one upload for all the
   * noise variables (the same draws in the same order), else one per variable.
   */
  randomiseNoise(rng: Rng, eps: number, stacked: boolean): void {
    if (!stacked) {
      for (const v of this.noise) {
        const values = new Float32Array(v.size);
        for (let i = 0; i < values.length; i++) values[i] = rng.uniform(-eps, eps);
        assignValues(v, { shape: v.shape.slice(), values });
      }
      return;
    }
    const values = new Float32Array(this.noise.reduce((s, v) => s + v.size, 0));
    for (let i = 0; i < values.length; i++) values[i] = rng.uniform(-eps, eps);
    assignStacked(this.noise, () => tf.tensor1d(values));
  }

  maskValues(): Record<string, Float32Array> {
    return Object.fromEntries(this.layers.map((l, i) => [l.name, this.masks[i].dataSync().slice() as Float32Array]));
  }

  dispose(): void {
    tf.dispose([...this.masks, ...this.noise]);
  }
}

function readValues(vars: TF.Variable[]): NamedArray[] {
  return vars.map((v) => ({ shape: v.shape.slice(), values: v.dataSync().slice() as Float32Array }));
}

function assignValues(v: TF.Variable, a: NamedArray): void {
  if (a.shape.join('x') !== v.shape.join('x')) throw new Error(`ANP checkpoint: array of shape ${a.shape}, expected ${v.shape}`);
  const t = tf.tensor(a.values, a.shape);
  v.assign(t);
  t.dispose();
}

/**
 * Assigns one stacked vector, cut in order into the variables' sizes, to 1-D variables: one
 * native split instead of one op per variable.
 */
function assignStacked(vars: TF.Variable[], stacked: () => TF.Tensor): void {
  tf.tidy(() => {
    const parts = tf.split(stacked(), vars.map((v) => v.size));
    vars.forEach((v, i) => v.assign(parts[i]));
  });
}

/**
 * One signed-gradient ascent step of the noise, v + step * sign(g) (clipped to [-eps, eps] with
 * `clip`). Stacked: every variable with a gradient in one vector, so the step is a few native ops
 * instead of a few per variable; elementwise either way, so each element gets the same value.
 */
function ascendNoise(vars: TF.Variable[], grads: TF.NamedTensorMap, step: number, clip: number | undefined, stacked: boolean): void {
  // a BN layer without beta leaves its shift noise unconnected: no gradient, no step
  const moving = vars.filter((v) => grads[v.name]);
  if (moving.length === 0) return;
  const ascend = (v: TF.Tensor, g: TF.Tensor) => {
    const stepped = tf.add(v, tf.mul(step, tf.sign(g)));
    return clip === undefined ? stepped : tf.clipByValue(stepped, -clip, clip);
  };
  if (!stacked) {
    tf.tidy(() => moving.forEach((v) => v.assign(ascend(v, grads[v.name]))));
    return;
  }
  assignStacked(moving, () => ascend(tf.concat(moving), tf.concat(moving.map((v) => grads[v.name]))));
}

/** Masks clipped to [0, 1] after their SGD step; stacked: one clip for all of them. */
function clipMasks(masks: TF.Variable[], stacked: boolean): void {
  if (!stacked) {
    tf.tidy(() => masks.forEach((m) => m.assign(tf.clipByValue(m, 0, 1))));
    return;
  }
  assignStacked(masks, () => tf.clipByValue(tf.concat(masks), 0, 1));
}

function restoreVars(vars: TF.Variable[], arrays: NamedArray[] | undefined, what: string): void {
  if (!arrays || arrays.length !== vars.length) {
    throw new Error(`ANP checkpoint: ${what} holds ${arrays?.length ?? 0} arrays, the model's BN layers need ${vars.length}`);
  }
  vars.forEach((v, i) => assignValues(v, arrays[i]));
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Learns the neuron masks: per iteration, a uniform random start in [-eps, eps] and
 * `perturbSteps` signed-gradient ascent steps of the perturbation on the clean batch's CE
 * (clipped to [-eps, eps] only with `clipNoise`), then one SGD step of the masks on
 * alpha * CE(natural) + (1 - alpha) * CE(perturbed), masks clipped to [0, 1]. BN runs in
 * inference mode throughout by default (moving statistics, never updated), so the masks are
 * learned on the function that will be pruned; `maskBatchNorm: batch` normalises with each
 * batch's statistics as the authors' code does (moving statistics still untouched).
 *
 * The iterations are split into checkpointed epochs; a checkpoint holds the masks, the
 * perturbation, the mask optimiser's momentum and the RNG position, so a resumed run
 * continues exactly.
 */
export async function learnMasks(
  c: Classifier,
  data: { cleanFit: ImageDataset; augment: AugmentOptions },
  cfg: MaskConfig,
  seed: number,
  control: PhaseControl & { progress?: (detail: Record<string, unknown>) => void; signal?: AbortSignal } = {},
  options: MaskOptions = {},
): Promise<MaskResult> {
  const stacked = !options.reference;
  const layers = bnNeuronLayers(c.model, `model "${c.model.name}" (${c.meta.arch})`);
  const n = data.cleanFit.labels.length;
  if (n < 2) throw new Error(`ANP needs at least 2 clean samples to learn masks on, got ${n}`);
  const epochs = maskEpochs(cfg);
  const state = new NeuronState(layers);
  const optimizer = new SgdMomentum(state.masks, { momentum: MASK_MOMENTUM, weightDecay: 0 });
  const noiseStep = cfg.eps / cfg.perturbSteps;
  const signal = control.hooks?.signal ?? control.signal;
  try {
    let rng = new Rng(deriveSeed(seed, 'anp:masks'));
    let history: EpochRecord[] = [];
    let startEpoch = 0;
    if (control.resume) {
      const r = control.resume;
      if (r.epoch > epochs) throw new Error(`ANP checkpoint is at epoch ${r.epoch}, the mask optimisation has ${epochs}`);
      restoreVars(state.masks, r.arrays.masks, 'masks');
      restoreVars(state.noise, r.arrays.noise, 'noise');
      optimizer.restore(r.arrays['optimizer:masks']);
      rng = new Rng(r.rngState);
      history = ((r.extra.history as EpochRecord[]) ?? []).slice();
      startEpoch = r.epoch;
    }

    const batchStats = cfg.maskBatchNorm === 'batch';
    const forward = (x: TF.Tensor4D, withNoise: boolean) =>
      // only the masks and the noise are differentiated, never the weights
      forwardWithNeurons(c.model, x, state.modulations(withNoise), undefined, { batchStats, inputGradientsOnly: stacked }) as TF.Tensor2D;
    const naturalAndRobust = (x: TF.Tensor4D, y: TF.Tensor1D): TF.Scalar =>
      tf.tidy(() => {
        const natural = crossEntropy(forward(x, false), y);
        // without an adversary the perturbed model is the natural one
        if (cfg.eps === 0) return natural;
        const robust = crossEntropy(forward(x, true), y);
        return tf.add(tf.mul(cfg.alpha, natural), tf.mul(1 - cfg.alpha, robust)) as TF.Scalar;
      });

    for (let epoch = startEpoch; epoch < epochs; epoch++) {
      const t0 = Date.now();
      const [first, last] = epochIterations(epoch, epochs, cfg.iterations);
      const batches = passBatches(rng, n, cfg.batchSize, last - first);
      let lossSum: TF.Scalar = tf.scalar(0);
      for (let b = 0; b < batches.length; b++) {
        if (signal?.aborted) {
          lossSum.dispose();
          throw new TrainingCancelledError();
        }
        const { x, y } = batchTensors(data.cleanFit, batches[b], c.meta.inputRange, rng, data.augment);
        if (cfg.eps > 0) {
          state.randomiseNoise(rng, cfg.eps, stacked);
          for (let s = 0; s < cfg.perturbSteps; s++) {
            const { value, grads } = tf.variableGrads(
              () => crossEntropy(forward(x, true), y),
              state.noise,
            );
            ascendNoise(state.noise, grads, noiseStep, cfg.clipNoise ? cfg.eps : undefined, stacked);
            value.dispose();
            tf.dispose(grads);
          }
        }
        const { value, grads } = tf.variableGrads(() => naturalAndRobust(x, y), state.masks);
        optimizer.step(
          state.masks.map((m) => grads[m.name]),
          cfg.maskLearningRate,
        );
        clipMasks(state.masks, stacked);
        tf.dispose(grads);
        tf.dispose([x, y]);
        const sum = lossSum;
        lossSum = tf.tidy(() => tf.add(sum, value));
        sum.dispose();
        value.dispose();
        await control.hooks?.onBatch?.(epoch, b, batches.length);
        if ((first + b + 1) % 25 === 0) control.progress?.({ phase: 'masks', iteration: first + b + 1, iterations: cfg.iterations });
        await yieldToEventLoop();
      }
      const loss = batches.length ? (await lossSum.data())[0] / batches.length : NaN;
      lossSum.dispose();
      const record: EpochRecord = {
        epoch: epoch + 1,
        loss,
        learningRate: cfg.maskLearningRate,
        seconds: (Date.now() - t0) / 1000,
        images: batches.length * Math.min(cfg.batchSize, n),
        diagnostics: maskDiagnostics(state.maskValues()),
      };
      history.push(record);
      const finished = epoch + 1;
      const snapshot = (): TrainingCheckpoint => ({
        epoch: finished,
        rngState: rng.state(),
        arrays: { masks: readValues(state.masks), noise: readValues(state.noise), 'optimizer:masks': optimizer.state() },
        extra: { history: history.slice() },
      });
      await control.hooks?.onEpochEnd?.(record, snapshot);
      control.progress?.({ phase: 'masks', epoch: finished, epochs, iteration: last, iterations: cfg.iterations });
    }
    return { masks: state.maskValues(), history, resumedFromEpoch: startEpoch };
  } finally {
    optimizer.dispose();
    state.dispose();
  }
}

function maskDiagnostics(masks: Record<string, Float32Array>): Record<string, number> {
  let sum = 0;
  let count = 0;
  let min = Infinity;
  let belowHalf = 0;
  for (const values of Object.values(masks)) {
    for (const v of values) {
      sum += v;
      count++;
      min = Math.min(min, v);
      if (v < 0.5) belowHalf++;
    }
  }
  return { meanMask: sum / count, minMask: min, masksBelowHalf: belowHalf };
}

export interface Neuron {
  layer: string;
  channel: number;
  mask: number;
}

/** All neurons, lowest mask first (ties: graph order, then channel), so "the N lowest" is well defined. */
export function rankNeurons(masks: Record<string, Float32Array>): Neuron[] {
  const out: Neuron[] = [];
  for (const [layer, values] of Object.entries(masks)) values.forEach((mask, channel) => out.push({ layer, channel, mask }));
  const order = new Map(Object.keys(masks).map((l, i) => [l, i]));
  return out.sort((a, b) => a.mask - b.mask || order.get(a.layer)! - order.get(b.layer)! || a.channel - b.channel);
}

export function groupByLayer(neurons: Neuron[]): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const nrn of neurons) (out[nrn.layer] ??= []).push(nrn.channel);
  return out;
}

export interface PruningChoice {
  /** neurons to prune, lowest mask first */
  neurons: Neuron[];
  /** the mask threshold (prune mask <= threshold, as the authors' pruning script); for the count rule, the largest pruned mask */
  threshold: number;
  baseHeldOutAccuracy: number;
  heldOutAccuracy: number;
  rule: string;
  /** held-out accuracy per tried threshold (heldOut rule) */
  trials?: Array<{ threshold: number; pruned: number; heldOutAccuracy: number }>;
}

/**
 * Chooses the neurons to prune by `rule` and scores the pruned model on the held-out slice.
 * The model's weights are the same on return as on entry.
 */
export async function choosePruning(
  c: Classifier,
  masks: Record<string, Float32Array>,
  heldOut: ImageDataset,
  rule: AnpDefenseConfig['prune'],
  progress?: (detail: Record<string, unknown>) => void,
  zero: AnpDefenseConfig['pruneZeroes'] = 'scaleAndShift',
): Promise<PruningChoice> {
  const ranked = rankNeurons(masks);
  const saved = saveLayerWeights(c.model, Object.keys(masks));
  const scorePruned = async (neurons: Neuron[]): Promise<number> => {
    restoreLayerWeights(c.model, saved);
    pruneNeurons(c.model, groupByLayer(neurons), { zero });
    const acc = accuracy(await predictLabels(c, heldOut), heldOut.labels);
    restoreLayerWeights(c.model, saved);
    return acc;
  };
  const base = accuracy(await predictLabels(c, heldOut), heldOut.labels);
  const below = (t: number) => ranked.filter((nrn) => nrn.mask <= t);

  switch (rule.by) {
    case 'threshold': {
      const neurons = below(rule.value);
      return {
        neurons,
        threshold: rule.value,
        baseHeldOutAccuracy: base,
        heldOutAccuracy: await scorePruned(neurons),
        rule: `prune every BN channel whose mask is at most the threshold ${rule.value}, fixed in advance (the ANP paper's rule; no data used)`,
      };
    }
    case 'count': {
      if (rule.value > ranked.length) {
        throw new Error(`ANP cannot prune ${rule.value} neurons: the model has ${ranked.length} BN channels`);
      }
      const neurons = ranked.slice(0, rule.value);
      return {
        neurons,
        threshold: neurons.length ? neurons[neurons.length - 1].mask : 0,
        baseHeldOutAccuracy: base,
        heldOutAccuracy: await scorePruned(neurons),
        rule: `prune the ${rule.value} BN channels with the lowest masks (a count fixed in advance)`,
      };
    }
    case 'heldOut': {
      // thresholds step, 2*step, ... up to maxThreshold, stopping at the first one whose
      // relative held-out drop reaches accRatio (pruning only grows with the threshold)
      let chosen: { threshold: number; neurons: Neuron[]; acc: number } = { threshold: 0, neurons: [], acc: base };
      const trials: NonNullable<PruningChoice['trials']> = [];
      let last: { pruned: number; acc: number } | undefined;
      for (let k = 1; k * rule.step <= rule.maxThreshold + 1e-9; k++) {
        const threshold = Number((k * rule.step).toFixed(10));
        const neurons = below(threshold);
        const acc = last && last.pruned === neurons.length ? last.acc : await scorePruned(neurons);
        last = { pruned: neurons.length, acc };
        trials.push({ threshold, pruned: neurons.length, heldOutAccuracy: acc });
        progress?.({ phase: 'prune', threshold, pruned: neurons.length, heldOutAccuracy: acc });
        const drop = base > 0 ? (base - acc) / base : 0;
        if (drop >= rule.accRatio) break;
        chosen = { threshold, neurons, acc };
      }
      return {
        neurons: chosen.neurons,
        threshold: chosen.threshold,
        baseHeldOutAccuracy: base,
        heldOutAccuracy: chosen.acc,
        trials,
        rule:
          `prune BN channels with mask at most a threshold raised in steps of ${rule.step} up to ${rule.maxThreshold}, ` +
          `keeping the largest one reached before the held-out clean accuracy drops by ${rule.accRatio * 100}% (relative)`,
      };
    }
  }
}

export const anp: DefensePlugin<AnpDefenseConfig> = {
  name: 'anp',
  description: 'adversarial neuron pruning: BN-channel masks learned under adversarial neuron perturbations, low masks pruned',
  configSchema: anpDefenseSchema,
  defaultCleanBudget: { fraction: 0.05 },
  async run(model, ctx, cfg) {
    const layers = bnNeuronLayers(model.model, `model "${model.model.name}" (${model.meta.arch})`);
    const control = await ctx.phase('masks', maskEpochs(cfg));
    const learned = await learnMasks(model, ctx, cfg, ctx.seed, { ...control, progress: ctx.progress, signal: ctx.signal });
    const choice = await choosePruning(model, learned.masks, ctx.cleanHeldOut, cfg.prune, ctx.progress, cfg.pruneZeroes);
    const pruned = pruneNeurons(model.model, groupByLayer(choice.neurons), { zero: cfg.pruneZeroes });
    const neurons = layers.reduce((s, l) => s + l.channels, 0);
    return {
      model,
      history: { masks: learned.history },
      selectionRule: choice.rule,
      details: {
        neurons,
        pruned,
        optimisationSteps: learned.history.reduce((s, r) => s + Math.round(r.images / Math.min(cfg.batchSize, ctx.cleanFit.labels.length)), 0),
        stepBudget: describeStepBudget(stepBudget(cfg)),
        noise: cfg.clipNoise ? 'clipped to [-eps, eps]' : 'unclipped (authors): up to 2 eps',
        prunedBy: cfg.pruneZeroes === 'scale' ? 'gamma zeroed (authors): constant ReLU(beta) left' : 'gamma and beta zeroed',
        threshold: choice.threshold,
        heldOutAccuracyBefore: choice.baseHeldOutAccuracy,
        heldOutAccuracy: choice.heldOutAccuracy,
        ...(choice.trials ? { triedThresholds: choice.trials.map((t) => t.threshold), triedAccuracies: choice.trials.map((t) => t.heldOutAccuracy) } : {}),
      },
    };
  },
};

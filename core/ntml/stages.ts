/**
 * The NT-ML stages as plain functions on in-memory models and data. The in-process
 * pipeline (purify.ts) and the Temporal activities both call these, so there is one
 * implementation of each stage; the activities only add storage, heartbeats and resume.
 */
import { concatDatasets, type ImageDataset } from '../data/dataset';
import { deriveSeed } from '../rng';
import { predictLabels, predictProbabilities, type Classifier } from '../models/classifier';
import { cloneClassifier, createClassifier } from '../models/layersFormat';
import { accuracy } from '../metrics';
import { trainClassifier } from '../train/trainClassifier';
import type { TrainRecipe } from '../train/recipe';
import type { EpochHooks, EpochLoopResult } from '../train/epochLoop';
import type { TrainingCheckpoint } from '../train/checkpoint';
import { NtmlConfig } from './config';
import { judgeSplitEvidence, shareOf, suspectedPoisoned, type SplitEvidence } from './splitEvidence';
import type { TrainingGroups } from './splitDiagnostics';
import type { AugmentOptions } from '../train/augment';
import { nonTargetTargets, type NtTargets } from './nonTargetLabels';
import { mutualLearning } from './mutualLearning';
import {
  estimateTargetClass,
  inputsKeptForDistillation,
  predictionsForSplit,
  splitDistillation,
  type TargetEstimate,
} from './splitDistillation';

export interface StageControl {
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
}

/**
 * refitOnAllClean: after a run selected on the held-out slice, the refit replays the first
 * `refitEpochs` epochs of the same schedule with no selection (the held-out slice has become
 * training data, so nothing is left to select on).
 */
export interface RefitControl {
  refitEpochs?: number;
}

/** A fresh model of the same architecture, seeded: for `scratch` students and self-distilled teachers. */
export type ModelFactory = (seed: number) => Promise<Classifier> | Classifier;

export function builtInFactory(arch: Parameters<typeof createClassifier>[0], like: ImageDataset): ModelFactory {
  return (seed) => createClassifier(arch, like, like.numClasses, seed);
}

export const heldOutAccuracy = (c: Classifier, heldOut: ImageDataset) => async () =>
  accuracy(await predictLabels(c, heldOut), heldOut.labels);

export async function trainStandard(
  model: Classifier,
  train: ImageDataset,
  recipe: TrainRecipe,
  seed: number,
  control: StageControl = {},
): Promise<EpochLoopResult> {
  return trainClassifier({ classifier: model, data: train, recipe, seed: deriveSeed(seed, 'standard'), ...control });
}

export async function computeNtTargets(standard: Classifier, train: ImageDataset, cfg: NtmlConfig): Promise<NtTargets> {
  const probs = await predictProbabilities(standard, train, { temperature: cfg.tau });
  return nonTargetTargets(probs, train.labels, standard.meta.numClasses, cfg);
}

/** teacher = selfDistilled: a fresh model trained on the standard model's full soft outputs. */
export async function trainSelfDistilledTeacher(
  standard: Classifier,
  fresh: Classifier,
  train: ImageDataset,
  recipe: TrainRecipe,
  cfg: NtmlConfig,
  seed: number,
  control: StageControl = {},
): Promise<EpochLoopResult> {
  const probs = await predictProbabilities(standard, train, { temperature: cfg.tau });
  return trainClassifier({
    classifier: fresh,
    data: train,
    targets: { kind: 'soft', probs },
    recipe,
    seed: deriveSeed(seed, 'teacher'),
    ...control,
  });
}

/**
 * The NT student, trained on the non-target labels: from f_std's weights for `ntEpochs` at
 * `ntLearningRate` (studentInit = standard), or from scratch on the full recipe.
 */
export async function trainNtStudent(
  student: Classifier,
  train: ImageDataset,
  targets: NtTargets,
  recipe: TrainRecipe,
  cfg: NtmlConfig,
  seed: number,
  control: StageControl = {},
): Promise<EpochLoopResult> {
  return trainClassifier({ classifier: student, data: train, targets, recipe: ntStudentRecipe(recipe, cfg), seed: deriveSeed(seed, 'nt'), ...control });
}

/**
 * The NT student's recipe. From f_std it is a short fine-tune: cosine decay from `ntLearningRate`
 * with heavy-ball momentum whatever schedule the tier's standard training uses (a one-cycle
 * warm-up from peak/25 over 3 epochs would be a different, untested NT stage; NT-ML's defaults
 * were chosen with this one). From scratch it is the full recipe, as f_std's.
 */
export function ntStudentRecipe(recipe: TrainRecipe, cfg: NtmlConfig): TrainRecipe {
  if (cfg.studentInit !== 'standard') return recipe;
  const { warmupFraction: _warmup, nesterov: _nesterov, ...rest } = recipe;
  return { ...rest, epochs: cfg.ntEpochs, learningRate: cfg.ntLearningRate, schedule: 'cosine' };
}

export async function runMutualLearning(
  student: Classifier,
  teacher: Classifier,
  cleanFit: ImageDataset,
  cleanHeldOut: ImageDataset,
  cfg: NtmlConfig,
  augment: AugmentOptions,
  seed: number,
  control: StageControl & RefitControl & { diagnostics?: (epoch: number) => Promise<Record<string, number>> } = {},
): Promise<EpochLoopResult> {
  const refit = control.refitEpochs !== undefined;
  return mutualLearning({
    student,
    teacher,
    clean: refit ? concatDatasets(cleanFit, cleanHeldOut, 'clean set (fit + held-out)') : cleanFit,
    config: cfg,
    augment,
    seed: deriveSeed(seed, 'ml'),
    select: refit || cfg.mlSelect === 'last' ? undefined : heldOutAccuracy(student, cleanHeldOut),
    stopAfterEpoch: control.refitEpochs,
    diagnostics: control.diagnostics,
    resume: control.resume,
    hooks: control.hooks,
  });
}

export interface SplitPlan extends TargetEstimate {
  /** the inputs to distil on; empty when the weak-evidence fallback skips split distillation */
  kept: Int32Array;
  keptFraction: number;
  evidence: SplitEvidence;
}

/**
 * `from`: whose over-prediction against the student names t^. `teacher` (ntml.md) is T after
 * mutual learning; when ML has cleaned T too (mlBatchNorm train, the default) it no longer
 * over-predicts the target, so `standard` (the default) asks f_std, which training on the
 * poisoned set left backdoored. `evidence`: the fallback switches (splitEvidence.ts; without
 * them the config's defaults apply, so a caller that passes none still gets the safety check)
 * and the clean set (all of D_c), against which f_std's over-prediction of t^ is measured.
 */
export async function planSplit(
  teacher: Classifier | undefined,
  student: Classifier,
  standard: Classifier,
  train: ImageDataset,
  from: NtmlConfig['splitTarget'],
  evidence: { config?: Pick<NtmlConfig, 'splitFallback' | 'splitMinEvidence'>; clean?: ImageDataset } = {},
): Promise<SplitPlan> {
  if (from === 'teacher' && !teacher) throw new Error('planSplit: splitTarget teacher needs the teacher model');
  const pred = await predictionsForSplit(from === 'teacher' ? teacher : undefined, student, standard, train);
  const estimate = estimateTargetClass(from === 'teacher' ? pred.teacher! : pred.standard, pred.student, standard.meta.numClasses);
  const t = estimate.estimatedTarget;
  const suspected = suspectedPoisoned(train.labels, pred.standard, pred.student, t);
  const shares = evidence.clean ? { train: shareOf(pred.standard, t), clean: shareOf(await predictLabels(standard, evidence.clean), t) } : undefined;
  const judged = judgeSplitEvidence(t, estimate.excess, suspected.length, train.labels.length, evidence.config ?? NtmlConfig.parse({}), shares);
  const kept = judged.fallback ? new Int32Array(0) : inputsKeptForDistillation(pred.standard, t);
  return { ...estimate, kept, keptFraction: kept.length / train.labels.length, evidence: judged };
}

export async function runSplitDistillation(
  student: Classifier,
  standard: Classifier,
  train: ImageDataset,
  kept: Int32Array,
  cleanHeldOut: ImageDataset,
  cfg: NtmlConfig,
  augment: AugmentOptions,
  seed: number,
  control: StageControl &
    RefitControl & {
      diagnostics?: (epoch: number) => Promise<Record<string, number>>;
      /** t^ from the plan (else implied by `kept`) */
      target?: number;
      /** evaluation mode: which training inputs are poisoned or noise-mode, for the target-mass diagnostic */
      groups?: TrainingGroups;
    } = {},
): Promise<EpochLoopResult> {
  const { refitEpochs, ...rest } = control;
  return splitDistillation({
    student,
    standard,
    train,
    kept,
    config: cfg,
    augment,
    seed: deriveSeed(seed, 'split'),
    select: refitEpochs === undefined && cfg.splitSelect === 'heldOut' ? heldOutAccuracy(student, cleanHeldOut) : undefined,
    stopAfterEpoch: refitEpochs,
    ...rest,
  });
}

export { cloneClassifier };

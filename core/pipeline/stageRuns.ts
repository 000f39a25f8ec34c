/**
 * The NT-ML pipeline's stages as their hosts run them: each takes the parsed config, its
 * inputs in memory and a StageEnv, and returns its outputs in memory. Everything a stage
 * reads from the config is read here (or below), so a stage declaration can be checked by
 * running these functions on a config view that records reads (test/core/stageReads.test.ts).
 * Models created or handed in are owned by `env.scope`; the host disposes them.
 */
import { deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import { createClassifier, importLayersModel, cloneClassifier } from '../models/layersFormat';
import { initialiseWeights } from '../models/architectures';
import { diagnosticSample, sampleDiagnostics } from '../experiment/evaluate';
import type { BackdoorTestSet } from '../attacks/testSet';
import type { EpochLoopResult } from '../train/epochLoop';
import type { NtTargets } from '../ntml/nonTargetLabels';
import {
  computeNtTargets,
  planSplit,
  runMutualLearning,
  runSplitDistillation,
  trainNtStudent,
  trainSelfDistilledTeacher,
  trainStandard,
  type SplitPlan,
} from '../ntml/stages';
import type { PurifyConfig } from '../../schemas/purify';
import type { StageEnv } from './stageEnv';

/** A fresh model for the run: a built-in architecture or the user's, re-initialised from `seed`. */
export async function freshModel(cfg: PurifyConfig, like: ImageDataset, seed: number, env: StageEnv): Promise<Classifier> {
  if ('arch' in cfg.model) return env.scope.classifier(createClassifier(cfg.model.arch, like, like.numClasses, seed));
  const c = env.scope.classifier(await importLayersModel(await env.localFile(cfg.model.layersModel), cfg.model.inputRange));
  initialiseWeights(c.model, seed);
  return c;
}

export interface TrainedStage {
  model: Classifier;
  result: EpochLoopResult;
}

export async function standardTrainingStage(cfg: PurifyConfig, train: ImageDataset, env: StageEnv): Promise<TrainedStage> {
  const model = await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:standard'), env);
  const result = await trainStandard(model, train, cfg.training, cfg.seed, await env.phase('standard', cfg.training.epochs));
  return { model, result };
}

export async function nonTargetLabelStage(cfg: PurifyConfig, standard: Classifier, train: ImageDataset): Promise<NtTargets> {
  return computeNtTargets(standard, train, cfg.ntml);
}

export async function teacherTrainingStage(cfg: PurifyConfig, standard: Classifier, train: ImageDataset, env: StageEnv): Promise<TrainedStage> {
  const teacher = await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:teacher'), env);
  const control = await env.phase('teacher', cfg.training.epochs);
  const result = await trainSelfDistilledTeacher(standard, teacher, train, cfg.training, cfg.ntml, cfg.seed, control);
  return { model: teacher, result };
}

export async function ntStudentStage(
  cfg: PurifyConfig,
  standard: Classifier,
  train: ImageDataset,
  targets: NtTargets,
  env: StageEnv,
): Promise<TrainedStage> {
  const fromStandard = cfg.ntml.studentInit === 'standard';
  const student = fromStandard
    ? env.scope.classifier(await cloneClassifier(standard))
    : await freshModel(cfg, train, deriveSeed(cfg.seed, 'init:student'), env);
  const control = await env.phase('ntStudent', fromStandard ? cfg.ntml.ntEpochs : cfg.training.epochs);
  const result = await trainNtStudent(student, train, targets, cfg.training, cfg.ntml, cfg.seed, control);
  return { model: student, result };
}

/** The test sets an ML-style stage samples for its per-epoch diagnostics (recorded, never selected on). */
export interface DiagnosticSets {
  test?: ImageDataset;
  backdoorTest?: BackdoorTestSet;
}

function diagnostics(cfg: PurifyConfig, student: Classifier, sets: DiagnosticSets) {
  const sample = diagnosticSample(sets.test, sets.backdoorTest, cfg.ntml.diagnosticSamples, deriveSeed(cfg.seed, 'diagnostics'));
  return sampleDiagnostics(student, sample);
}

export async function mutualLearningStage(
  cfg: PurifyConfig,
  models: { student: Classifier; teacher: Classifier },
  data: { cleanFit: ImageDataset; cleanHeldOut: ImageDataset } & DiagnosticSets,
  refitEpochs: number | undefined,
  env: StageEnv,
): Promise<EpochLoopResult> {
  const { student, teacher } = models;
  const control = await env.phase(refitEpochs === undefined ? 'mutualLearning' : 'mutualLearningRefit', refitEpochs ?? cfg.ntml.mlEpochs);
  return runMutualLearning(student, teacher, data.cleanFit, data.cleanHeldOut, cfg.ntml, cfg.training.augment, cfg.seed, {
    ...control,
    diagnostics: diagnostics(cfg, student, data),
    refitEpochs,
  });
}

/** t^ and the kept inputs; the teacher is loaded only when `splitTarget` names it. */
export async function splitPlanStage(
  cfg: PurifyConfig,
  models: { teacher: () => Promise<Classifier>; student: Classifier; standard: Classifier },
  train: ImageDataset,
  clean: ImageDataset,
): Promise<SplitPlan> {
  const from = cfg.ntml.splitTarget;
  const teacher = from === 'teacher' ? await models.teacher() : undefined;
  return planSplit(teacher, models.student, models.standard, train, from, { config: cfg.ntml, clean });
}

export async function splitDistillationStage(
  cfg: PurifyConfig,
  models: { student: Classifier; standard: Classifier },
  data: { train: ImageDataset; kept: Int32Array; cleanHeldOut: ImageDataset } & DiagnosticSets,
  refitEpochs: number | undefined,
  env: StageEnv,
  /** t^ and which training inputs were poisoned (evaluation mode): the per-epoch diagnostics use them */
  known: { target?: number; groups?: { poisoned: number[]; noise?: number[] } } = {},
): Promise<EpochLoopResult> {
  const { student, standard } = models;
  const control = await env.phase(refitEpochs === undefined ? 'splitDistillation' : 'splitDistillationRefit', refitEpochs ?? cfg.ntml.splitEpochs);
  return runSplitDistillation(student, standard, data.train, data.kept, data.cleanHeldOut, cfg.ntml, cfg.training.augment, cfg.seed, {
    ...control,
    refitEpochs,
    target: known.target,
    groups: known.groups,
    diagnostics: diagnostics(cfg, student, data),
  });
}

/**
 * What each cached stage depends on, declared once: its version, the config fields its core
 * call reads, its input artifacts and other keyed inputs. Stage keys are derived from these
 * (stageCache.ts); the stage runs on a config view that throws on any read outside `reads`,
 * and test/core/stageReads.test.ts checks each declaration against the reads of a real run.
 * A declared path covers everything under it (`attack` covers `attack.rate`).
 */
import type { StageDeclaration } from './stageCache';
import { dataContentFingerprint } from '../core/data/contentFingerprint';
import { locationFreeData } from '../schemas/sweep';
import type { ArtifactRef, DataRefs } from '../workflows/contract';

export interface StageInput {
  config: unknown;
  cache?: boolean;
}
export interface DataInput extends StageInput {
  data: DataRefs;
}

/** A stage that reads a user architecture from a path (whose content may change) is not cached. */
const builtInArchitecture = (cfg: { model: object }) => 'arch' in cfg.model;

// 2: D_c drawn inside a clean reserve (cleanReserve)
// 3: Narcissus `triggerStep: adam` on the checkpointable core Adam (was tf.train.adam)
// 4: the training set excludes the clean reserve (D_c is the defender's own data); the
//    poisoning rate is a fraction of that training set
// 5: the output references the records' source indices (DataRefs.sourceIndices)
// (not bumped when the key began hashing the data's content instead of its folder's path: the
// output is the same, and synthetic data, which names no folder, keeps its key and its entries)
export const prepareDataStage: StageDeclaration<StageInput> = {
  stage: 'prepareData',
  version: 5,
  reads: ['mode', 'data', 'attack', 'cleanBudget', 'cleanReserve', 'seed', 'ntml.heldOutFraction', 'trainingSet', 'cleanSet', 'testSet'],
  inputs: () => ({}),
  // user files may change under the same path: only generated/evaluation data is cached
  cacheable: (cfg) => cfg.mode === 'evaluation',
  // the data folder by its files' content (the digest cell ids hash, memoised per file), so the
  // same CIFAR-10 bytes at another path (a bench/state bundle imported on another machine) give
  // the same key, and Narcissus's trigger, optimised here and checkpointed under the key, resumes
  contentKeyed: async (cfg) => {
    const content = cfg.data ? await dataContentFingerprint(cfg.data) : undefined;
    return content ? { data: locationFreeData(cfg.data as unknown as Record<string, unknown>, content) } : {};
  },
};

// 2: Input-Aware's generators on the checkpointable core Adam (same update rule)
// 3: Input-Aware's generators' forward on the fast path (same function, other float rounding)
// 4: Input-Aware's mask-phase image distances in per-channel std units (the authors' standardised inputs)
export const standardTrainingStage: StageDeclaration<DataInput> = {
  stage: 'standardTraining',
  version: 4,
  // `attack`: training-controlled attacks run here (Input-Aware trains its generators, WaNet
  // poisons every batch: its mode, rate, grid and augmentation; either's `epochs`, the length of
  // the attacker's run); others come in through `train`
  reads: ['model', 'training', 'seed', 'attack'],
  inputs: ({ data }) => ({ train: data.train, eligible: data.attackTraining?.eligibleIndices, test: data.test }),
  cacheable: builtInArchitecture,
};

export interface StandardInput extends DataInput {
  standard: ArtifactRef;
}

export const nonTargetLabelsStage: StageDeclaration<StandardInput> = {
  stage: 'nonTargetLabels',
  version: 1,
  reads: ['ntml.ntLabel', 'ntml.tau', 'ntml.mixEpsilon'],
  inputs: ({ standard, data }) => ({ standard, train: data.train }),
};

export const teacherTrainingStage: StageDeclaration<StandardInput> = {
  stage: 'teacherTraining',
  version: 1,
  reads: ['model', 'training', 'ntml.tau', 'seed'],
  inputs: ({ standard, data }) => ({ standard, train: data.train }),
  cacheable: builtInArchitecture,
};

export interface NtStudentInput extends StandardInput {
  labels: ArtifactRef;
}

export const ntTrainingStage: StageDeclaration<NtStudentInput> = {
  stage: 'ntTraining',
  version: 1,
  reads: ['ntml.studentInit', 'ntml.ntEpochs', 'ntml.ntLearningRate', 'model', 'training', 'seed'],
  inputs: ({ standard, labels, data }) => ({ standard, labels, train: data.train }),
  cacheable: builtInArchitecture,
};

export interface MutualLearningInput extends DataInput {
  student: ArtifactRef;
  teacher: ArtifactRef;
  /** refitOnAllClean: replay this many epochs (the selection run's choice) on all of D_c */
  refitEpochs?: number;
}

/** The ML and split stages record per-epoch diagnostics on a sample of the test sets. */
const diagnosticSets = (data: DataRefs) => ({ test: data.test, backdoorTest: data.backdoorTest });

export const mutualLearningStage: StageDeclaration<MutualLearningInput> = {
  stage: 'mutualLearning',
  version: 1,
  reads: [
    // ML tells only oneWay from mutual: `split` and `clean` cells share one ML stage
    { path: 'ntml.ml', keyedAs: (ml) => (ml === 'oneWay' ? 'oneWay' : 'mutual') },
    'ntml.lambda',
    'ntml.mlTau',
    'ntml.mlEpochs',
    'ntml.mlBatchSize',
    'ntml.mlBatchNorm',
    'ntml.mlLearningRate',
    'ntml.mlSelect',
    'ntml.diagnosticSamples',
    'training.augment',
    'seed',
  ],
  inputs: ({ student, teacher, data }) => ({ student, teacher, cleanFit: data.cleanFit, cleanHeldOut: data.cleanHeldOut, ...diagnosticSets(data) }),
  params: ({ refitEpochs }) => ({ refitEpochs }),
};

export interface SplitPlanInput extends DataInput {
  student: ArtifactRef;
  teacher: ArtifactRef;
  standard: ArtifactRef;
}

// 2: t^ ties broken by a draw among the tied classes (was: the lowest class index)
// 3: the output names the tied classes (tiedClasses), for the split summary and the report
// 4: the weak-evidence fallback (an empty plan when t^ has too little evidence), measured
//    against the clean set; the output carries the split summary with the evidence
export const splitPlanStage: StageDeclaration<SplitPlanInput> = {
  stage: 'splitPlan',
  version: 4,
  reads: ['ntml.splitTarget', 'ntml.splitFallback', 'ntml.splitMinEvidence'],
  inputs: ({ teacher, student, standard, data }) => ({
    teacher,
    student,
    standard,
    train: data.train,
    cleanFit: data.cleanFit,
    cleanHeldOut: data.cleanHeldOut,
  }),
};

export interface SplitDistillationInput extends DataInput {
  student: ArtifactRef;
  standard: ArtifactRef;
  kept: ArtifactRef;
  /** refitOnAllClean: replay this many epochs (the selection run's choice), no selection */
  refitEpochs?: number;
  /** the split plan's t^ (the diagnostics measure the distillation target's mass on it) */
  target?: number;
}

// 2: the output records the epoch the held-out selection kept (refitOnAllClean replays it)
// 3: the history records per-epoch test diagnostics
// 4: per-epoch target-mass and proxy-ASR diagnostics; the remedy switches (splitTargetSource,
//    splitGate, splitStop, splitAnchor)
export const splitDistillationStage: StageDeclaration<SplitDistillationInput> = {
  stage: 'splitDistillation',
  version: 4,
  reads: [
    'ntml.splitTargetSource',
    'ntml.splitGate',
    'ntml.splitGateThreshold',
    'ntml.splitStop',
    'ntml.splitStopProxyAsr',
    'ntml.splitAnchor',
    'ntml.splitEpochs',
    'ntml.splitBatchSize',
    'ntml.mlBatchNorm',
    'ntml.mlLearningRate',
    'ntml.splitSelect',
    'ntml.diagnosticSamples',
    'training.augment',
    'seed',
  ],
  inputs: ({ student, standard, kept, data }) => ({
    student,
    standard,
    kept,
    train: data.train,
    cleanHeldOut: data.cleanHeldOut,
    poisonedIndices: data.poison?.poisonedIndices,
    crossIndices: data.poison?.crossIndices,
    ...diagnosticSets(data),
  }),
  params: ({ refitEpochs, target }) => ({ refitEpochs, target }),
};

export interface DefenseInput extends DataInput {
  backdoored: ArtifactRef;
}

// 2: I-BAU's forward and ANP's neuron forward on the fused fast path (float rounding differs)
// 3: NAD's epoch is never shorter than one pass over the fitting set (a shorter index list had
//    left images unused), so an explicit stepsPerEpoch config can train differently
export const defenseStage: StageDeclaration<DefenseInput> = {
  stage: 'defense',
  version: 3,
  reads: ['defense', 'training.augment', 'seed'],
  inputs: ({ backdoored, data }) => ({ backdoored, cleanFit: data.cleanFit, cleanHeldOut: data.cleanHeldOut }),
};

/** Every cached stage, for the declaration test and for tools that list the cache. */
export const stageDeclarations = [
  prepareDataStage,
  standardTrainingStage,
  nonTargetLabelsStage,
  teacherTrainingStage,
  ntTrainingStage,
  mutualLearningStage,
  splitPlanStage,
  splitDistillationStage,
  defenseStage,
] as const;

/** The names the stage cache files its entries under (cache/<stage>/...), e.g. for `ntml store export --stages`. */
export const cachedStageNames: string[] = stageDeclarations.map((s) => s.stage);

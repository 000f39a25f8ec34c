/** Shapes that cross the workflow/activity boundary: references and small summaries, never tensors. */
import type { ArtifactRef } from '../store/types';
import type { DataSummary } from '../core/experiment/prepareData';
import type { EpochRecord } from '../core/train/epochLoop';

export type { ArtifactRef, DataSummary, EpochRecord };

export interface DataRefs {
  train: ArtifactRef;
  cleanFit: ArtifactRef;
  cleanHeldOut: ArtifactRef;
  test?: ArtifactRef;
  backdoorTest?: ArtifactRef;
  /** poisoning record (indices stored as an artifact) */
  poison?: { attack: string; poisonedCount: number; poisonedIndices: ArtifactRef; triggerParameters: Record<string, unknown> };
  /** a training-controlled attack (Input-Aware) still to run: standard training is the attacker's run */
  attackTraining?: { attack: string; eligibleIndices: ArtifactRef; attackSeed: number };
  summary: DataSummary;
  cached?: boolean;
  /** a learned trigger continued from its checkpoint after this many rounds (0 or absent: from the start) */
  resumedFromEpoch?: number;
  skippedCheckpoints?: string[];
}

export interface TrainedModel {
  model: ArtifactRef;
  history: EpochRecord[];
  seconds: number;
  resumedFromEpoch: number;
  skippedCheckpoints: string[];
  /** true when the stage's output came from the stage cache */
  cached?: boolean;
  /** histories of phases before `history` (an Input-Aware run's mask phase), by phase; reported as "stage:phase" */
  phaseHistories?: Record<string, EpochRecord[]>;
  /**
   * A training-controlled attack's run returns the data the rest of the pipeline uses: the
   * poisoned training set it materialised, the triggered test set and the poison record.
   */
  data?: DataRefs;
}

export interface MutualLearningOutput extends TrainedModel {
  teacher: ArtifactRef;
  /** epoch whose student the held-out selection kept (0: the NT student; a refit: its last epoch) */
  selectedEpoch: number;
}

export interface SplitDistillationOutput extends TrainedModel {
  selectedEpoch: number;
}

export interface DefenseOutput {
  model: ArtifactRef;
  /** the defense's name in reports, e.g. "FP" or "I-BAU (first-order)" */
  defense: string;
  history: Record<string, EpochRecord[]>;
  selectionRule: string;
  details: Record<string, number | string | boolean | number[]>;
  /** phases resumed from a checkpoint: phase -> epoch */
  resumedFrom: Record<string, number>;
  skippedCheckpoints: string[];
  seconds: number;
  cached?: boolean;
}

export interface SplitPlanOutput {
  kept: ArtifactRef;
  estimatedTarget: number;
  excess: number[];
  keptFraction: number;
  seconds: number;
  cached?: boolean;
}

export interface Metrics {
  acc: number;
  asr?: number;
  ra?: number;
  meanTrueClassProbabilityOnTriggered?: number;
}

export interface StageTiming {
  stage: string;
  seconds: number;
  resumedFromEpoch?: number;
  /** reused from an earlier run with the same inputs (seconds are the original run's) */
  cached?: boolean;
  /** the stage-cache entry this stage read or wrote (cache/<stage>/<key>); absent for uncached stages */
  cacheKey?: string;
}

export interface PurifyReport {
  runId: string;
  name?: string;
  mode: 'evaluation' | 'protection';
  seed: number;
  data: DataSummary;
  attack?: string;
  /** the defense's display name ("NT-ML", "FT", "I-BAU (first-order)", "No defense") */
  defense: string;
  /** the defense's full config (baselines) */
  defenseConfig?: Record<string, unknown>;
  /** NT-ML fills ntStudent and teacher; the baselines only standard and final */
  metrics: ModelMetricsSet;
  der?: number;
  split?: { estimatedTarget: number; keptFraction: number };
  /** refitOnAllClean: the epochs chosen on the held-out slice, replayed on all of D_c */
  refit?: { mlEpochs: number; splitEpochs?: number };
  /** numbers a baseline reports: pruned neurons, thresholds, selected round */
  defenseDetails?: Record<string, number | string | boolean | number[]>;
  stages: StageTiming[];
  histories: Record<string, EpochRecord[]>;
  skippedCheckpoints: string[];
  models: { standard: ArtifactRef; ntStudent?: ArtifactRef; final: ArtifactRef };
  selectionRule: string;
  backend: string;
}

export interface ModelMetricsSet {
  standard: Metrics;
  ntStudent?: Metrics;
  teacher?: Metrics;
  final: Metrics;
}

export interface PurifyOutcome {
  report: ArtifactRef;
  markdown: ArtifactRef;
  purifiedModel: ArtifactRef;
  summary: Pick<PurifyReport, 'metrics' | 'der' | 'split' | 'stages' | 'defense'>;
}

export interface PurifyProgress {
  stage: string;
  completed: string[];
  startedAt: string;
}

export interface SweepCellRecord {
  sweep: string;
  cellId: string;
  axes: { attack: string; defense: string; seed: number; cleanBudget: string; model: string };
  config: Record<string, unknown>;
  status: 'completed' | 'failed';
  error?: string;
  workflowId: string;
  /** workflow time (ms since epoch) when the cell's child workflow started and ended */
  startedAt: number;
  endedAt: number;
  metrics?: PurifyOutcome['summary']['metrics'];
  der?: number;
  /** NT-ML's split distillation (absent for the baselines and in records written before it was kept) */
  split?: PurifyOutcome['summary']['split'];
  stages?: StageTiming[];
  report?: ArtifactRef;
  purifiedModel?: ArtifactRef;
}

export interface SweepProgress {
  sweep: string;
  total: number;
  done: number;
  running: string[];
  /** the running cells with their labels and child workflow ids (for per-cell progress) */
  runningCells?: Array<{ id: string; label: string; workflowId: string }>;
  failed: number;
  /** cells found finished in the store (earlier runs of this spec) */
  reused: number;
  etaSeconds?: number;
  continuedAsNew: number;
}

export interface SweepOutcome {
  sweep: string;
  total: number;
  completed: number;
  failed: Array<{ cellId: string; error: string }>;
  reused: number;
}

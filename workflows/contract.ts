/**
 * The Temporal contract: everything a client, a worker and a workflow must agree on. Task
 * queue names, query and signal names, the workflows' inputs and outputs, and the shapes
 * that cross the workflow/activity boundary (references and small summaries, never tensors)
 * live here and nowhere else.
 *
 * Workflow code imports this module, so it stays pure: constants and types only (the type
 * imports below vanish from the compiled JavaScript and never reach the workflow bundle).
 */
import type { ArtifactRef } from '../store/types';
import type { DataSummary } from '../core/experiment/prepareData';
import type { EpochRecord } from '../core/train/epochLoop';
import type { Metrics, ModelMetricsSet, PurifyReport, SplitSummary, StageTiming, SweepCellRecord } from '../core/report/records';

export type { ArtifactRef, DataSummary, EpochRecord, Metrics, ModelMetricsSet, PurifyReport, SplitSummary, StageTiming, SweepCellRecord };

/** Workflow tasks (deterministic orchestration only). */
export const ORCHESTRATION_TASK_QUEUE = 'ntml-orchestration';
/** Activities: the training worker runs one per device slot. */
export const TRAINING_TASK_QUEUE = 'ntml-training';

/** Every workflow answers this query with its progress (PurifyProgress, SweepProgress, ...). */
export const PROGRESS_QUERY = 'progress';
/** A purify cell tells its parent sweep (with its own workflow id) that the stages its group shares are stored. */
export const SHARED_STAGES_READY_SIGNAL = 'sharedStagesReady';

/** The audit workflow's input: a request (schemas/audit.ts), parsed again in the workflow. */
export interface AuditInput {
  /** an AuditRequest; parsed in the workflow too, so a schedule's stored input obeys the same rules */
  request: unknown;
  options?: {
    trainingTaskQueue?: string;
    /** how long a check may go without a heartbeat before it is retried elsewhere */
    heartbeatTimeoutSeconds?: number;
  };
}

/** What the audit workflow's progress query answers. */
export interface AuditProgress {
  stage: string;
  completed: string[];
}

export interface PurifyInput {
  config: unknown;
  options?: {
    /** the activities' task queue (default TRAINING_TASK_QUEUE) */
    trainingTaskQueue?: string;
    /** how long a training activity may go without a heartbeat before it is retried elsewhere */
    heartbeatTimeoutSeconds?: number;
    /** attempts per stage before the run fails */
    maximumAttempts?: number;
    /** reuse stage outputs of earlier runs with identical inputs (default true) */
    cache?: boolean;
    /**
     * Signal the parent workflow (SHARED_STAGES_READY_SIGNAL, with this run's workflow id) once
     * the stages cells of a sweep share (data, backdoored model) are stored: the sweep then
     * starts the rest of the group instead of waiting for this whole cell.
     */
    announceSharedStages?: boolean;
  };
}

export interface SweepInput {
  spec: unknown;
  /** passed to every cell's purify workflow; the cells run on the sweep's own task queue */
  options?: PurifyInput['options'];
  /** carried across continue-as-new */
  state?: SweepState;
}

export interface SweepState {
  finished: string[];
  failed: Array<{ cellId: string; error: string }>;
  reused: number;
  continuedAsNew: number;
  /** wall time of each completed cell, ms (for the ETA) */
  durations: number[];
}

/** Where a reused learned trigger came from: the prepareData computation that learned it. */
export interface LearnedTriggerOrigin {
  stage: 'prepareData';
  /** that computation's key, cache/prepareData/<key> */
  key: string;
  workflowId?: string;
  /** set by the backfill (bench/learnedTriggers.ts), which knows the cell */
  sweep?: string;
  cellId?: string;
}

export interface DataRefs {
  train: ArtifactRef;
  cleanFit: ArtifactRef;
  cleanHeldOut: ArtifactRef;
  test?: ArtifactRef;
  backdoorTest?: ArtifactRef;
  /** poisoning record (indices stored as an artifact) */
  poison?: {
    attack: string;
    poisonedCount: number;
    poisonedIndices: ArtifactRef;
    /** WaNet's noise-mode inputs (their true labels kept): split distillation's diagnostics report them apart */
    crossIndices?: ArtifactRef;
    triggerParameters: Record<string, unknown>;
    /** a learned trigger's key, cache/learnedTrigger/<key> (activities/learnedTriggerCache.ts) */
    triggerKey?: string;
    /** set when the trigger was not learned here but taken from that entry: who learned it */
    triggerReusedFrom?: LearnedTriggerOrigin;
  };
  /** a training-controlled attack (Input-Aware) still to run: standard training is the attacker's run */
  attackTraining?: { attack: string; eligibleIndices: ArtifactRef; attackSeed: number };
  /**
   * Evaluation mode: where the records came from, `{training, cleanFit, cleanHeldOut}` (JSON,
   * core's SourceIndices) as indices into the loaded training split, so a stored run can show
   * that no clean-budget image reached a training stage (docs/protocol.md)
   */
  sourceIndices?: ArtifactRef;
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
  /** the classes that shared the largest excess (t^ drawn among them when several) */
  tiedClasses?: number[];
  /** the plan as the report keeps it: t^, the kept share, the evidence and any fallback */
  summary?: SplitSummary;
  seconds: number;
  cached?: boolean;
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

export interface SweepProgress {
  sweep: string;
  total: number;
  done: number;
  running: string[];
  /** the running cells with their labels, child workflow ids (for per-cell progress) and launch times (ms since the epoch) */
  runningCells?: Array<{ id: string; label: string; workflowId: string; startedAt?: number }>;
  failed: number;
  /** cells found finished in the store (earlier runs of this spec) */
  reused: number;
  /** the cells this run finished and their mean wall time: the ETA's cost of a cell (cli/sweepEta.ts) */
  finishedCells?: { count: number; meanMs: number };
  /** cells run at once (the spec's) */
  concurrency?: number;
  /** the estimate workers before finishedCells sent (not started cells only; running ones at full cost) */
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

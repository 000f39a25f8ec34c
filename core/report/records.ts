/**
 * The stored records the reports are built from: a purify run's report (report.json) and a
 * sweep cell's record. Plain data, no Temporal: the activities write them, core/report renders
 * them, and workflows/contract.ts re-exports them as part of the workflow boundary.
 */
import type { ArtifactRef } from '../../store/types';
import type { DataSummary } from '../experiment/prepareData';
import type { EpochRecord } from '../train/epochLoop';

/** What NT-ML's split distillation reports: the estimated target class and the kept share of the training inputs. */
export interface SplitSummary {
  estimatedTarget: number;
  keptFraction: number;
  /**
   * the classes that shared the largest excess; t^ was drawn among them when there are several
   * (absent in records written before ties were kept)
   */
  tiedClasses?: number[];
  /** t^'s excess (inputs f_std assigns to t^ minus the student after ML) as a share of the training set */
  excessShare?: number;
  /** training inputs labelled t^, assigned to t^ by f_std and not by the student after ML */
  suspectedCount?: number;
  /** f_std's share of t^ on the training set minus on the clean set */
  overPrediction?: number;
  /** why split distillation was skipped (weak evidence for t^): the result is mutual learning alone */
  fallback?: string;
}

export interface Metrics {
  acc: number;
  asr?: number;
  ra?: number;
  meanTrueClassProbabilityOnTriggered?: number;
}

export interface ModelMetricsSet {
  standard: Metrics;
  ntStudent?: Metrics;
  teacher?: Metrics;
  final: Metrics;
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
  split?: SplitSummary;
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
  metrics?: ModelMetricsSet;
  der?: number;
  /** NT-ML's split distillation (absent for the baselines and in records written before it was kept) */
  split?: SplitSummary;
  stages?: StageTiming[];
  report?: ArtifactRef;
  purifiedModel?: ArtifactRef;
}

/**
 * purify: NT-ML (or a baseline defense) as a durable pipeline. Deterministic orchestration
 * only: every stage is an activity on the training task queue that reads and writes the
 * artifact store. The NT-ML steps follow core/ntml/steps.ts, the order the in-process
 * pipeline (core/ntml/purify.ts) follows too.
 */
import { ApplicationFailure, defineQuery, defineSignal, getExternalWorkflowHandle, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type * as activities from '../activities';
import { PurifyConfig, formatIssues } from '../schemas/purify';
import { defenseDisplayName } from '../core/defenses/configs';
import { ntmlSteps, type NtmlStep } from '../core/ntml/steps';
import { defenseEffectivenessRating } from '../core/metrics';
import {
  PROGRESS_QUERY,
  SHARED_STAGES_READY_SIGNAL,
  TRAINING_TASK_QUEUE,
  type ArtifactRef,
  type DataRefs,
  type DefenseOutput,
  type EpochRecord,
  type ModelMetricsSet,
  type MutualLearningOutput,
  type PurifyInput,
  type PurifyOutcome,
  type PurifyProgress,
  type PurifyReport,
  type SplitPlanOutput,
  type SplitSummary,
  type StageTiming,
  type TrainedModel,
} from './contract';

export const sharedStagesReadySignal = defineSignal<[workflowId: string]>(SHARED_STAGES_READY_SIGNAL);

export const purifyProgressQuery = defineQuery<PurifyProgress>(PROGRESS_QUERY);

export async function purify(input: PurifyInput): Promise<PurifyOutcome> {
  const cfg = parseConfig(input.config);
  const options = input.options ?? {};
  const log = new StageLog();
  setHandler(purifyProgressQuery, () => log.progress);
  const run: Run = { cfg, acts: stageActivities(options), log, config: input.config, cache: options.cache ?? true };

  // a learned trigger (Narcissus) trains a surrogate and optimises for hours at the paper's
  // budget: the training stages' time limit, and it checkpoints like them
  let data = await log.timed('prepareData', () => run.acts.training.prepareData({ config: run.config, cache: run.cache }), (d) => d);
  const standard = await log.run('standardTraining', () =>
    cfg.standardModel
      ? run.acts.quick.importStandardModel({ config: run.config, data })
      : run.acts.training.trainStandardModel({ config: run.config, data, cache: run.cache }),
  );
  // a training-controlled attack (Input-Aware) poisoned the data during its own training run
  if (standard.data) data = standard.data;
  if (options.announceSharedStages) await announceSharedStages();

  const defended =
    cfg.defense.name === 'ntml'
      ? await ntml(run, data, standard.model)
      : cfg.defense.name === 'none'
        ? { final: standard.model, selectionRule: 'no defense: the backdoored model is reported as it is' }
        : await baseline(run, data, standard.model);

  const models = { standard: standard.model, ...defended.extraModels, final: defended.final };
  const evaluated = await log.timed('evaluation', () => run.acts.quick.evaluateModels({ data, models }));
  const metrics: ModelMetricsSet = { standard: evaluated.standard, ntStudent: evaluated.ntStudent, teacher: evaluated.teacher, final: evaluated.final };
  const der = derOf(metrics);

  log.begin('report');
  const defense = defenseDisplayName(cfg.defense);
  const report = await run.acts.quick.writePurifyReport({
    report: {
      runId: workflowInfo().workflowId,
      name: cfg.name,
      mode: cfg.mode,
      seed: cfg.seed,
      data: data.summary,
      attack: cfg.attack ? JSON.stringify(cfg.attack) : undefined,
      defense,
      defenseConfig: cfg.defense.name === 'ntml' || cfg.defense.name === 'none' ? undefined : { ...cfg.defense },
      defenseDetails: defended.details,
      metrics,
      der,
      split: defended.split,
      refit: defended.refit,
      stages: log.stages,
      histories: log.histories,
      skippedCheckpoints: log.skipped,
      models: { standard: standard.model, ntStudent: defended.extraModels?.ntStudent, final: defended.final },
      selectionRule: defended.selectionRule,
    },
  });
  log.progress.stage = 'done';
  return {
    report: report.report,
    markdown: report.markdown,
    purifiedModel: defended.final,
    summary: { metrics, der, split: defended.split, stages: log.stages, defense },
  };
}

/** What a defense hands to evaluation and the report. */
interface Defended {
  final: ArtifactRef;
  selectionRule: string;
  split?: SplitSummary;
  refit?: PurifyReport['refit'];
  /** models evaluated besides the standard and final ones (NT-ML: the NT student and the teacher) */
  extraModels?: { ntStudent: ArtifactRef; teacher: ArtifactRef };
  details?: DefenseOutput['details'];
}

interface Run {
  cfg: PurifyConfig;
  acts: ReturnType<typeof stageActivities>;
  log: StageLog;
  /** the raw config: every activity parses it again itself */
  config: unknown;
  cache: boolean;
}

function parseConfig(raw: unknown): PurifyConfig {
  const parsed = PurifyConfig.safeParse(raw);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`invalid purify config:\n  ${formatIssues(parsed.error).join('\n  ')}`, 'InvalidConfig');
  }
  return parsed.data;
}

function stageActivities(options: NonNullable<PurifyInput['options']>) {
  const base = {
    taskQueue: options.trainingTaskQueue ?? TRAINING_TASK_QUEUE,
    heartbeatTimeout: (options.heartbeatTimeoutSeconds ?? 120) * 1000,
    retry: { maximumAttempts: options.maximumAttempts ?? 5, initialInterval: 1000, backoffCoefficient: 2 },
  };
  return {
    training: proxyActivities<typeof activities>({ ...base, startToCloseTimeout: '12h' }),
    // short stages heartbeat every second too, so a lost worker is noticed within the heartbeat timeout
    quick: proxyActivities<typeof activities>({ ...base, startToCloseTimeout: '1h' }),
  };
}

/** Tells the parent sweep that this cell's shared stages (data, backdoored model) are stored. */
async function announceSharedStages(): Promise<void> {
  const parent = workflowInfo().parent;
  if (!parent) return;
  try {
    await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(sharedStagesReadySignal, workflowInfo().workflowId);
  } catch {
    // a parent that has gone away has nobody left to start: the cell itself goes on
  }
}

/** NT-ML after standard training: the steps of core/ntml/steps.ts, one activity each. */
async function ntml(run: Run, data: DataRefs, standard: ArtifactRef): Promise<Defended> {
  const { cfg, log, config, cache } = run;
  const { training, quick } = run.acts;
  const nt = cfg.ntml;
  const s: {
    labels?: ArtifactRef;
    teacher: ArtifactRef;
    ntStudent?: ArtifactRef;
    ml?: MutualLearningOutput;
    plan?: SplitPlanOutput;
    final?: ArtifactRef;
    split?: SplitSummary;
    splitEpochs?: number;
    refit?: PurifyReport['refit'];
  } = { teacher: standard };
  // the refit replays mutual learning and split distillation from the same starting weights
  const splitPlan = (stage: string) => async () => {
    s.plan = await log.run(stage, () => quick.planSplit({ config, data, student: s.ml!.model, teacher: s.ml!.teacher, standard, cache }));
    const { estimatedTarget, keptFraction, tiedClasses } = s.plan;
    s.split = s.plan.summary ?? { estimatedTarget, keptFraction, ...(tiedClasses ? { tiedClasses } : {}) };
  };
  const steps: Record<NtmlStep, () => Promise<void>> = {
    nonTargetLabels: async () => {
      s.labels = (await log.run('nonTargetLabels', () => quick.computeNonTargetLabels({ config, data, standard, cache }))).labels;
    },
    teacherTraining: async () => {
      s.teacher = (await log.run('teacherTraining', () => training.trainTeacher({ config, data, standard, cache }))).model;
    },
    ntTraining: async () => {
      s.ntStudent = (await log.run('ntTraining', () => training.trainNonTargetStudent({ config, data, standard, labels: s.labels!, cache }))).model;
    },
    mutualLearning: async () => {
      s.ml = await log.run('mutualLearning', () => training.mutualLearning({ config, data, student: s.ntStudent!, teacher: s.teacher, cache }));
      s.final = s.ml.model;
    },
    splitPlan: splitPlan('splitPlan'),
    splitDistillation: async () => {
      const distilled = await log.run('splitDistillation', () =>
        training.splitDistillation({ config, data, student: s.ml!.model, standard, kept: s.plan!.kept, target: s.plan!.estimatedTarget, cache }),
      );
      s.final = distilled.model;
      s.splitEpochs = distilled.selectedEpoch;
    },
    mutualLearningRefit: async () => {
      // the held-out slice chose the epochs; replay them from the same start on all of D_c
      s.refit = { mlEpochs: s.ml!.selectedEpoch, splitEpochs: s.splitEpochs };
      const refitEpochs = s.refit.mlEpochs;
      s.ml = await log.run('mutualLearningRefit', () =>
        training.mutualLearning({ config, data, student: s.ntStudent!, teacher: s.teacher, refitEpochs, cache }),
      );
      s.final = s.ml.model;
    },
    splitPlanRefit: splitPlan('splitPlanRefit'),
    splitDistillationRefit: async () => {
      const refitEpochs = s.refit!.splitEpochs;
      const distilled = await log.run('splitDistillationRefit', () =>
        training.splitDistillation({ config, data, student: s.ml!.model, standard, kept: s.plan!.kept, refitEpochs, target: s.plan!.estimatedTarget, cache }),
      );
      s.final = distilled.model;
    },
  };
  for (const step of ntmlSteps(nt)) await steps[step]();
  return {
    final: s.final!,
    split: s.split,
    refit: s.refit,
    selectionRule: ntmlSelectionRule(cfg, data, s.refit),
    extraModels: { ntStudent: s.ntStudent!, teacher: s.ml!.teacher },
  };
}

/** How NT-ML chose its checkpoints, in the report's words. */
function ntmlSelectionRule(cfg: PurifyConfig, data: DataRefs, refit: PurifyReport['refit']): string {
  const nt = cfg.ntml;
  const selected = [
    ...(nt.mlSelect === 'heldOut' ? ['mutual learning'] : []),
    ...(nt.ml === 'split' && nt.splitSelect === 'heldOut' ? ['split distillation'] : []),
  ].join(' and ');
  const rule = selected
    ? `checkpoints of ${selected} chosen by accuracy on the held-out ${Math.round(nt.heldOutFraction * 100)}% of the clean set (never the test set); other stages keep their last epoch`
    : 'every stage keeps its last epoch (no selection)';
  if (!refit) return rule;
  return (
    rule +
    `; then both stages replayed from their starting weights on all ${data.summary.cleanBudget} clean samples for the chosen epochs ` +
    `(mutual learning ${refit.mlEpochs}${refit.splitEpochs === undefined ? '' : `, split distillation ${refit.splitEpochs}`}), without selection`
  );
}

/** A baseline defense (FT, FP, NAD, ANP, I-BAU): one activity from the stored backdoored model. */
async function baseline(run: Run, data: DataRefs, backdoored: ArtifactRef): Promise<Defended> {
  run.log.begin('defense');
  const defended = await run.acts.training.runDefense({ config: run.config, data, backdoored, cache: run.cache });
  run.log.doneDefense(defended);
  return { final: defended.model, details: defended.details, selectionRule: defended.selectionRule };
}

/** DER of the final model against the backdoored one, where the run has a backdoor to measure. */
function derOf(m: ModelMetricsSet): number | undefined {
  if (m.standard.asr === undefined || m.final.asr === undefined) return undefined;
  return defenseEffectivenessRating({ accBefore: m.standard.acc, asrBefore: m.standard.asr, accAfter: m.final.acc, asrAfter: m.final.asr });
}

type StageOutput = Partial<Pick<TrainedModel, 'history' | 'phaseHistories' | 'resumedFromEpoch' | 'skippedCheckpoints' | 'cached'>>;

/** The progress the query reports, and each stage's timing, histories and skipped checkpoints for the report. */
class StageLog {
  readonly progress: PurifyProgress = { stage: 'prepareData', completed: [], startedAt: new Date().toISOString() };
  readonly stages: StageTiming[] = [];
  readonly histories: Record<string, EpochRecord[]> = {};
  readonly skipped: string[] = [];

  begin(stage: string): void {
    this.progress.stage = stage;
  }

  /** A stage whose activity reports its own duration. */
  async run<T extends StageOutput & { seconds: number }>(stage: string, call: () => Promise<T>): Promise<T> {
    this.begin(stage);
    const out = await call();
    this.done(stage, out.seconds, out);
    return out;
  }

  /** A stage timed here, in workflow time; `details` picks what its output says about resume and cache. */
  async timed<T>(stage: string, call: () => Promise<T>, details?: (out: T) => StageOutput): Promise<T> {
    this.begin(stage);
    const t0 = Date.now();
    const out = await call();
    this.done(stage, (Date.now() - t0) / 1000, details?.(out));
    return out;
  }

  doneDefense(d: DefenseOutput): void {
    this.progress.completed.push('defense');
    const cacheKey = (d as { cacheKey?: string }).cacheKey;
    this.stages.push({ stage: `defense (${d.defense})`, seconds: d.seconds, cached: d.cached, resumedFromEpoch: Object.values(d.resumedFrom)[0], ...(cacheKey ? { cacheKey } : {}) });
    for (const [phase, h] of Object.entries(d.history)) this.histories[`defense:${phase}`] = h;
    this.skipped.push(...d.skippedCheckpoints.map((s) => `defense: ${s}`));
  }

  private done(stage: string, seconds: number, t?: StageOutput): void {
    this.progress.completed.push(stage);
    // the stage-cache key (activities add it at run time) lets `ntml store export` find a cell's entries
    const cacheKey = (t as { cacheKey?: string } | undefined)?.cacheKey;
    this.stages.push({ stage, seconds, resumedFromEpoch: t?.resumedFromEpoch, cached: t?.cached, ...(cacheKey ? { cacheKey } : {}) });
    if (t?.history) this.histories[stage] = t.history;
    for (const [phase, h] of Object.entries(t?.phaseHistories ?? {})) this.histories[`${stage}:${phase}`] = h;
    if (t?.skippedCheckpoints) this.skipped.push(...t.skippedCheckpoints.map((s) => `${stage}: ${s}`));
  }
}

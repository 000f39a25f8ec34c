/**
 * purify: NT-ML as a durable pipeline. Deterministic orchestration only: every stage is an
 * activity on the training task queue that reads and writes the artifact store.
 */
import { ApplicationFailure, defineQuery, defineSignal, getExternalWorkflowHandle, proxyActivities, setHandler, workflowInfo } from '@temporalio/workflow';
import type * as activities from '../activities';
import { PurifyConfig, formatIssues } from '../schemas/purify';
import { defenseDisplayName } from '../core/defenses/configs';
import type { ArtifactRef, DefenseOutput, ModelMetricsSet, PurifyOutcome, PurifyProgress, PurifyReport, StageTiming, TrainedModel, EpochRecord } from './types';
import { TRAINING_TASK_QUEUE } from './contract';
export { TRAINING_TASK_QUEUE };

export interface PurifyInput {
  config: unknown;
  options?: {
    trainingTaskQueue?: string;
    /** how long a training activity may go without a heartbeat before it is retried elsewhere */
    heartbeatTimeoutSeconds?: number;
    /** attempts per stage before the run fails */
    maximumAttempts?: number;
    /** reuse stage outputs of earlier runs with identical inputs (default true) */
    cache?: boolean;
    /**
     * Signal the parent workflow (`sharedStagesReady`, with this run's workflow id) once the
     * stages cells of a sweep share (data, backdoored model) are stored: the sweep then starts
     * the rest of the group instead of waiting for this whole cell.
     */
    announceSharedStages?: boolean;
  };
}

export const sharedStagesReadySignal = defineSignal<[workflowId: string]>('sharedStagesReady');

export const purifyProgressQuery = defineQuery<PurifyProgress>('progress');

export async function purify(input: PurifyInput): Promise<PurifyOutcome> {
  const parsed = PurifyConfig.safeParse(input.config);
  if (!parsed.success) {
    throw ApplicationFailure.nonRetryable(`invalid purify config:\n  ${formatIssues(parsed.error).join('\n  ')}`, 'InvalidConfig');
  }
  const cfg = parsed.data;
  const defenseLabel = defenseDisplayName(cfg.defense);
  const config = input.config;
  const cache = input.options?.cache ?? true;
  const options = input.options ?? {};
  const retry = { maximumAttempts: options.maximumAttempts ?? 5, initialInterval: 1000, backoffCoefficient: 2 };
  const taskQueue = options.trainingTaskQueue ?? TRAINING_TASK_QUEUE;
  const training = proxyActivities<typeof activities>({
    taskQueue,
    startToCloseTimeout: '12h',
    heartbeatTimeout: (options.heartbeatTimeoutSeconds ?? 120) * 1000,
    retry,
  });
  // short stages heartbeat every second too, so a lost worker is noticed within the heartbeat timeout
  const quick = proxyActivities<typeof activities>({
    taskQueue,
    startToCloseTimeout: '1h',
    heartbeatTimeout: (options.heartbeatTimeoutSeconds ?? 120) * 1000,
    retry,
  });

  const progress: PurifyProgress = { stage: 'prepareData', completed: [], startedAt: new Date().toISOString() };
  setHandler(purifyProgressQuery, () => progress);
  const stages: StageTiming[] = [];
  const histories: Record<string, EpochRecord[]> = {};
  const skipped: string[] = [];
  const begin = (stage: string) => {
    progress.stage = stage;
  };
  const done = (stage: string, seconds: number, t?: Partial<TrainedModel>) => {
    progress.completed.push(stage);
    // the stage-cache key (activities add it at run time) lets `ntml store export` find a cell's entries
    const cacheKey = (t as { cacheKey?: string } | undefined)?.cacheKey;
    stages.push({ stage, seconds, resumedFromEpoch: t?.resumedFromEpoch, cached: t?.cached, ...(cacheKey ? { cacheKey } : {}) });
    if (t?.history) histories[stage] = t.history;
    for (const [phase, h] of Object.entries(t?.phaseHistories ?? {})) histories[`${stage}:${phase}`] = h;
    if (t?.skippedCheckpoints) skipped.push(...t.skippedCheckpoints.map((s) => `${stage}: ${s}`));
  };

  begin('prepareData');
  const t0 = Date.now();
  // a learned trigger (Narcissus) trains a surrogate and optimises for hours at the paper's
  // budget: the training stages' time limit, and it checkpoints like them
  let data = await training.prepareData({ config, cache });
  done('prepareData', (Date.now() - t0) / 1000, data);

  begin('standardTraining');
  const standard = cfg.standardModel
    ? await quick.importStandardModel({ config, data })
    : await training.trainStandardModel({ config, data, cache });
  done('standardTraining', standard.seconds, standard);
  // a training-controlled attack (Input-Aware) poisoned the data during its own training run
  if (standard.data) data = standard.data;
  const parent = workflowInfo().parent;
  if (options.announceSharedStages && parent) {
    try {
      await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(sharedStagesReadySignal, workflowInfo().workflowId);
    } catch {
      // a parent that has gone away has nobody left to start: the cell itself goes on
    }
  }

  let final: ArtifactRef;
  let split: { estimatedTarget: number; keptFraction: number } | undefined;
  let refit: PurifyReport['refit'];
  let extraModels: Record<string, ArtifactRef> = {};
  let defenseDetails: DefenseOutput['details'] | undefined;
  const selected = [
    ...(cfg.ntml.mlSelect === 'heldOut' ? ['mutual learning'] : []),
    ...(cfg.ntml.ml === 'split' && cfg.ntml.splitSelect === 'heldOut' ? ['split distillation'] : []),
  ].join(' and ');
  let selectionRule = selected
    ? `checkpoints of ${selected} chosen by accuracy on the held-out ${Math.round(
        cfg.ntml.heldOutFraction * 100,
      )}% of the clean set (never the test set); other stages keep their last epoch`
    : 'every stage keeps its last epoch (no selection)';
  if (cfg.defense.name === 'ntml') {
    begin('nonTargetLabels');
    const labels = await quick.computeNonTargetLabels({ config, data, standard: standard.model, cache });
    done('nonTargetLabels', labels.seconds, labels);

    let teacher = standard.model;
    if (cfg.ntml.teacher === 'selfDistilled') {
      begin('teacherTraining');
      const t = await training.trainTeacher({ config, data, standard: standard.model, cache });
      done('teacherTraining', t.seconds, t);
      teacher = t.model;
    }

    begin('ntTraining');
    const ntStudent = await training.trainNonTargetStudent({ config, data, standard: standard.model, labels: labels.labels, cache });
    done('ntTraining', ntStudent.seconds, ntStudent);

    begin('mutualLearning');
    const ml = await training.mutualLearning({ config, data, student: ntStudent.model, teacher, cache });
    done('mutualLearning', ml.seconds, ml);

    final = ml.model;
    let selectedSplitEpochs: number | undefined;
    if (cfg.ntml.ml === 'split') {
      begin('splitPlan');
      const plan = await quick.planSplit({ config, data, student: ml.model, teacher: ml.teacher, standard: standard.model, cache });
      done('splitPlan', plan.seconds, plan);
      split = { estimatedTarget: plan.estimatedTarget, keptFraction: plan.keptFraction };
      begin('splitDistillation');
      const distilled = await training.splitDistillation({ config, data, student: ml.model, standard: standard.model, kept: plan.kept, cache });
      done('splitDistillation', distilled.seconds, distilled);
      final = distilled.model;
      selectedSplitEpochs = distilled.selectedEpoch;
    }
    let teacherAfterMl = ml.teacher;
    if (cfg.ntml.refitOnAllClean) {
      // the held-out slice chose the epochs; replay them from the same start on all of D_c
      refit = { mlEpochs: ml.selectedEpoch, splitEpochs: selectedSplitEpochs };
      begin('mutualLearningRefit');
      const mlRefit = await training.mutualLearning({ config, data, student: ntStudent.model, teacher, refitEpochs: refit.mlEpochs, cache });
      done('mutualLearningRefit', mlRefit.seconds, mlRefit);
      final = mlRefit.model;
      teacherAfterMl = mlRefit.teacher;
      if (refit.splitEpochs !== undefined) {
        begin('splitPlanRefit');
        const plan = await quick.planSplit({ config, data, student: mlRefit.model, teacher: mlRefit.teacher, standard: standard.model, cache });
        done('splitPlanRefit', plan.seconds, plan);
        split = { estimatedTarget: plan.estimatedTarget, keptFraction: plan.keptFraction };
        begin('splitDistillationRefit');
        const distilled = await training.splitDistillation({
          config,
          data,
          student: mlRefit.model,
          standard: standard.model,
          kept: plan.kept,
          refitEpochs: refit.splitEpochs,
          cache,
        });
        done('splitDistillationRefit', distilled.seconds, distilled);
        final = distilled.model;
      }
      selectionRule +=
        `; then both stages replayed from their starting weights on all ${data.summary.cleanBudget} clean samples for the chosen epochs ` +
        `(mutual learning ${refit.mlEpochs}${refit.splitEpochs === undefined ? '' : `, split distillation ${refit.splitEpochs}`}), without selection`;
    }
    extraModels = { ntStudent: ntStudent.model, teacher: teacherAfterMl };
  } else if (cfg.defense.name === 'none') {
    final = standard.model;
    selectionRule = 'no defense: the backdoored model is reported as it is';
  } else {
    begin('defense');
    const defended = await training.runDefense({ config, data, backdoored: standard.model, cache });
    progress.completed.push('defense');
    const defenseKey = (defended as { cacheKey?: string }).cacheKey;
    stages.push({ stage: `defense (${defended.defense})`, seconds: defended.seconds, cached: defended.cached, resumedFromEpoch: Object.values(defended.resumedFrom)[0], ...(defenseKey ? { cacheKey: defenseKey } : {}) });
    for (const [phase, h] of Object.entries(defended.history)) histories[`defense:${phase}`] = h;
    skipped.push(...defended.skippedCheckpoints.map((s) => `defense: ${s}`));
    final = defended.model;
    defenseDetails = defended.details;
    selectionRule = defended.selectionRule;
  }

  begin('evaluation');
  const t1 = Date.now();
  const metrics = await quick.evaluateModels({
    data,
    models: { standard: standard.model, ...extraModels, final },
  });
  done('evaluation', (Date.now() - t1) / 1000);
  const m: ModelMetricsSet = { standard: metrics.standard, ntStudent: metrics.ntStudent, teacher: metrics.teacher, final: metrics.final };
  let der: number | undefined;
  if (m.standard.asr !== undefined && m.final.asr !== undefined) {
    const dAsr = Math.max(0, m.standard.asr - m.final.asr) / 100;
    const dAcc = Math.max(0, m.standard.acc - m.final.acc) / 100;
    der = ((dAsr - dAcc + 1) / 2) * 100;
  }

  begin('report');
  const report = await quick.writePurifyReport({
    report: {
      runId: workflowInfo().workflowId,
      name: cfg.name,
      mode: cfg.mode,
      seed: cfg.seed,
      data: data.summary,
      attack: cfg.attack ? JSON.stringify(cfg.attack) : undefined,
      defense: defenseLabel,
      defenseConfig: cfg.defense.name === 'ntml' || cfg.defense.name === 'none' ? undefined : { ...cfg.defense },
      defenseDetails,
      metrics: m,
      der,
      split,
      refit,
      stages,
      histories,
      skippedCheckpoints: skipped,
      models: { standard: standard.model, ntStudent: extraModels.ntStudent, final },
      selectionRule,
    },
  });
  progress.stage = 'done';
  return { report: report.report, markdown: report.markdown, purifiedModel: final, summary: { metrics: m, der, split, stages, defense: defenseLabel } };
}

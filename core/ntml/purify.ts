/**
 * NT-ML end to end in one process, for library use and benchmarks:
 *   const result = await purify(prepared, config)
 * The Temporal workflow runs the same stages one activity each, with storage and resume; both
 * follow the step order of steps.ts.
 */
import type { PurifyConfig } from '../../schemas/purify';
import type { PreparedData } from '../experiment/prepareData';
import { evaluateClassifier, diagnosticSample, sampleDiagnostics, type ModelMetrics } from '../experiment/evaluate';
import { defenseEffectivenessRating } from '../metrics';
import { deriveSeed } from '../rng';
import type { Classifier } from '../models/classifier';
import { concatDatasets } from '../data/dataset';
import type { EpochRecord } from '../train/epochLoop';
import type { SplitSummary } from '../report/records';
import {
  cloneClassifier,
  computeNtTargets,
  planSplit,
  runMutualLearning,
  runSplitDistillation,
  trainNtStudent,
  trainSelfDistilledTeacher,
  trainStandard,
  type ModelFactory,
} from './stages';
import { ntmlSteps, type NtmlStep } from './steps';
import { splitSummary } from './splitSummary';

export interface PurifyResult {
  standard: Classifier;
  ntStudent: Classifier;
  student: Classifier;
  metrics: { standard: ModelMetrics; ntStudent: ModelMetrics; teacher: ModelMetrics; final: ModelMetrics; der?: number };
  split?: SplitSummary;
  /** refitOnAllClean: the epochs the held-out selection chose, replayed on all of D_c */
  refit?: { mlEpochs: number; splitEpochs?: number };
  histories: Record<string, EpochRecord[]>;
  seconds: Record<string, number>;
}

export async function purify(
  data: PreparedData,
  cfg: PurifyConfig,
  newModel: ModelFactory,
  options: { standard?: Classifier; log?: (line: string) => void } = {},
): Promise<PurifyResult> {
  const log = options.log ?? (() => undefined);
  const nt = cfg.ntml;
  const seconds: Record<string, number> = {};
  const histories: Record<string, EpochRecord[]> = {};
  const timed = async <T>(stage: string, f: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    log(`stage ${stage}`);
    const out = await f();
    seconds[stage] = (Date.now() - t0) / 1000;
    return out;
  };
  const cleanSet = concatDatasets(data.cleanFit, data.cleanHeldOut, 'clean set (fit + held-out)');
  const evaluate = (c: Classifier) => evaluateClassifier(c, data.test, data.backdoorTest);

  let standard = options.standard;
  if (!standard) {
    standard = await newModel(deriveSeed(cfg.seed, 'init:standard'));
    const s = standard;
    histories.standard = (await timed('standardTraining', () => trainStandard(s, data.train, cfg.training, cfg.seed))).history;
  }
  const std = standard;
  let targets: Awaited<ReturnType<typeof computeNtTargets>>;
  let teacher: Classifier | undefined;
  let student: Classifier;
  let ntStudent: Classifier;
  let diag: ReturnType<typeof diagnosticSample>;
  // refitOnAllClean replays the selected run from these starting points on all of D_c
  let mlStart: { student: Classifier; teacher: Classifier } | undefined;
  let ml: Awaited<ReturnType<typeof runMutualLearning>>;
  let plan: Awaited<ReturnType<typeof planSplit>>;
  let split: PurifyResult['split'];
  let splitEpochs: number | undefined;
  let refit: PurifyResult['refit'];

  const mutualLearning = (suffix: '' | 'Refit') => async () => {
    const s = student;
    const t = teacher!;
    const diagnostics = sampleDiagnostics(s, diag);
    ml = await timed(`mutualLearning${suffix}`, () =>
      runMutualLearning(s, t, data.cleanFit, data.cleanHeldOut, nt, cfg.training.augment, cfg.seed, { diagnostics, refitEpochs: refit?.mlEpochs }),
    );
    histories[`mutualLearning${suffix}`] = ml.history;
  };
  const splitPlan = (suffix: '' | 'Refit') => async () => {
    plan = await timed(`splitPlan${suffix}`, () => planSplit(teacher!, student, std, data.train, nt.splitTarget, { config: nt, clean: cleanSet }));
    split = splitSummary(plan);
    log(
      `split${suffix ? ' (refit)' : ''}: estimated target ${plan.estimatedTarget}, ` +
        (split.fallback ? `skipped (${split.fallback})` : `keeping ${(100 * plan.keptFraction).toFixed(1)}% of training inputs`),
    );
  };
  const splitDistillation = (suffix: '' | 'Refit') => async () => {
    const distilled = await timed(`splitDistillation${suffix}`, () =>
      runSplitDistillation(student, std, data.train, plan.kept, data.cleanHeldOut, nt, cfg.training.augment, cfg.seed, {
        refitEpochs: refit?.splitEpochs,
        diagnostics: sampleDiagnostics(student, diag),
        target: plan.estimatedTarget,
        groups: data.poison ? { poisoned: data.poison.poisonedIndices, noise: data.poison.crossIndices } : undefined,
      }),
    );
    histories[`splitDistillation${suffix}`] = distilled.history;
    splitEpochs = distilled.selectedEpoch;
  };

  const steps: Record<NtmlStep, () => Promise<void>> = {
    nonTargetLabels: async () => {
      targets = await timed('nonTargetLabels', () => computeNtTargets(std, data.train, nt));
    },
    teacherTraining: async () => {
      const t = (teacher = await newModel(deriveSeed(cfg.seed, 'init:teacher')));
      histories.teacher = (await timed('teacherTraining', () => trainSelfDistilledTeacher(std, t, data.train, cfg.training, nt, cfg.seed))).history;
    },
    ntTraining: async () => {
      // teacher: standard is a copy of f_std (mutual learning changes it)
      teacher ??= await cloneClassifier(std);
      const s = (student = nt.studentInit === 'standard' ? await cloneClassifier(std) : await newModel(deriveSeed(cfg.seed, 'init:student')));
      histories.ntTraining = (await timed('ntTraining', () => trainNtStudent(s, data.train, targets, cfg.training, nt, cfg.seed))).history;
      ntStudent = await cloneClassifier(student);
      diag = diagnosticSample(data.test, data.backdoorTest, nt.diagnosticSamples, deriveSeed(cfg.seed, 'diagnostics'));
      if (nt.refitOnAllClean) mlStart = { student: await cloneClassifier(student), teacher: await cloneClassifier(teacher) };
    },
    mutualLearning: mutualLearning(''),
    splitPlan: splitPlan(''),
    splitDistillation: splitDistillation(''),
    mutualLearningRefit: async () => {
      teacher!.model.dispose();
      student.model.dispose();
      [student, teacher] = [mlStart!.student, mlStart!.teacher];
      refit = { mlEpochs: ml.selectedEpoch, splitEpochs };
      log(`refit on all ${data.cleanFit.labels.length + data.cleanHeldOut.labels.length} clean samples: ${refit.mlEpochs} ML epochs` +
        (refit.splitEpochs === undefined ? '' : `, ${refit.splitEpochs} split epochs`));
      await mutualLearning('Refit')();
    },
    splitPlanRefit: splitPlan('Refit'),
    splitDistillationRefit: splitDistillation('Refit'),
  };
  for (const step of ntmlSteps(nt)) await steps[step]();
  const finalTeacher = teacher!;

  const metrics = await timed('evaluation', async () => {
    const m = {
      standard: await evaluate(std),
      ntStudent: await evaluate(ntStudent),
      teacher: await evaluate(finalTeacher),
      final: await evaluate(student),
      der: undefined as number | undefined,
    };
    if (m.standard.asr !== undefined && m.final.asr !== undefined) {
      m.der = defenseEffectivenessRating({
        accBefore: m.standard.acc,
        asrBefore: m.standard.asr,
        accAfter: m.final.acc,
        asrAfter: m.final.asr,
      });
    }
    return m;
  });
  finalTeacher.model.dispose();
  return { standard: std, ntStudent: ntStudent!, student: student!, metrics, split, refit, histories, seconds };
}

/**
 * NT-ML end to end in one process, for library use and benchmarks:
 *   const result = await purify(prepared, config)
 * The Temporal workflow runs the same stages one activity each, with storage and resume.
 */
import type { PurifyConfig } from '../../schemas/purify';
import type { PreparedData } from '../experiment/prepareData';
import { evaluateClassifier, diagnosticSample, sampleDiagnostics, type ModelMetrics } from '../experiment/evaluate';
import { defenseEffectivenessRating } from '../metrics';
import { deriveSeed } from '../rng';
import type { Classifier } from '../models/classifier';
import type { EpochRecord } from '../train/epochLoop';
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

export interface PurifyResult {
  standard: Classifier;
  ntStudent: Classifier;
  student: Classifier;
  metrics: { standard: ModelMetrics; ntStudent: ModelMetrics; teacher: ModelMetrics; final: ModelMetrics; der?: number };
  split?: { estimatedTarget: number; keptFraction: number };
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
  const evaluate = (c: Classifier) => evaluateClassifier(c, data.test, data.backdoorTest);

  let standard = options.standard;
  if (!standard) {
    standard = await newModel(deriveSeed(cfg.seed, 'init:standard'));
    const s = standard;
    histories.standard = (await timed('standardTraining', () => trainStandard(s, data.train, cfg.training, cfg.seed))).history;
  }
  const std = standard;
  const targets = await timed('nonTargetLabels', () => computeNtTargets(std, data.train, nt));

  let teacher: Classifier;
  if (nt.teacher === 'selfDistilled') {
    teacher = await newModel(deriveSeed(cfg.seed, 'init:teacher'));
    const t = teacher;
    histories.teacher = (
      await timed('teacherTraining', () => trainSelfDistilledTeacher(std, t, data.train, cfg.training, nt, cfg.seed))
    ).history;
  } else {
    teacher = await cloneClassifier(std);
  }

  let student = nt.studentInit === 'standard' ? await cloneClassifier(std) : await newModel(deriveSeed(cfg.seed, 'init:student'));
  histories.ntTraining = (
    await timed('ntTraining', () => trainNtStudent(student, data.train, targets, cfg.training, nt, cfg.seed))
  ).history;
  const ntStudent = await cloneClassifier(student);

  const diag = diagnosticSample(data.test, data.backdoorTest, nt.diagnosticSamples, deriveSeed(cfg.seed, 'diagnostics'));
  // refitOnAllClean replays the selected run from these starting points on all of D_c
  const mlStart = nt.refitOnAllClean ? { student: await cloneClassifier(student), teacher: await cloneClassifier(teacher) } : undefined;
  const selected = await mutualLearningAndSplit(student, teacher, '');

  let split = selected.split;
  let refit: PurifyResult['refit'];
  if (mlStart) {
    teacher.model.dispose();
    student.model.dispose();
    [student, teacher] = [mlStart.student, mlStart.teacher];
    refit = { mlEpochs: selected.mlEpoch, splitEpochs: selected.splitEpoch };
    log(`refit on all ${data.cleanFit.labels.length + data.cleanHeldOut.labels.length} clean samples: ${refit.mlEpochs} ML epochs` +
      (refit.splitEpochs === undefined ? '' : `, ${refit.splitEpochs} split epochs`));
    split = (await mutualLearningAndSplit(student, teacher, 'Refit', refit)).split;
  }

  async function mutualLearningAndSplit(s: Classifier, t: Classifier, suffix: '' | 'Refit', epochs?: { mlEpochs: number; splitEpochs?: number }) {
    const diagnostics = sampleDiagnostics(s, diag);
    const ml = await timed(`mutualLearning${suffix}`, () =>
      runMutualLearning(s, t, data.cleanFit, data.cleanHeldOut, nt, cfg.training.augment, cfg.seed, { diagnostics, refitEpochs: epochs?.mlEpochs }),
    );
    histories[`mutualLearning${suffix}`] = ml.history;
    if (nt.ml !== 'split') return { mlEpoch: ml.selectedEpoch, splitEpoch: undefined, split: undefined };
    const plan = await timed(`splitPlan${suffix}`, () => planSplit(t, s, std, data.train, nt.splitTarget));
    log(`split${suffix ? ' (refit)' : ''}: estimated target ${plan.estimatedTarget}, keeping ${(100 * plan.keptFraction).toFixed(1)}% of training inputs`);
    const distilled = await timed(`splitDistillation${suffix}`, () =>
      runSplitDistillation(s, std, data.train, plan.kept, data.cleanHeldOut, nt, cfg.training.augment, cfg.seed, {
        refitEpochs: epochs?.splitEpochs,
        diagnostics: sampleDiagnostics(s, diag),
      }),
    );
    histories[`splitDistillation${suffix}`] = distilled.history;
    return {
      mlEpoch: ml.selectedEpoch,
      splitEpoch: distilled.selectedEpoch,
      split: { estimatedTarget: plan.estimatedTarget, keptFraction: plan.keptFraction },
    };
  }

  const metrics = await timed('evaluation', async () => {
    const m = {
      standard: await evaluate(std),
      ntStudent: await evaluate(ntStudent),
      teacher: await evaluate(teacher),
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
  teacher.model.dispose();
  return { standard: std, ntStudent, student, metrics, split, refit, histories, seconds };
}

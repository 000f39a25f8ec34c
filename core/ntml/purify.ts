/**
 * NT-ML end to end in one process, for library use and benchmarks:
 *   const result = await purify(prepared, config)
 * The Temporal workflow runs the same stages one activity each, with storage and resume.
 */
import type { PurifyConfig } from '../../schemas/purify';
import type { PreparedData } from '../experiment/prepareData';
import { evaluateClassifier, diagnosticSample, type ModelMetrics } from '../experiment/evaluate';
import { defenseEffectivenessRating } from '../metrics';
import { deriveSeed } from '../rng';
import type { Classifier } from '../models/classifier';
import { predictLabels } from '../models/classifier';
import { accuracy, attackSuccessRate } from '../metrics';
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

  const student = nt.studentInit === 'standard' ? await cloneClassifier(std) : await newModel(deriveSeed(cfg.seed, 'init:student'));
  histories.ntTraining = (
    await timed('ntTraining', () => trainNtStudent(student, data.train, targets, cfg.training, nt, cfg.seed))
  ).history;
  const ntStudent = await cloneClassifier(student);

  const diag = diagnosticSample(data.test, data.backdoorTest, nt.diagnosticSamples, deriveSeed(cfg.seed, 'diagnostics'));
  const diagnostics = diag.test
    ? async () => {
        const out: Record<string, number> = { acc: accuracy(await predictLabels(student, diag.test!), diag.test!.labels) };
        if (diag.backdoor) out.asr = attackSuccessRate(await predictLabels(student, diag.backdoor.images), diag.backdoor.targetLabels);
        return out;
      }
    : undefined;
  histories.mutualLearning = (
    await timed('mutualLearning', () =>
      runMutualLearning(student, teacher, data.cleanFit, data.cleanHeldOut, nt, cfg.training.augment, cfg.seed, { diagnostics }),
    )
  ).history;

  let split: PurifyResult['split'];
  if (nt.ml === 'split') {
    const plan = await timed('splitPlan', () => planSplit(teacher, student, std, data.train));
    split = { estimatedTarget: plan.estimatedTarget, keptFraction: plan.keptFraction };
    log(`split: estimated target ${plan.estimatedTarget}, keeping ${(100 * plan.keptFraction).toFixed(1)}% of training inputs`);
    histories.splitDistillation = (
      await timed('splitDistillation', () =>
        runSplitDistillation(student, std, data.train, plan.kept, data.cleanHeldOut, nt, cfg.training.augment, cfg.seed),
      )
    ).history;
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
  return { standard: std, ntStudent, student, metrics, split, histories, seconds };
}

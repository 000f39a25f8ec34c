/**
 * The order of NT-ML's steps after standard training, decided by the config alone. The
 * in-process pipeline (purify.ts) and the Temporal workflow (workflows/purify.ts) both walk
 * this list, so the two cannot drift apart. Pure (types only): workflow code imports it.
 */
import type { NtmlConfig } from './config';

export type NtmlStep =
  | 'nonTargetLabels'
  | 'teacherTraining'
  | 'ntTraining'
  | 'mutualLearning'
  | 'splitPlan'
  | 'splitDistillation'
  | 'mutualLearningRefit'
  | 'splitPlanRefit'
  | 'splitDistillationRefit';

type StepSwitches = Pick<NtmlConfig, 'teacher' | 'ml' | 'refitOnAllClean'>;

/**
 * NT labels from f_std, the self-distilled teacher if asked for, NT training of the student,
 * mutual learning and (ml = split) the split plan and split distillation; with
 * refitOnAllClean the mutual learning and split steps again on all of D_c, for the epochs the
 * held-out slice chose.
 */
export function ntmlSteps(nt: StepSwitches): NtmlStep[] {
  const split = nt.ml === 'split';
  return [
    'nonTargetLabels',
    ...(nt.teacher === 'selfDistilled' ? (['teacherTraining'] as const) : []),
    'ntTraining',
    'mutualLearning',
    ...(split ? (['splitPlan', 'splitDistillation'] as const) : []),
    ...(nt.refitOnAllClean ? (['mutualLearningRefit', ...(split ? (['splitPlanRefit', 'splitDistillationRefit'] as const) : [])] as const) : []),
  ];
}

/**
 * Every switch of the NT-ML reconstruction (see docs/ntml.md). The paper publishes only its
 * abstract, so each choice beyond "standard training -> non-target label training ->
 * mutual learning on a small clean set" is a named switch with the default first. The
 * defaults are the variant with the best measured mean DER (ntml.md "Choosing the default"):
 * bench/results/ntml-best-cpu/.
 */
import { z } from 'zod';

export const NtLabel = z.enum(['soft', 'hard', 'mix', 'negative']);
export const TeacherKind = z.enum(['standard', 'selfDistilled']);
export const StudentInit = z.enum(['standard', 'scratch']);
export const MlVariant = z.enum(['split', 'clean', 'oneWay']);
export const MlBatchNorm = z.enum(['train', 'frozen']);
export const SplitTarget = z.enum(['standard', 'teacher']);
export const SplitSelect = z.enum(['last', 'heldOut']);
export const MlSelect = z.enum(['heldOut', 'last']);
export const SplitTargetSource = z.enum(['standard', 'mutualLearning']);
export const SplitGate = z.enum(['none', 'drop', 'weight']);
export const SplitStop = z.enum(['none', 'proxyAsr']);
export const SplitFallback = z.enum(['weakEvidence', 'never']);

export const NtmlConfig = z
  .object({
    ntLabel: NtLabel.default('soft').describe('non-target label: soft | hard | mix | negative'),
    tau: z.number().positive().max(100).default(1).describe('temperature of the standard model outputs used as labels'),
    mixEpsilon: z.number().min(0).max(1).default(0.5).describe('weight of the soft non-target part in `mix` labels'),
    teacher: TeacherKind.default('standard'),
    studentInit: StudentInit.default('standard'),
    ntEpochs: z.number().int().min(1).default(3).describe('epochs of NT training when studentInit = standard'),
    ntLearningRate: z.number().positive().default(0.01).describe('peak learning rate of NT training (studentInit = standard)'),
    ml: MlVariant.default('split'),
    lambda: z.number().min(0).default(1).describe('weight of the KL term in mutual learning'),
    mlTau: z.number().positive().max(100).default(1).describe('temperature of the mutual-learning KL'),
    mlEpochs: z.number().int().min(1).default(60).describe('passes over the clean set in mutual learning'),
    mlBatchSize: z.number().int().min(2).default(32),
    mlSelect: MlSelect.default('heldOut').describe(
      'mutual learning keeps: heldOut (best held-out epoch, the start included, ntml.md) | last (the last epoch, ours)',
    ),
    mlBatchNorm: MlBatchNorm.default('train').describe('BN in ML and split distillation: train (lr 0.01) | frozen (inference-mode BN, lr 0.001)'),
    mlLearningRate: z
      .number()
      .positive()
      .optional()
      .describe('learning rate of ML and split distillation (default 0.001 with frozen BN, 0.01 with train)'),
    splitEpochs: z.number().int().min(1).default(3).describe('epochs of split distillation (ml = split)'),
    splitBatchSize: z.number().int().min(2).default(128),
    splitTarget: SplitTarget.default('standard').describe(
      'whose over-prediction against the student after ML names t^: standard (f_std, ours) | teacher (T after ML, ntml.md)',
    ),
    splitSelect: SplitSelect.default('last').describe(
      'split distillation keeps: last (the last epoch, ours) | heldOut (best held-out epoch, the start included, ntml.md)',
    ),
    splitTargetSource: SplitTargetSource.default('standard').describe(
      "split distillation's target: standard (f_std's distribution) | mutualLearning (t^'s column from the model after ML, the rest from f_std)",
    ),
    splitGate: SplitGate.default('none').describe(
      'kept inputs by the disagreement p_std(t^) - p_ML(t^): none | drop (above splitGateThreshold) | weight (by 1 - disagreement)',
    ),
    splitGateThreshold: z.number().min(0).max(1).default(0.5).describe('splitGate drop: largest disagreement on t^ an input may have'),
    splitStop: SplitStop.default('none').describe(
      'none | proxyAsr (keep the last epoch before the proxy ASR on suspected-poisoned inputs exceeds splitStopProxyAsr)',
    ),
    splitStopProxyAsr: z.number().min(0).max(1).default(0.2).describe('splitStop proxyAsr: the proxy ASR that ends split distillation'),
    splitAnchor: z
      .number()
      .min(0)
      .max(1)
      .default(0)
      .describe('pull towards the weights after mutual learning after every split step: w -= splitAnchor * (w - w_ML)'),
    splitFallback: SplitFallback.default('weakEvidence').describe(
      'weakEvidence (skip split distillation when t^ is weakly supported; a safety check) | never',
    ),
    splitMinEvidence: z
      .number()
      .min(0)
      .max(1)
      .default(0.05)
      .describe("splitFallback: least share for t^'s excess, the suspected-poisoned inputs and f_std's over-prediction of t^ beyond the clean set"),
    heldOutFraction: z.number().gt(0).lt(1).default(0.2).describe('part of the clean set held out for selection'),
    refitOnAllClean: z
      .boolean()
      .default(false)
      .describe('after selecting on the held-out slice, replay ML (and split distillation) for the chosen epochs on all of D_c'),
    diagnosticSamples: z
      .number()
      .int()
      .min(0)
      .default(500)
      .describe('test images used for per-epoch ML diagnostics (never for selection)'),
  })
  .strict();
export type NtmlConfig = z.infer<typeof NtmlConfig>;

export function mlLearningRate(cfg: NtmlConfig): number {
  return cfg.mlLearningRate ?? (cfg.mlBatchNorm === 'frozen' ? 0.001 : 0.01);
}

/**
 * Config schemas of every defense, with the defaults of defenses.md. Pure zod (no
 * TensorFlow): the purify schema, the sweep schema and the workflows import these.
 *
 * To add a defense: add its schema here (a strict object with `name: z.literal(...)`),
 * list it in defenseConfigSchema, write core/defenses/<name>.ts exporting a DefensePlugin,
 * and register it in core/defenses/registry.ts.
 */
import { z } from 'zod';

const lr = z.number().positive();
const batchSize = z.number().int().min(2).default(128);

/** Fine-tuning hyper-parameters shared by FT and the fine-tuning phase of FP. */
export const fineTuneShape = {
  steps: z
    .number()
    .int()
    .min(1)
    .default(1000)
    .describe('optimiser steps in total (defenses.md: ~1,000 whatever the budget)'),
  rounds: z
    .number()
    .int()
    .min(1)
    .default(10)
    .describe('checkpoints: the steps are split into this many rounds; each is checkpointed and scored on the held-out slice'),
  learningRate: lr.default(0.01),
  momentum: z.number().min(0).max(0.999).default(0.9),
  weightDecay: z.number().min(0).default(5e-4),
  batchSize,
};

export const noneDefenseSchema = z
  .object({ name: z.literal('none').describe('no defense: the backdoored model is the result') })
  .strict();

/** NT-ML's switches live in the config's `ntml` field; this only selects the pipeline. */
export const ntmlDefenseSchema = z.object({ name: z.literal('ntml') }).strict();

export const ftDefenseSchema = z.object({ name: z.literal('ft'), ...fineTuneShape }).strict();

export const fpDefenseSchema = z
  .object({
    name: z.literal('fp'),
    accRatio: z
      .number()
      .gt(0)
      .lt(1)
      .default(0.1)
      .describe('stop pruning before held-out clean accuracy drops by this fraction (relative)'),
    pruneStep: z.number().gt(0).lt(1).default(0.01).describe('fraction of the penultimate features pruned per step'),
    maxPruneFraction: z.number().gt(0).max(1).default(0.9).describe('never prune more than this fraction'),
    fineTune: z.object(fineTuneShape).strict().default(z.object(fineTuneShape).parse({})),
  })
  .strict();

export const nadDefenseSchema = z
  .object({
    name: z.literal('nad'),
    teacherEpochs: z.number().int().min(1).default(10).describe('epochs of fine-tuning that make the teacher'),
    epochs: z.number().int().min(1).default(10).describe('epochs of attention distillation'),
    betas: z
      .array(z.number().min(0))
      .min(1)
      .default([500, 1000, 1000])
      .describe('attention-loss weights of the last stages, shallowest first'),
    attentionPower: z.number().positive().default(2).describe('p of the attention map sum_c |f_c|^p'),
    stepsPerEpoch: z
      .number()
      .int()
      .min(1)
      .default(10)
      .describe(
        'optimiser steps per epoch (teacher and student), whatever |D_c|: 10 is BackdoorBench\'s epoch at 5% of CIFAR-10 ' +
          '(2,500 images in batches of 256), so the defaults are 100 teacher and 100 student steps. An epoch is never ' +
          'shorter than one pass over the fitting set',
      ),
    selection: z
      .enum(['last', 'heldOut'])
      .default('last')
      .describe('which epoch of the teacher and of the student is kept: the last (as in the NAD paper) or the best on the held-out slice'),
    learningRate: lr.default(0.01),
    momentum: z.number().min(0).max(0.999).default(0.9),
    weightDecay: z.number().min(0).default(5e-4),
    // BackdoorBench's NAD batch: 10 steps of 256 cover the 2,000 fitting images of a 5% CIFAR-10 budget in one epoch
    batchSize: z.number().int().min(2).default(256),
  })
  .strict();

export const anpDefenseSchema = z
  .object({
    name: z.literal('anp'),
    eps: z.number().min(0).default(0.4).describe('size of the adversarial neuron perturbation: its random start is uniform in [-eps, eps] and its signed steps total eps'),
    perturbSteps: z.number().int().min(1).default(1),
    clipNoise: z
      .boolean()
      .default(false)
      .describe(
        'clip the perturbation to [-eps, eps] after each signed step. The ANP authors\' code (csdongxian/ANP_backdoor) and ' +
          'BackdoorBench do not, so the random start plus the steps reaches up to 2 eps; true is this project\'s earlier variant',
      ),
    alpha: z.number().min(0).max(1).default(0.2).describe('weight of the natural loss (1 - alpha on the robust loss)'),
    maskBatchNorm: z
      .enum(['inference', 'batch'])
      .default('inference')
      .describe(
        'BN statistics while the masks are learned: the moving ones (the function that is then pruned) or each batch\'s own, ' +
          'as the authors\' optimize_mask_cifar.py (model.train())',
      ),
    pruneZeroes: z
      .enum(['scaleAndShift', 'scale'])
      .default('scaleAndShift')
      .describe(
        'what pruning zeroes: BN gamma and beta (the neuron outputs 0, removed), or gamma only as the authors\' prune_neuron_cifar.py ' +
          '(the channel then outputs the constant ReLU(beta))',
      ),
    iterations: z.number().int().min(1).default(2000),
    checkpoints: z
      .number()
      .int()
      .min(1)
      .default(20)
      .describe('the iterations are split into this many checkpointed epochs of the mask optimisation'),
    maskLearningRate: lr.default(0.2).describe('SGD (momentum 0.9) learning rate of the neuron masks'),
    batchSize,
    prune: z
      .discriminatedUnion('by', [
        z
          .object({
            by: z.literal('heldOut'),
            accRatio: z.number().gt(0).lt(1).default(0.1).describe('largest threshold whose held-out accuracy drop stays below this (relative)'),
            maxThreshold: z.number().gt(0).max(1).default(0.9),
            step: z.number().gt(0).max(1).default(0.05),
          })
          .strict(),
        z.object({ by: z.literal('threshold'), value: z.number().gt(0).max(1).default(0.2) }).strict(),
        z.object({ by: z.literal('count'), value: z.number().int().min(0) }).strict(),
      ])
      .default({ by: 'threshold', value: 0.2 })
      .describe(
        'how the neurons to prune are chosen (never on the test set): a fixed mask threshold set in advance (default 0.2, the ANP paper\'s; ' +
          'needs no data), the held-out rule, or a fixed count',
      ),
  })
  .strict();

export const ibauDefenseSchema = z
  .object({
    name: z.literal('ibau'),
    rounds: z.number().int().min(1).default(5),
    fixedPointSteps: z.number().int().min(1).default(5).describe('K: fixed-point iterations of the implicit hypergradient'),
    learningRate: lr.default(1e-4).describe('Adam learning rate of the model update'),
    perturbationPenalty: z.number().min(0).default(0.001).describe('weight of ||delta||^2 in the inner maximisation'),
    innerSteps: z.number().int().min(1).default(5).describe('ascent steps of the universal perturbation per round, one batch each'),
    innerLearningRate: lr
      .default(10)
      .describe('SGD step size of the universal perturbation (delta in standardised-input units, range/4; the authors use 10)'),
    perturbationRadius: z
      .number()
      .positive()
      .default(10)
      .describe('L2 radius delta is projected on after the inner steps (standardised-input units, range/4; the authors use 10)'),
    fixedPointStepSize: z
      .number()
      .positive()
      .default(0.1)
      .describe('eta of the map delta - eta * grad L_inner whose fixed point defines the hypergradient (the authors use 0.1)'),
    stepsPerRound: z
      .number()
      .int()
      .min(1)
      .default(10)
      .describe(
        'outer Adam steps per round, whatever |D_c|: 10 is BackdoorBench\'s pass over 5% of CIFAR-10 (2,500 images in batches of 256), ' +
          'so the default is 50 outer steps',
      ),
    perturbationLabels: z
      .enum(['true', 'predicted'])
      .default('true')
      .describe(
        'labels the universal perturbation is searched against: the true ones (the paper\'s formulation) or the model\'s ' +
          'predictions (the authors\' defense.py and BackdoorBench)',
      ),
    outerPerturbedFraction: z
      .number()
      .gt(0)
      .max(1)
      .default(1)
      .describe(
        'share of each outer batch that gets the perturbation: 1 (the paper) or 0.01 (the authors\' code and BackdoorBench: ' +
          'floor(0.01 * batch) random images, which is none of a batch under 100)',
      ),
    hypergradient: z
      .enum(['implicit', 'firstOrder'])
      .default('implicit')
      .describe('implicit: I-BAU as published; firstOrder: drops the implicit term and is reported as "I-BAU (first-order)"'),
    secondOrder: z
      .enum(['frozenPattern', 'finiteDifference'])
      .default('frozenPattern')
      .describe(
        'how the implicit hypergradient\'s H v and mixed product are computed: frozenPattern (default) as the authors\' autograd does, ' +
          'exactly, with the ReLU / max-pool pattern held at the base point (piecewise-linear models only; others are refused by layer name); ' +
          'finiteDifference: central differences of gradients, the behaviour before issue 19\'s re-check (on ReLU / max-pool models it moves ' +
          'by about its own size with the step, docs/defenses.md)',
      ),
    batchSize,
  })
  .strict();

export const defenseConfigSchema = z.discriminatedUnion('name', [
  noneDefenseSchema,
  ntmlDefenseSchema,
  ftDefenseSchema,
  fpDefenseSchema,
  nadDefenseSchema,
  anpDefenseSchema,
  ibauDefenseSchema,
]);
export type DefenseConfig = z.output<typeof defenseConfigSchema>;
export type DefenseConfigInput = z.input<typeof defenseConfigSchema>;
export type DefenseName = DefenseConfig['name'];
export type BaselineDefenseConfig = Exclude<DefenseConfig, { name: 'none' } | { name: 'ntml' }>;
export type FtDefenseConfig = z.output<typeof ftDefenseSchema>;
export type FpDefenseConfig = z.output<typeof fpDefenseSchema>;
export type NadDefenseConfig = z.output<typeof nadDefenseSchema>;
export type AnpDefenseConfig = z.output<typeof anpDefenseSchema>;
export type IbauDefenseConfig = z.output<typeof ibauDefenseSchema>;
export type FineTuneConfig = z.output<z.ZodObject<typeof fineTuneShape>>;

export const defenseNames: DefenseName[] = defenseConfigSchema.options.map((o) => o.shape.name.value) as DefenseName[];

/** The name a defense has in reports and tables. */
export function defenseDisplayName(cfg: DefenseConfig): string {
  switch (cfg.name) {
    case 'none':
      return 'No defense';
    case 'ntml':
      return 'NT-ML';
    case 'ibau':
      return cfg.hypergradient === 'firstOrder' ? 'I-BAU (first-order)' : 'I-BAU';
    default:
      return cfg.name.toUpperCase();
  }
}

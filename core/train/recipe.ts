/** A training recipe (pure schema: imported by workflows, so no TensorFlow here). */
import { z } from 'zod';

/**
 * Per-step learning-rate schedules (core/train/sgd.ts learningRateAt): cosine decay from the
 * peak to 0; constant; oneCycle: a linear warm-up from peak/25 to the peak over the first
 * `warmupFraction` of the steps, then cosine decay to 0 (Smith's one-cycle policy, with
 * PyTorch OneCycleLR's start divisor; the momentum is not cycled).
 */
export const LearningRateSchedule = z.enum(['cosine', 'constant', 'oneCycle']);
export type LearningRateSchedule = z.infer<typeof LearningRateSchedule>;

/** OneCycleLR's pct_start default. */
export const DEFAULT_WARMUP_FRACTION = 0.3;

export const TrainRecipe = z
  .object({
    epochs: z.number().int().min(1).describe('passes over the training data'),
    batchSize: z.number().int().min(2).default(128),
    learningRate: z.number().positive().describe('peak learning rate'),
    momentum: z.number().min(0).max(0.999).default(0.9),
    // optional without a default: a recipe that leaves it out keeps its stage cache keys
    nesterov: z.boolean().optional().describe('Nesterov momentum (PyTorch SGD semantics); default false'),
    weightDecay: z.number().min(0).default(5e-4),
    schedule: LearningRateSchedule.default('cosine'),
    warmupFraction: z
      .number()
      .min(0)
      .max(0.9)
      .optional()
      .describe(`oneCycle only: the share of the steps spent warming up (default ${DEFAULT_WARMUP_FRACTION})`),
    augment: z
      .object({ padding: z.number().int().min(0).max(16).default(4), flip: z.boolean().default(true) })
      .strict()
      .default({ padding: 4, flip: true }),
    batchNorm: z.enum(['train', 'frozen']).default('train').describe('frozen: BN layers in inference mode while training'),
  })
  .strict();
export type TrainRecipe = z.infer<typeof TrainRecipe>;

/** The recipe's problems that single fields cannot show, each as [field, message]. */
export function recipeConflicts(recipe: { schedule?: LearningRateSchedule; warmupFraction?: number }): Array<[string, string]> {
  if (recipe.warmupFraction !== undefined && recipe.schedule !== 'oneCycle') {
    return [['warmupFraction', `applies to schedule oneCycle only, the schedule is ${recipe.schedule ?? 'cosine'}`]];
  }
  return [];
}

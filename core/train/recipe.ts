/** A training recipe (pure schema: imported by workflows, so no TensorFlow here). */
import { z } from 'zod';

export const TrainRecipe = z
  .object({
    epochs: z.number().int().min(1).describe('passes over the training data'),
    batchSize: z.number().int().min(2).default(128),
    learningRate: z.number().positive().describe('peak learning rate'),
    momentum: z.number().min(0).max(0.999).default(0.9),
    weightDecay: z.number().min(0).default(5e-4),
    schedule: z.enum(['cosine', 'constant']).default('cosine'),
    augment: z
      .object({ padding: z.number().int().min(0).max(16).default(4), flip: z.boolean().default(true) })
      .strict()
      .default({ padding: 4, flip: true }),
    batchNorm: z.enum(['train', 'frozen']).default('train').describe('frozen: BN layers in inference mode while training'),
  })
  .strict();
export type TrainRecipe = z.infer<typeof TrainRecipe>;

/**
 * Config schemas of every attack, with the defaults of attacks.md, and their union. Pure zod
 * (no TensorFlow, no Node modules): the purify, audit and sweep schemas, and through them the
 * workflow bundle, import this file and nothing else of core/attacks.
 *
 * To add an attack: add its schema here (a strict object with `name: z.literal('<name>')` and
 * `...baseAttackShape`), list it in attackConfigSchema, write core/attacks/<name>.ts exporting
 * an AttackPlugin (attack.ts; badnets.ts is the reference), and register it in registry.ts.
 */
import { z } from 'zod';
import { ArchitectureName } from '../models/names';

/**
 * Why `epochs` is refused where the attacker only hands over data: the run that trains on it is
 * the defender's standard training (`training.epochs`), not the attacker's to set.
 */
export const poisonOnlyEpochsMessage =
  "not allowed: a poison-only attack hands over poisoned data and the defender's standard training (training.epochs) trains on it; " +
  'only a training-controlled attack (wanet in mode trainingControlled, inputaware) sets the length of its own run';

/** Fields every attack config has (attacks.md defaults: all-to-one, target 0, rate 0.1). */
export const baseAttackShape = {
  target: z.number().int().min(0).default(0),
  rate: z.number().gt(0).max(1).default(0.1),
  labelMap: z.enum(['allToOne', 'allToAll']).default('allToOne'),
  // refused with the reason, not zod's bare "Unrecognized key"; training-controlled attacks
  // override it with attackerEpochs
  epochs: z.never({ error: poisonOnlyEpochsMessage }).optional(),
};

/**
 * The attacker's run length, for attacks that run training (attackerRecipe.ts): that many
 * epochs of the tier's recipe, its schedule stretched over them. Absent: the recipe's epochs,
 * and no key in the parsed config (cell ids and stage keys of configs without it stay the same).
 */
const attackerEpochs = z.number().int().positive().optional();

// BadNets (badnets.ts)
export const badnetsConfigSchema = z.strictObject({
  name: z.literal('badnets'),
  ...baseAttackShape,
  /** Side of the square patch, in pixels. */
  patchSize: z.number().int().min(1).default(3),
});

export type BadNetsConfig = z.output<typeof badnetsConfigSchema>;

// Blended (blended.ts)
export const blendedConfigSchema = z.strictObject({
  name: z.literal('blended'),
  ...baseAttackShape,
  /** Blend weight of the trigger. */
  alpha: z.number().gt(0).max(1).default(0.2),
  /** Seed of the noise pattern (fixed per config, independent of the attack seed). */
  patternSeed: z.number().int().min(0).max(2 ** 32 - 1).default(0),
  /** Optional PNG used as the trigger instead of noise (resized nearest-neighbour to HxW). */
  imagePath: z.string().min(1).optional(),
});

export type BlendedConfig = z.output<typeof blendedConfigSchema>;

// SIG (sig.ts)
export const sigConfigSchema = z.strictObject({
  name: z.literal('sig'),
  ...baseAttackShape,
  /** Amplitude of the sinusoid, 0-255 units. */
  delta: z.number().gt(0).max(255).default(40),
  /** Number of periods across the image width. */
  frequency: z.number().gt(0).default(6),
});

export type SigConfig = z.output<typeof sigConfigSchema>;

// WaNet (wanet.ts)
export const wanetConfigSchema = z.strictObject({
  name: z.literal('wanet'),
  ...baseAttackShape,
  /** Control grid size k (ins is 2 x k x k). */
  k: z.number().int().min(2).max(64).default(4),
  /** Warping strength s. */
  s: z.number().min(0).max(64).default(0.5),
  /** Size of the noise (cross) set relative to the poisoned set. */
  crossRatio: z.number().min(0).max(100).default(2),
  /** Seed of the control points; absent: derived from the attack seed. */
  gridSeed: z.number().int().min(0).max(2 ** 32 - 1).optional(),
  /**
   * trainingControlled (default; the paper's and BackdoorBench's WaNet, the tables' WaNet): the
   * attacker runs training, poisoning every batch afresh (wanetTraining.ts); poisonOnly: a
   * fixed poisoned set handed to standard training (the earlier default).
   */
  mode: z.enum(['trainingControlled', 'poisonOnly']).default('trainingControlled'),
  /**
   * WaNet's own augmentation of every training batch after poisoning (trainingControlled only;
   * it replaces the recipe's): random crop after `padding` zero pixels (probability 0.8), random
   * rotation within +-`rotation` degrees (probability 0.5), horizontal flip when `flip`
   * (absent: the recipe's `training.augment.flip`, the data set's convention).
   */
  augment: z
    .strictObject({
      padding: z.number().int().min(0).max(16).default(5),
      rotation: z.number().min(0).max(180).default(10),
      flip: z.boolean().optional(),
    })
    .default({ padding: 5, rotation: 10 }),
  /** trainingControlled only: epochs of the attacker's run (absent: the tier's training.epochs) */
  epochs: attackerEpochs,
}).superRefine((c, ctx) => {
  if (c.mode === 'poisonOnly' && c.epochs !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['epochs'], message: `${poisonOnlyEpochsMessage} (this wanet is mode poisonOnly)` });
  }
});

export type WanetConfig = z.output<typeof wanetConfigSchema>;

// Narcissus (narcissus.ts)
/** The public out-of-distribution set the surrogate learns features from. */
export const narcissusPoodSchema = z.discriminatedUnion('format', [
  /** Fashion-MNIST (default location) for real 32x32x3 data, the synthetic set otherwise (see resolvePoodChoice) */
  z.strictObject({ format: z.literal('auto') }),
  /** generated gratings with their own seed and number of classes: a related but different distribution */
  z.strictObject({
    format: z.literal('synthetic'),
    size: z.number().int().min(10).default(2000),
    numClasses: z.number().int().min(2).max(30).default(6),
    seed: z.number().int().default(1),
  }),
  /** Fashion-MNIST, zero-padded to 32x32x3 (toRgb32) when the poisoned images are 32x32x3 */
  z.strictObject({
    format: z.literal('fashionMnist'),
    path: z.string().min(1).optional(),
    /** class-stratified subset of the training split used for the surrogate */
    size: z.number().int().min(10).default(10000),
  }),
]);
export type NarcissusPood = z.output<typeof narcissusPoodSchema>;

export const narcissusConfigSchema = z.strictObject({
  name: z.literal('narcissus'),
  ...baseAttackShape,
  /** fraction of the whole training set; 0.0005 = 0.5% of a CIFAR-10 class (attacks.md) */
  rate: z.number().gt(0).max(1).default(0.0005),
  pood: narcissusPoodSchema.default({ format: 'auto' }),
  /** L-inf radius of delta in [0,1] pixel units */
  linfRadius: z.number().gt(0).max(1).default(16 / 255),
  /** test-time magnification of delta */
  testMultiplier: z.number().gt(0).default(3),
  surrogateArch: ArchitectureName.default('smallCnn'),
  surrogateEpochs: z.number().int().min(1).default(5),
  surrogateLearningRate: z.number().positive().default(0.05),
  /** poison warm-up: passes over the target-class samples, SGD at warmupLearningRate */
  warmupRounds: z.number().int().min(0).default(5),
  warmupLearningRate: z.number().positive().default(0.1),
  /** trigger generation: passes over the target-class samples, Adam at triggerLearningRate */
  triggerRounds: z.number().int().min(1).default(1000),
  triggerLearningRate: z.number().positive().default(0.01),
  /** sign: delta -= lr * sign(grad) (L-inf PGD); adam: Adam steps (see narcissusTrigger.ts for why sign is the default) */
  triggerStep: z.enum(['sign', 'adam']).default('sign'),
  batchSize: z.number().int().min(2).default(128),
  /** random crop (zero padding) and horizontal flip for surrogate, warm-up and trigger generation */
  augment: z.strictObject({ padding: z.number().int().min(0).max(16).default(4), flip: z.boolean().default(true) }).default({ padding: 4, flip: true }),
});
export type NarcissusConfig = z.output<typeof narcissusConfigSchema>;

/**
 * Per attack with a learned trigger: the config fields the trigger does not read (Narcissus: the
 * poisoning rate and the test-time multiplier). Every other field keys the stored trigger
 * (activities/learnedTriggerCache.ts), and sweeps group cells that differ only in these
 * (schemas/sweep.ts sharedStageKey), so the trigger is learned once. Here, in the pure config
 * module, because the sweep workflow reads it too.
 */
export const LEARNED_TRIGGER_IGNORES: Readonly<Record<string, readonly string[]>> = { narcissus: ['rate', 'testMultiplier'] };

// Input-Aware (inputAware.ts)
const channelCount = z.number().int().min(1).max(512);

export const inputAwareConfigSchema = z.strictObject({
  name: z.literal('inputaware'),
  ...baseAttackShape,
  /** cross samples per backdoor sample, in each batch and in the materialised set (attacks.md: an equal number) */
  crossRatio: z.number().min(0).max(10).default(1),
  /** mask training target: the mean mask value above which the norm penalty applies */
  maskDensity: z.number().gt(0).lt(1).default(0.032),
  maskNormWeight: z.number().min(0).default(100),
  /** weight of ||x1 - x2|| / ||G(x1) - G(x2)|| (and of the mask's own diversity term) */
  diversityWeight: z.number().min(0).default(1),
  /** mask generator training, Adam betas (0.5, 0.9) */
  maskEpochs: z.number().int().min(1).default(25),
  maskLearningRate: z.number().positive().default(0.01),
  /** pattern generator, Adam betas (0.5, 0.9), trained jointly with the classifier (whose recipe sets epochs, batch, SGD) */
  generatorLearningRate: z.number().positive().default(0.01),
  /** encoder widths of both generators; the decoder mirrors them */
  generatorChannels: z.tuple([channelCount, channelCount, channelCount]).default([32, 64, 128]),
  /** epochs of the joint phase of the attacker's run (absent: the tier's training.epochs); maskEpochs come first either way */
  epochs: attackerEpochs,
});
export type InputAwareConfig = z.output<typeof inputAwareConfigSchema>;

/** Every attack config, discriminated on `name`. */
export const attackConfigSchema = z.discriminatedUnion('name', [
  badnetsConfigSchema,
  blendedConfigSchema,
  sigConfigSchema,
  wanetConfigSchema,
  narcissusConfigSchema,
  inputAwareConfigSchema,
]);
export type AttackConfig = z.output<typeof attackConfigSchema>;

/** The names a config may give, sorted (the registry holds one plugin for each). */
export const attackNames: readonly AttackConfig['name'][] = attackConfigSchema.options.map((o) => o.shape.name.value).sort();

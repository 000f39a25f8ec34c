/**
 * The purify run configuration: the single source of truth for what a run does. Files
 * (YAML or JSON) are parsed into this schema before any work starts; the workflow parses
 * its input again, so a config that reaches Temporal by another route is held to the same rules.
 */
import { z } from 'zod';
import { attackConfigSchema, attackNames } from '../core/attacks/configs';
import { NtmlConfig } from '../core/ntml/config';
import { defenseConfigSchema, defenseNames } from '../core/defenses/configs';
import { TrainRecipe, recipeConflicts } from '../core/train/recipe';
import { ArchitectureName, InputRange } from '../core/models/names';
import { fileLocation, folderLocation, localPath } from './location';

// every location field goes through schemas/location.ts: scheme, bucket, key segments
const location = fileLocation;

const imageSide = z.number().int().min(8).max(256).default(32).describe('images are resized to size x size (antialiased bilinear)');
const classList = z
  .array(z.string().min(1))
  .min(2)
  .refine((names) => new Set(names).size === names.length, 'class names must be distinct')
  .describe('class folder names in label order (default: integer folder names are the labels, other names are sorted)');
const ImageFolderSplit = z
  .object({
    dir: localPath.describe('a local folder'),
    labels: localPath.optional().describe('CSV with a file column (Filename/Path) and a class column (ClassId/label); paths relative to dir'),
  })
  .strict();

/** Clean data from which an evaluation-mode run draws D_c and poisons the rest. */
export const EvaluationData = z.discriminatedUnion('format', [
  z
    .object({
      format: z.literal('synthetic'),
      trainSize: z.number().int().min(20).max(200_000).default(2000),
      testSize: z.number().int().min(10).max(100_000).default(1000),
      height: z.number().int().min(8).max(128).default(32),
      width: z.number().int().min(8).max(128).default(32),
      channels: z.union([z.literal(1), z.literal(3)]).default(3),
      numClasses: z.number().int().min(2).max(100).default(10),
      noise: z.number().min(0).max(64).optional(),
    })
    .strict(),
  z
    .object({
      format: z.literal('cifar10'),
      path: localPath.describe('folder holding cifar-10-batches-bin files (data_batch_1.bin ... test_batch.bin)'),
      trainSubset: z.number().int().min(10).optional().describe('class-stratified subset of the training split'),
    })
    .strict(),
  z
    .object({
      format: z.literal('fashionMnist'),
      path: localPath.optional().describe('folder with the IDX files (default: Debian dataset-fashion-mnist)'),
      trainSubset: z.number().int().min(10).optional(),
      rgb32: z.boolean().default(false).describe('pad to 32x32 and replicate to 3 channels'),
    })
    .strict(),
  z
    .object({
      format: z.literal('gtsrb'),
      path: localPath.describe('GTSRB root: Final_Training/Images + Final_Test/Images with GT-final_test.csv, or Kaggle Train/ + Test.csv'),
      size: imageSide,
      trainSubset: z.number().int().min(10).optional(),
    })
    .strict(),
  z
    .object({
      format: z.literal('imageFolder'),
      train: ImageFolderSplit.describe('training split: one subfolder per class, or a folder with a labels CSV'),
      test: ImageFolderSplit.describe('test split, same classes'),
      size: imageSide,
      channels: z.union([z.literal(1), z.literal(3)]).default(3),
      classes: classList.optional(),
      trainSubset: z.number().int().min(10).optional(),
    })
    .strict(),
]);
export type EvaluationData = z.infer<typeof EvaluationData>;

/** A user's data set: an ntml data set (.ntds), a CIFAR-10 binary batch, an IDX pair, or a folder of images. */
export const DatasetFile = z.discriminatedUnion('format', [
  z.object({ format: z.literal('ntml'), location }).strict(),
  z.object({ format: z.literal('cifar10Batch'), location }).strict(),
  z.object({ format: z.literal('idx'), images: location, labels: location, numClasses: z.number().int().min(2).default(10) }).strict(),
  z
    .object({
      format: z.literal('imageFolder'),
      dir: folderLocation.describe('a local folder readable by the workers (or file:// URI): one subfolder per class, or images named in labels'),
      labels: location.optional().describe('CSV with a file column (Filename/Path) and a class column (ClassId/label); paths relative to dir'),
      size: imageSide,
      channels: z.union([z.literal(1), z.literal(3)]).default(3),
      classes: classList.optional(),
      numClasses: z.number().int().min(2).optional().describe('when a folder does not hold every class'),
    })
    .strict(),
]);
export type DatasetFile = z.infer<typeof DatasetFile>;

export const ModelSpec = z.union([
  z.object({ arch: ArchitectureName }).strict(),
  z
    .object({
      layersModel: location.describe('model.json of a tfjs layers model (weights files beside it)'),
      inputRange: InputRange.default('0-1'),
    })
    .strict(),
]);
export type ModelSpec = z.infer<typeof ModelSpec>;

export const CleanBudget = z.union([
  z.number().int().min(1).describe('number of clean samples'),
  z.object({ fraction: z.number().gt(0).lt(1) }).strict(),
]);

export const Tier = z.enum(['ci', 'cpu', 'paper']);
export type Tier = z.infer<typeof Tier>;

// protocol.md's tiers; paper is the BackdoorBench protocol (PreAct-ResNet18, SGD lr 0.01 cosine,
// wd 5e-4, batch 128, 100 epochs), meant for GPU workers
const tierRecipes: Record<Tier, z.input<typeof TrainRecipe>> = {
  ci: { epochs: 6, batchSize: 64, learningRate: 0.05 },
  // one-cycle + Nesterov at peak 0.2 since issue 19 (bench/results/recipe-cpu: BadNets dev seed 1,
  // clean ACC 77.2 against 70.5 for the earlier cosine decay from 0.05)
  cpu: { epochs: 8, batchSize: 128, learningRate: 0.2, schedule: 'oneCycle', nesterov: true, warmupFraction: 0.25 },
  paper: { epochs: 100, batchSize: 128, learningRate: 0.01 },
};
/** The tier's standard-training recipe before a config's `training` overrides (benchmarks start from it). */
export function tierRecipe(tier: Tier): TrainRecipe {
  return TrainRecipe.parse(tierRecipes[tier]);
}

/**
 * The tier's recipe with a config's overrides. A config that picks another schedule drops the
 * tier's one-cycle warm-up with it (the warm-up belongs to that schedule; keeping it would fail
 * validation on a field the user never wrote); a warm-up the user sets is kept and checked.
 */
function withOverrides(tier: Tier, overrides: Partial<z.input<typeof TrainRecipe>> = {}): z.input<typeof TrainRecipe> {
  const merged = { ...tierRecipes[tier], ...overrides };
  if (overrides.schedule !== undefined && overrides.schedule !== 'oneCycle' && overrides.warmupFraction === undefined) delete merged.warmupFraction;
  return merged;
}
const tierModels: Record<Tier, ArchitectureName> = { ci: 'tinyCnn', cpu: 'smallCnn', paper: 'preactResnet18' };

/**
 * The recipe's fields, each optional and without its default: only what the user sets may
 * override the tier's recipe (TrainRecipe.partial() would fill in e.g. batchSize 128 and
 * flip: true for every field left out, silently replacing the tier's values).
 */
type Overrides<S extends z.ZodRawShape> = { [K in keyof S]: z.ZodOptional<S[K] extends z.ZodDefault<infer T> ? T : S[K]> };
function overridesOf<S extends z.ZodRawShape>(shape: S): Overrides<S> {
  const out: Record<string, z.ZodType> = {};
  for (const [key, schema] of Object.entries(shape)) {
    out[key] = (schema instanceof z.ZodDefault ? (schema.unwrap() as z.ZodType) : (schema as z.ZodType)).optional();
  }
  return out as Overrides<S>;
}
const TrainingOverrides = z.object(overridesOf(TrainRecipe.shape)).strict();

export const PurifyConfig = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, 'letters, digits, ".", "_" and "-", at most 64').optional(),
    mode: z.enum(['evaluation', 'protection']).default('evaluation'),
    tier: Tier.default('ci'),
    seed: z.number().int().min(0).max(2 ** 31 - 1).default(0),
    data: EvaluationData.optional().describe('evaluation mode: clean data to poison'),
    attack: z.unknown().optional().describe('evaluation mode: the attack, e.g. { name: badnets, target: 0, rate: 0.1 }'),
    cleanBudget: CleanBudget.default(100).describe('the defender\'s clean samples D_c (count or {fraction} of the training split)'),
    cleanReserve: CleanBudget.default({ fraction: 0.05 }).describe(
      'evaluation mode: the clean pool kept out of poisoning, from which D_c is drawn; the poisoned training set depends on the reserve, not on the budget, so runs with different budgets share one backdoored model',
    ),
    defense: z
      .unknown()
      .default({ name: 'ntml' })
      .describe(`the defense: ${defenseNames.join(', ')} (NT-ML's switches are in \`ntml\`)`),
    trainingSet: DatasetFile.optional().describe('protection mode: the possibly poisoned training set'),
    cleanSet: DatasetFile.optional().describe('protection mode: the small trusted clean set'),
    testSet: DatasetFile.optional().describe('protection mode: optional clean test set for ACC'),
    model: ModelSpec.optional().describe('architecture to train (default per tier) or a user tfjs layers model'),
    standardModel: z
      .object({ layersModel: location, inputRange: InputRange.default('0-1') })
      .strict()
      .optional()
      .describe('protection mode: an already trained model on the training set, used as f_std'),
    training: TrainingOverrides.optional().describe('standard training recipe (defaults per tier)'),
    ntml: NtmlConfig.default(NtmlConfig.parse({})),
    export: z
      .object({ dir: localPath.optional() })
      .strict()
      .optional()
      .describe('where the CLI writes model.json + weights.bin of the purified model'),
  })
  .strict()
  .superRefine((cfg, ctx) => {
    const need = (field: keyof typeof cfg, why: string) => {
      if (cfg[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required: ${why}` });
    };
    const forbid = (field: keyof typeof cfg, why: string) => {
      if (cfg[field] !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: `not allowed: ${why}` });
    };
    if (cfg.mode === 'evaluation') {
      need('data', 'evaluation mode poisons clean data');
      need('attack', 'evaluation mode needs the attack to apply, e.g. { name: badnets }');
      forbid('trainingSet', 'evaluation mode builds its training set from `data`');
      forbid('cleanSet', 'evaluation mode draws the clean set from `data`');
      forbid('standardModel', 'evaluation mode trains the standard model on the poisoned data');
      const attackName = (cfg.attack as { name?: unknown } | undefined)?.name;
      if (cfg.attack !== undefined && !(attackNames as readonly string[]).includes(attackName as string)) {
        ctx.addIssue({
          code: 'custom',
          path: ['attack', 'name'],
          message: `unknown attack ${JSON.stringify(attackName)}; known attacks: ${attackNames.join(', ')}`,
        });
      } else if (cfg.attack !== undefined) {
        const parsed = attackConfigSchema.safeParse(cfg.attack);
        if (!parsed.success) {
          for (const issue of parsed.error.issues) ctx.addIssue({ ...issue, path: ['attack', ...issue.path] } as any);
        }
      }
    } else {
      need('trainingSet', 'protection mode purifies a model of your training set');
      need('cleanSet', 'protection mode needs a small trusted clean set');
      forbid('data', 'protection mode takes trainingSet/cleanSet');
      forbid('attack', 'protection mode does not know the trigger');
    }
    // the tier's recipe with the user's overrides, as the transform below merges them
    for (const [field, message] of recipeConflicts(withOverrides(cfg.tier, cfg.training))) {
      ctx.addIssue({ code: 'custom', path: ['training', field], message });
    }
    const defense = defenseConfigSchema.safeParse(cfg.defense);
    if (!defense.success) {
      const name = (cfg.defense as { name?: unknown } | undefined)?.name;
      if (!defenseNames.includes(name as never)) {
        ctx.addIssue({
          code: 'custom',
          path: ['defense', 'name'],
          message: `unknown defense ${JSON.stringify(name)}; known defenses: ${defenseNames.join(', ')}`,
        });
      } else {
        for (const issue of defense.error.issues) ctx.addIssue({ ...issue, path: ['defense', ...issue.path] } as any);
      }
    }
  })
  .transform((cfg) => {
    const tier = cfg.tier;
    return {
      ...cfg,
      attack: cfg.attack === undefined ? undefined : attackConfigSchema.parse(cfg.attack),
      defense: defenseConfigSchema.parse(cfg.defense),
      model: cfg.model ?? { arch: tierModels[tier] },
      training: TrainRecipe.parse({
        // the synthetic classes are oriented gratings: a mirror image is another class
        ...(cfg.data?.format === 'synthetic' ? { augment: { padding: 4, flip: false } } : {}),
        ...withOverrides(tier, cfg.training),
      }),
    };
  });
export type PurifyConfigInput = z.input<typeof PurifyConfig>;
export type PurifyConfig = z.output<typeof PurifyConfig>;

export class ConfigError extends Error {
  constructor(message: string, readonly issues: string[] = []) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** One line per problem, each naming the field path, e.g. `attack.rate: Too big: expected number to be <=1`. */
export function formatIssues(error: z.ZodError): string[] {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
}

export function parsePurifyConfig(raw: unknown, source = 'config'): PurifyConfig {
  const result = PurifyConfig.safeParse(raw);
  if (!result.success) {
    const issues = formatIssues(result.error);
    throw new ConfigError(`${source} is invalid:\n  ${issues.join('\n  ')}`, issues);
  }
  return result.data;
}

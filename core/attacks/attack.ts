/**
 * The attack plugin interface and the registry of attacks.
 *
 * To add an attack: write core/attacks/<name>.ts exporting a config schema (a zod
 * strictObject with `name: z.literal('<name>')` and `...baseAttackShape`) and an
 * AttackPlugin (see badnets.ts, the reference), then add both to BUILTIN_ATTACKS and
 * attackConfigSchema below.
 */
import { z } from 'zod';
import type { ImageDataset } from '../data/dataset';
import type { TrainingCheckpoint } from '../train/checkpoint';
import { badnets, badnetsConfigSchema } from './badnets';
import { blended, blendedConfigSchema } from './blended';
import { sig, sigConfigSchema } from './sig';
import { wanet, wanetConfigSchema } from './wanet';
import { narcissus, narcissusConfigSchema } from './narcissus';
import { inputAware, inputAwareConfigSchema } from './inputAware';
import {
  AttackConfigError,
  classCounts,
  poisonCount,
  validateBaseConfig,
  zodToAttackError,
  type AttackKind,
  type BaseAttackConfig,
  type DatasetShape,
  type PoisonResult,
  type TriggerParameters,
} from './base';

export {
  AttackConfigError,
  attackTargetLabel,
  baseAttackShape,
  type AttackKind,
  type BaseAttackConfig,
  type DatasetShape,
  type PoisonRecord,
  type PoisonResult,
  type TriggerParameters,
} from './base';

/**
 * How a long preparePoison (a learned trigger) is stopped, saves its progress and continues
 * after a restart. `resume` is a state this same computation (same train, eligible indices,
 * config and seed) handed to `checkpoint` earlier; continuing from it gives the trigger an
 * uninterrupted run gives, bit for bit.
 */
export interface PrepareControl {
  signal?: AbortSignal;
  resume?: TrainingCheckpoint;
  checkpoint?: (state: TrainingCheckpoint) => Promise<void>;
  /** optimisation rounds between checkpoints (the plugin picks a default otherwise) */
  checkpointEvery?: number;
  /** called between optimisation steps (heartbeats) */
  onProgress?: (done: number, total: number) => Promise<void> | void;
}

export interface AttackPlugin<C extends BaseAttackConfig = BaseAttackConfig> {
  readonly name: string;
  readonly kind: AttackKind;
  readonly description: string;
  /** zod schema of the config, defaults per attacks.md; parse output is C. */
  readonly configSchema: z.ZodType<C, any>;
  /**
   * The plugin's own data-set-dependent checks (trigger size, channels, ...), not the shared
   * fields (validateAttackAgainst does those); throws AttackConfigError naming the field.
   */
  validateAgainst?(config: C, ds: DatasetShape): void;
  /**
   * Only for attacks whose trigger is learned (Narcissus): computes the trigger once, before
   * poisonTrainingSet, which then receives the result as `triggerParameters`. Async because
   * it trains models; deterministic in (train, eligibleIndices, config, seed).
   */
  preparePoison?(train: ImageDataset, eligibleIndices: Int32Array, config: C, seed: number, control?: PrepareControl): Promise<TriggerParameters>;
  /**
   * Poisons the training set. Poison indices come only from `eligibleIndices` (the
   * training indices outside the clean budget). Deterministic in (train, config, seed);
   * `train` is not modified. `triggerParameters`: preparePoison's result, for learned triggers.
   */
  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: C, seed: number, triggerParameters?: TriggerParameters): PoisonResult;
  /**
   * A triggered copy of every image, labels unchanged. `seed` is the attack seed used for
   * poisoning (trigger patterns derive from it); `triggerParameters` is the record's, for
   * attacks whose trigger was learned.
   */
  applyTrigger(images: ImageDataset, config: C, seed: number, triggerParameters?: TriggerParameters): ImageDataset;
}

/** Every attack config, discriminated on `name`. */
export const attackConfigSchema = z.discriminatedUnion('name', [badnetsConfigSchema, blendedConfigSchema, sigConfigSchema, wanetConfigSchema, narcissusConfigSchema, inputAwareConfigSchema]);
export type AttackConfig = z.output<typeof attackConfigSchema>;

const BUILTIN_ATTACKS: AttackPlugin<any>[] = [badnets, blended, sig, wanet, narcissus, inputAware];

const registry = new Map<string, AttackPlugin<any>>(BUILTIN_ATTACKS.map((p) => [p.name, p]));

/** Read-only view of the registered attacks, by name. */
export const attackRegistry: ReadonlyMap<string, AttackPlugin<any>> = registry;

export function knownAttacks(): string[] {
  return [...registry.keys()].sort();
}

/** Registers an extra attack (e.g. from a test); its name must be new. */
export function registerAttack(plugin: AttackPlugin<any>): void {
  if (registry.has(plugin.name)) throw new Error(`attack "${plugin.name}" is already registered`);
  registry.set(plugin.name, plugin);
}

export function getAttack(name: string): AttackPlugin<any> {
  const plugin = registry.get(name);
  if (!plugin) {
    throw new AttackConfigError('name', `unknown attack ${JSON.stringify(name)}; known attacks: ${knownAttacks().join(', ')}`);
  }
  return plugin;
}

/**
 * Parses a raw attack config (from YAML/JSON), filling defaults; errors name the field.
 * With a literal name (`parseAttackConfig({ name: 'badnets' })`) the result is that attack's config type.
 */
export function parseAttackConfig<N extends AttackConfig['name']>(raw: { name: N } & Record<string, unknown>): Extract<AttackConfig, { name: N }>;
export function parseAttackConfig(raw: unknown): AttackConfig;
export function parseAttackConfig(raw: unknown): AttackConfig {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new AttackConfigError('attack', `expected an object with a "name" field (one of ${knownAttacks().join(', ')}), got ${JSON.stringify(raw)}`);
  }
  const name = (raw as { name?: unknown }).name;
  if (typeof name !== 'string') {
    throw new AttackConfigError('name', `required, one of ${knownAttacks().join(', ')}`);
  }
  const plugin = getAttack(name);
  const result = plugin.configSchema.safeParse(raw);
  if (!result.success) throw zodToAttackError(result.error);
  return result.data as AttackConfig;
}

/** Target class in range and the plugin's trigger checks: what a test-time trigger needs. */
export function validateTriggerAgainst(config: BaseAttackConfig, ds: DatasetShape): void {
  const plugin = getAttack(config.name);
  if (config.target >= ds.numClasses) {
    throw new AttackConfigError('target', `target class ${config.target} is outside [0, ${ds.numClasses - 1}] for ${ds.name}`);
  }
  plugin.validateAgainst?.(config, ds);
}

/**
 * Checks a parsed config against the data set it will poison: target within
 * [0, numClasses), a non-zero poison count, clean-label rate within the target class,
 * all-to-all only for dirty-label attacks, plus the plugin's own checks (trigger size...).
 */
export function validateAttackAgainst(config: BaseAttackConfig, ds: DatasetShape): void {
  const plugin = getAttack(config.name);
  validateBaseConfig(config, ds);
  if (plugin.kind === 'clean-label') {
    if (config.labelMap === 'allToAll') {
      throw new AttackConfigError('labelMap', `${plugin.name} is a clean-label attack; it supports only "allToOne"`);
    }
    const need = poisonCount(config.rate, ds.labels.length);
    const have = classCounts(ds)[config.target];
    if (need > have) {
      throw new AttackConfigError(
        'rate',
        `clean-label rate ${config.rate} needs ${need} images of target class ${config.target}, but ${ds.name} has only ${have}`,
      );
    }
  }
  plugin.validateAgainst?.(config, ds);
}

/** The JSON-able form of a PoisonResult (without the data set), for the codec's `meta`. */
export function poisonResultToMeta(result: PoisonResult): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    record: result.record,
    poisonedIndices: Array.from(result.poisonedIndices),
    originalLabels: Array.from(result.originalLabels),
  };
  if (result.crossIndices) meta.crossIndices = Array.from(result.crossIndices);
  return meta;
}

const poisonMetaSchema = z.object({
  record: z.object({
    attack: z.string(),
    kind: z.enum(['dirty-label', 'clean-label', 'training-controlled']),
    config: z.looseObject({ name: z.string() }),
    seed: z.number(),
    triggerParameters: z.record(z.string(), z.unknown()),
    poisonedCount: z.number().int().nonnegative(),
    trainSize: z.number().int().nonnegative(),
  }),
  poisonedIndices: z.array(z.number().int().nonnegative()),
  originalLabels: z.array(z.number().int().nonnegative()),
  crossIndices: z.array(z.number().int().nonnegative()).optional(),
});

/** Rebuilds a PoisonResult from a decoded poisoned data set and its meta; checks consistency. */
export function poisonResultFromMeta(dataset: ImageDataset, meta: unknown, source: string): PoisonResult {
  const parsed = poisonMetaSchema.safeParse(meta);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AttackConfigError(`meta.${issue.path.map(String).join('.')}`, `${source}: ${issue.message}`);
  }
  const m = parsed.data;
  const n = dataset.labels.length;
  if (m.originalLabels.length !== m.poisonedIndices.length || m.record.poisonedCount !== m.poisonedIndices.length) {
    throw new AttackConfigError('meta.poisonedIndices', `${source}: ${m.poisonedIndices.length} indices, ${m.originalLabels.length} original labels, poisonedCount ${m.record.poisonedCount}`);
  }
  if (m.record.trainSize !== n || m.poisonedIndices.some((i) => i >= n) || (m.crossIndices ?? []).some((i) => i >= n)) {
    throw new AttackConfigError('meta.poisonedIndices', `${source}: indices do not fit the ${n} images of the data set (record says ${m.record.trainSize})`);
  }
  const config = parseAttackConfig(m.record.config);
  const result: PoisonResult = {
    dataset,
    poisonedIndices: Int32Array.from(m.poisonedIndices),
    originalLabels: Int32Array.from(m.originalLabels),
    record: { ...m.record, config },
  };
  if (m.crossIndices) result.crossIndices = Int32Array.from(m.crossIndices);
  return result;
}

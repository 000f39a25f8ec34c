/**
 * The registry of attacks: name -> plugin. The only place that lists the plugins; lookups,
 * config parsing and the data-set checks that need a plugin by name live here too.
 */
import type { AttackPlugin } from './attack';
import { AttackConfigError, requireAllToOne, requireRateWithinTargetClass, validateBaseConfig, zodToAttackError, type BaseAttackConfig, type DatasetShape } from './base';
import type { AttackConfig } from './configs';
import { badnets } from './badnets';
import { blended } from './blended';
import { sig } from './sig';
import { wanet } from './wanet';
import { narcissus } from './narcissus';
import { inputAware } from './inputAware';

export { AttackConfigError };
export type { AttackConfig };

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

/**
 * True when the attacker runs the training (Input-Aware; WaNet in its default mode): nothing is
 * poisoned before training, and the standard-training stage is the attacker's run.
 */
export function controlsTraining(config: BaseAttackConfig): boolean {
  const plugin = getAttack(config.name);
  return plugin.kind === 'training-controlled' || (plugin.controlsTraining?.(config) ?? false);
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
    requireAllToOne(config);
    requireRateWithinTargetClass(ds, config);
  }
  plugin.validateAgainst?.(config, ds);
}

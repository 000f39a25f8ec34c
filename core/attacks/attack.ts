/**
 * The attack plugin interface: what one attack file implements. Nothing here runs; the
 * plugins import this file, and registry.ts (which imports the plugins) is the only place
 * that lists them, so no plugin ever imports the registry back.
 *
 * To add an attack: its config schema goes in configs.ts, its plugin in
 * core/attacks/<name>.ts (badnets.ts is the reference), and one line in registry.ts.
 */
import type { z } from 'zod';
import type { ImageDataset } from '../data/dataset';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { AttackKind, BaseAttackConfig, DatasetShape, PoisonResult, TriggerParameters } from './base';

export type { AttackKind, BaseAttackConfig, DatasetShape, PoisonRecord, PoisonResult, TriggerParameters } from './base';

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
  /**
   * A trigger this attack learned before from the same attacker data, seed and trigger
   * settings (Narcissus: its trigger does not depend on the poisoning rate or the test-time
   * multiplier): poisoning uses it as is and nothing is optimised. bench/narcissusRate.ts varies
   * the rate on one learned trigger this way.
   */
  learnedTrigger?: TriggerParameters;
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
   * For an attack that runs training in one of its modes (WaNet's `trainingControlled`): true
   * when this config does. Attacks of kind `training-controlled` always do and need not say so.
   */
  controlsTraining?(config: C): boolean;
  /**
   * Only for attacks whose trigger is learned (Narcissus): computes the trigger once, before
   * poisonTrainingSet, which then receives the result as `triggerParameters`. Async because
   * it trains models; deterministic in (train, eligibleIndices, config, seed).
   */
  preparePoison?(train: ImageDataset, eligibleIndices: Int32Array, config: C, seed: number, control?: PrepareControl): Promise<TriggerParameters>;
  /**
   * With preparePoison: the config fields the learned trigger does not read (Narcissus: the
   * poisoning rate and the test-time multiplier). Every other field of the attack config keys
   * the stored trigger (activities/learnedTriggerCache.ts), so a field added later enters the
   * key by default; listing one here lets runs that differ only in it share one trigger.
   */
  readonly learnedTriggerIgnores?: readonly string[];
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

/**
 * What a training-controlled attacker's run (the standard-training stage of Input-Aware and
 * WaNet) starts from: the training set, the indices it may poison, and the test set from which
 * it builds the triggered test set.
 */
export interface AttackerRunInput {
  train: ImageDataset;
  /** training indices outside the clean budget: only these are ever poisoned or warped */
  eligibleIndices: Int32Array;
  /** the clean test set, from which the triggered test set is built */
  test?: ImageDataset;
  attackSeed: number;
}

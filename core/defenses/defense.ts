/**
 * The defense plugin interface. A defense takes a stored backdoored model and the
 * defender's clean budget (split into a fitting part and a held-out slice) and returns
 * the defended model. Every threshold and checkpoint choice uses the held-out slice or a
 * value fixed in advance, never the test set; each plugin states its rule in the outcome.
 *
 * Training phases run through the shared epoch loop and ask the context for their
 * checkpoint control by phase name, so the activity that hosts a defense can resume
 * each phase from its newest checkpoint (a finished phase resumes from its last epoch
 * and costs nothing).
 */
import type { z } from 'zod';
import type { ImageDataset } from '../data/dataset';
import type { Classifier } from '../models/classifier';
import type { AugmentOptions } from '../train/augment';
import type { TrainingCheckpoint } from '../train/checkpoint';
import type { EpochHooks, EpochRecord } from '../train/epochLoop';
import type { BaselineDefenseConfig } from './configs';

export interface PhaseControl {
  resume?: TrainingCheckpoint;
  hooks?: EpochHooks;
}

export interface DefenseContext {
  /** D_c minus the held-out slice: what the defense may fit on */
  cleanFit: ImageDataset;
  /** the held-out slice of D_c: the only data selection may score on */
  cleanHeldOut: ImageDataset;
  /** the data set's augmentation (flip only where it keeps the class) */
  augment: AugmentOptions;
  seed: number;
  /** checkpoint control of one named training phase of `epochs` epochs */
  phase(name: string, epochs: number): Promise<PhaseControl>;
  /** liveness and progress of work outside the epoch loop (pruning searches, mask learning) */
  progress?(detail: Record<string, unknown>): void;
  signal?: AbortSignal;
}

export interface DefenseOutcome {
  /** the defended model (may be the input object, changed in place) */
  model: Classifier;
  /** per-phase epoch histories */
  history: Record<string, EpochRecord[]>;
  /** how every threshold / checkpoint was chosen, for the report */
  selectionRule: string;
  /** numbers worth reporting: pruned neurons, chosen threshold, selected round, ... */
  details: Record<string, number | string | boolean | number[]>;
}

export interface DefensePlugin<C extends BaselineDefenseConfig = BaselineDefenseConfig> {
  readonly name: C['name'];
  readonly description: string;
  readonly configSchema: z.ZodType<C, any>;
  /** the clean budget the defense's own papers/BackdoorBench use */
  readonly defaultCleanBudget: number | { fraction: number };
  run(backdoored: Classifier, ctx: DefenseContext, config: C): Promise<DefenseOutcome>;
}

/** A context for calling defenses outside Temporal: no checkpoints. */
export function plainContext(o: Omit<DefenseContext, 'phase'> & Partial<Pick<DefenseContext, 'phase'>>): DefenseContext {
  return { ...o, phase: o.phase ?? (async () => ({})) };
}

/**
 * Building blocks shared by the attack plugins: the common config fields, the error type,
 * label mapping, and the seeded draws of poison indices. The config fields themselves
 * (baseAttackShape) live in configs.ts, which must stay free of everything but zod.
 */
import type { z } from 'zod';
import { Rng, deriveSeed } from '../rng';
import { imageBytes, type ImageDataset } from '../data/dataset';

export type AttackKind = 'dirty-label' | 'clean-label' | 'training-controlled';

/** An invalid attack configuration; `field` is the offending config field (e.g. "rate"). */
export class AttackConfigError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = 'AttackConfigError';
  }
}

export interface BaseAttackConfig {
  name: string;
  target: number;
  rate: number;
  labelMap: 'allToOne' | 'allToAll';
}

/** The shape facts validation needs (a full data set also fits). */
export type DatasetShape = Pick<ImageDataset, 'name' | 'height' | 'width' | 'channels' | 'numClasses' | 'labels'>;

export type TriggerParameters = Record<string, unknown>;

/** What one attack did to the training set; JSON-able, stored with the poisoned data set. */
export interface PoisonRecord {
  attack: string;
  kind: AttackKind;
  config: BaseAttackConfig;
  seed: number;
  /** Everything needed to re-apply the trigger at test time (pattern seeds, alpha, ...). */
  triggerParameters: TriggerParameters;
  poisonedCount: number;
  trainSize: number;
}

export interface PoisonResult {
  /** The full training set, poisoned images and labels replaced; the input is not modified. */
  dataset: ImageDataset;
  /** Sorted ascending. */
  poisonedIndices: Int32Array;
  /** Labels before poisoning, parallel to poisonedIndices. */
  originalLabels: Int32Array;
  /** Samples modified but keeping their label (WaNet noise set, IAD cross samples), sorted; absent if none. */
  crossIndices?: Int32Array;
  record: PoisonRecord;
}

/** The label an attack wants for a sample of true class `y`. */
export function attackTargetLabel(config: Pick<BaseAttackConfig, 'target' | 'labelMap'>, y: number, numClasses: number): number {
  return config.labelMap === 'allToAll' ? (y + 1) % numClasses : config.target;
}

/** Number of poisoned samples: round(rate * training-set size). */
export function poisonCount(rate: number, trainSize: number): number {
  return Math.round(rate * trainSize);
}

/** Turns the first zod issue into an AttackConfigError naming the field. */
export function zodToAttackError(error: z.ZodError, prefix = ''): AttackConfigError {
  const issue = error.issues[0];
  let field = issue.path.map(String).join('.');
  if (!field && issue.code === 'unrecognized_keys') field = (issue as unknown as { keys: string[] }).keys.join(', ');
  if (!field) field = prefix || 'config';
  else if (prefix) field = `${prefix}.${field}`;
  const all = error.issues.map((i) => `${i.path.map(String).join('.') || '(root)'}: ${i.message}`).join('; ');
  return new AttackConfigError(field, error.issues.length > 1 ? `${issue.message} (all problems: ${all})` : issue.message);
}

/** Checks shared fields against a data set: target range, non-zero poison count. */
export function validateBaseConfig(config: BaseAttackConfig, ds: DatasetShape): void {
  if (config.target >= ds.numClasses) {
    throw new AttackConfigError('target', `target class ${config.target} is outside [0, ${ds.numClasses - 1}] for ${ds.name}`);
  }
  const n = ds.labels.length;
  if (poisonCount(config.rate, n) < 1) {
    throw new AttackConfigError('rate', `rate ${config.rate} of ${n} training images poisons no image (round(rate * n) = 0)`);
  }
}

/** Eligible indices must be distinct and inside the data set. */
export function checkEligible(eligible: Int32Array, n: number): void {
  const seen = new Uint8Array(n);
  for (let k = 0; k < eligible.length; k++) {
    const i = eligible[k];
    if (!(i >= 0 && i < n)) throw new AttackConfigError('eligibleIndices', `index ${i} is outside the ${n} training images`);
    if (seen[i]) throw new AttackConfigError('eligibleIndices', `index ${i} appears twice`);
    seen[i] = 1;
  }
}

/** `count` distinct values drawn uniformly from `pool` (seeded partial Fisher-Yates), sorted. */
export function drawDistinct(pool: ArrayLike<number>, count: number, rng: Rng): Int32Array {
  const arr = Int32Array.from(pool as ArrayLike<number>);
  for (let k = 0; k < count; k++) {
    const j = k + rng.int(arr.length - k);
    const t = arr[k];
    arr[k] = arr[j];
    arr[j] = t;
  }
  return arr.slice(0, count).sort();
}

/**
 * Dirty-label draw: round(rate * n) indices uniformly from `eligible` (any class, the
 * target included). Throws (field `rate`) if that is more than the eligible pool.
 */
export function drawDirtyLabelIndices(train: DatasetShape, eligible: Int32Array, config: BaseAttackConfig, seed: number): Int32Array {
  const n = train.labels.length;
  checkEligible(eligible, n);
  const count = poisonCount(config.rate, n);
  if (count > eligible.length) {
    throw new AttackConfigError(
      'rate',
      `rate ${config.rate} needs ${count} poisoned images but only ${eligible.length} training images are eligible (outside the clean budget)`,
    );
  }
  return drawDistinct(eligible, count, new Rng(deriveSeed(config.name, 'poison-indices', seed)));
}

/**
 * Clean-label draw: round(rate * n) indices from the eligible samples of the target class.
 * Throws (field `rate`) if the class has fewer eligible samples.
 */
export function drawCleanLabelIndices(train: DatasetShape, eligible: Int32Array, config: BaseAttackConfig, seed: number): Int32Array {
  const n = train.labels.length;
  checkEligible(eligible, n);
  const count = poisonCount(config.rate, n);
  const pool = Array.from(eligible).filter((i) => train.labels[i] === config.target);
  if (count > pool.length) {
    throw new AttackConfigError(
      'rate',
      `clean-label rate ${config.rate} needs ${count} images of target class ${config.target} but only ${pool.length} are eligible`,
    );
  }
  return drawDistinct(pool, count, new Rng(deriveSeed(config.name, 'poison-indices', seed)));
}

/**
 * The common dirty-label case: draw the poison indices, stamp the trigger on a copy of each
 * drawn image (`stamp(images, index)` edits the copy in place) and relabel it to the target.
 */
export function poisonDirtyLabel(
  train: ImageDataset,
  eligible: Int32Array,
  config: BaseAttackConfig,
  seed: number,
  stamp: (images: Uint8Array, index: number) => void,
): Pick<PoisonResult, 'dataset' | 'poisonedIndices' | 'originalLabels'> {
  const poisonedIndices = drawDirtyLabelIndices(train, eligible, config, seed);
  const dataset = cloneDataset(train, `${train.name}+${config.name}`);
  const originalLabels = new Int32Array(poisonedIndices.length);
  poisonedIndices.forEach((i, k) => {
    originalLabels[k] = train.labels[i];
    stamp(dataset.images, i);
    dataset.labels[i] = attackTargetLabel(config, train.labels[i], train.numClasses);
  });
  return { dataset, poisonedIndices, originalLabels };
}

/** A clean-label attack keeps every label, so an all-to-all label map means nothing to it. */
export function requireAllToOne(config: Pick<BaseAttackConfig, 'name' | 'labelMap'>): void {
  if (config.labelMap !== 'allToOne') {
    throw new AttackConfigError('labelMap', `${config.name} is a clean-label attack; it supports only "allToOne"`);
  }
}

/** round(rate * n) for a clean-label attack, or an error naming `rate` when that is more than the whole target class of `ds`. */
export function requireRateWithinTargetClass(ds: DatasetShape, config: Pick<BaseAttackConfig, 'rate' | 'target'>): number {
  const requested = poisonCount(config.rate, ds.labels.length);
  const classSize = classCounts(ds)[config.target];
  if (requested > classSize) {
    throw new AttackConfigError(
      'rate',
      `clean-label rate ${config.rate} needs ${requested} images of target class ${config.target}, but ${ds.name} has only ${classSize}`,
    );
  }
  return requested;
}

/**
 * How many target-class images a clean-label attack poisons: round(rate * n), an error naming
 * `rate` if that is more than the whole target class; capped by the eligible target-class images
 * (those outside the clean budget). With the default rate 0.1 on a balanced 10-class set the
 * request is the whole class, of which D_c holds a few: those are left out (attacks.md:
 * "rate 0.1 (capped by class size)").
 */
export function cleanLabelPoisonCount(
  train: DatasetShape,
  eligibleIndices: Int32Array,
  config: Pick<BaseAttackConfig, 'rate' | 'target'>,
): { count: number; requested: number; eligibleTarget: number } {
  const requested = requireRateWithinTargetClass(train, config);
  let eligibleTarget = 0;
  for (const i of eligibleIndices) if (train.labels[i] === config.target) eligibleTarget++;
  if (eligibleTarget === 0) {
    throw new AttackConfigError('rate', `no image of target class ${config.target} is eligible (outside the clean budget) for poisoning`);
  }
  return { count: Math.min(requested, eligibleTarget), requested, eligibleTarget };
}

/**
 * The common clean-label case: the capped count of eligible target-class images drawn, and the
 * trigger added to a copy of each (`stamp(images, index)` edits the copy in place); labels stay.
 * `requested` and `eligibleTarget` are for the record's trigger parameters.
 */
export function poisonCleanLabel(
  train: ImageDataset,
  eligible: Int32Array,
  config: BaseAttackConfig,
  seed: number,
  stamp: (images: Uint8Array, index: number) => void,
): Pick<PoisonResult, 'dataset' | 'poisonedIndices' | 'originalLabels'> & { requested: number; eligibleTarget: number } {
  const { count, requested, eligibleTarget } = cleanLabelPoisonCount(train, eligible, config);
  const drawConfig = count === requested ? config : { ...config, rate: count / train.labels.length };
  const poisonedIndices = drawCleanLabelIndices(train, eligible, drawConfig, seed);
  const dataset = cloneDataset(train, `${train.name}+${config.name}`);
  const originalLabels = new Int32Array(poisonedIndices.length);
  poisonedIndices.forEach((i, k) => {
    originalLabels[k] = train.labels[i];
    stamp(dataset.images, i);
  });
  return { dataset, poisonedIndices, originalLabels, requested, eligibleTarget };
}

/** A copy of `ds` (pixels and labels copied) under a new name. */
export function cloneDataset(ds: ImageDataset, name: string): ImageDataset {
  return { ...ds, name, images: new Uint8Array(ds.images), labels: new Int32Array(ds.labels) };
}

/** Number of training images of each class (for clean-label checks). */
export function classCounts(ds: DatasetShape): Int32Array {
  const counts = new Int32Array(ds.numClasses);
  for (let i = 0; i < ds.labels.length; i++) {
    const y = ds.labels[i];
    if (y >= 0 && y < ds.numClasses) counts[y]++;
  }
  return counts;
}

/** Clamps a float pixel to [0, 255] and rounds it: the only way triggers reach uint8. */
export function toPixel(v: number): number {
  return v <= 0 ? 0 : v >= 255 ? 255 : Math.round(v);
}

export { imageBytes };

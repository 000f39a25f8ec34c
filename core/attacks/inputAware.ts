/**
 * Input-Aware Dynamic backdoor (IAD; Nguyen & Tran, NeurIPS 2020), training-controlled, as
 * attacks.md specifies it.
 *
 * The trigger is a function of the image: x_bd = x + (G(x) - x) * m(x), with a pattern
 * generator G and a mask m(x) = tanh(20 M(x) - 10)/2 + 0.5 from a mask generator M (both
 * conv encoder-decoders, outputs tanh/2 + 0.5). The attacker controls training:
 * inputAwareTraining.ts trains M first, then G jointly with the classifier, and the
 * IAD-trained classifier is the backdoored model (`trainInputAwareBackdoor`).
 * For defenses that retrain on the training set (NT-ML), the poisoned training set is
 * materialised from the trained generators at the same rate: round(rate * n) eligible images
 * get x_bd and the target label (dirty-label draw, any class), and round(crossRatio * that)
 * other eligible images ("cross" samples, `crossIndices`) get the pattern and mask of another
 * training image, x + (G(x') - x) * m(x'), and keep their labels.
 * Test-time: G and M applied to each test image.
 *
 * Where the generators live: they are tfjs models of a few MB, too big for a record that
 * travels through a workflow, so `triggerParameters.generatorsId` (sha256 of their encoding,
 * see encodeInputAwareGenerators) names them in a per-process registry.
 * `trainInputAwareBackdoor` registers them, so the backdoor test set can be built in the same
 * process right after training; another process stores the encoded bytes as an artifact and
 * calls `loadInputAwareGenerators(bytes)` (inputAwareTraining.ts) before applying the trigger.
 * This file holds no TensorFlow, so poisoning, listing and previewing attacks never load the
 * native backend: the registered handle carries the TensorFlow functions.
 */
import type { ImageDataset } from '../data/dataset';
import { Rng, deriveSeed } from '../rng';
import {
  AttackConfigError,
  attackTargetLabel,
  checkEligible,
  cloneDataset,
  drawDirtyLabelIndices,
  drawDistinct,
  imageBytes,
  poisonCount,
  validateBaseConfig,
  type DatasetShape,
  type PoisonResult,
  type TriggerParameters,
} from './base';
import { inputAwareConfigSchema, type InputAwareConfig } from './configs';
import type { AttackPlugin } from './attack';

export type { InputAwareConfig };

/** Trained generators as the plugin sees them: the TensorFlow work lives behind these functions. */
export interface InputAwareGeneratorHandle {
  /** sha256 (hex) of the generators' encoding */
  readonly id: string;
  readonly shape: [number, number, number];
  /**
   * x + (G(s) - x) * m(s) for every image x, in float, clipped and rounded once; s is the
   * image itself, or image k of `patternSources` (cross samples). Labels unchanged.
   */
  trigger(images: ImageDataset, patternSources?: ImageDataset): ImageDataset;
  /** mean of m(x) over `images` (the mask training target is maskDensity) */
  meanMask(images: ImageDataset): number;
}

const loadedGenerators = new Map<string, InputAwareGeneratorHandle>();

export function registerInputAwareGenerators(handle: InputAwareGeneratorHandle): void {
  loadedGenerators.set(handle.id, handle);
}

/** Forgets a handle (the caller disposes the models it owns). */
export function unregisterInputAwareGenerators(id: string): boolean {
  return loadedGenerators.delete(id);
}

/** The handle named by a record's trigger parameters; the error says how to load it. */
export function inputAwareGenerators(params: TriggerParameters | undefined): InputAwareGeneratorHandle {
  const id = params?.generatorsId;
  if (typeof id !== 'string') {
    throw new AttackConfigError(
      'triggerParameters.generatorsId',
      'inputaware is training-controlled: its trigger comes from generators trained with the backdoored model (trainInputAwareBackdoor in core/attacks/inputAwareTraining); pass that result\'s triggerParameters',
    );
  }
  const handle = loadedGenerators.get(id);
  if (!handle) {
    throw new AttackConfigError(
      'triggerParameters.generatorsId',
      `generators ${id.slice(0, 12)}... are not loaded in this process: call loadInputAwareGenerators(<their encoded bytes>) first`,
    );
  }
  return handle;
}

function validateAgainst(_config: InputAwareConfig, ds: DatasetShape): void {
  if (ds.height % 4 !== 0 || ds.width % 4 !== 0) {
    throw new AttackConfigError('name', `inputaware's generators pool twice by 2: image height and width must be multiples of 4, ${ds.name} has ${ds.height}x${ds.width}`);
  }
}

function checkShape(handle: InputAwareGeneratorHandle, ds: DatasetShape): void {
  const want = [ds.height, ds.width, ds.channels].join('x');
  if (handle.shape.join('x') !== want) {
    throw new AttackConfigError('triggerParameters.generatorsId', `generators take ${handle.shape.join('x')} images, ${ds.name} has ${want}`);
  }
}

/**
 * Cross samples of the materialised set: round(crossRatio * poisoned) eligible indices not
 * poisoned, sorted, each with a partner image (any other training image) lending its pattern.
 */
export function drawInputAwareCross(
  train: DatasetShape,
  eligible: Int32Array,
  poisoned: Int32Array,
  config: InputAwareConfig,
  seed: number,
): { crossIndices: Int32Array; partners: Int32Array } {
  const count = Math.round(config.crossRatio * poisoned.length);
  const taken = new Set(poisoned);
  const pool = Array.from(eligible).filter((i) => !taken.has(i));
  if (count > pool.length) {
    throw new AttackConfigError(
      'crossRatio',
      `${count} cross samples are needed besides the ${poisoned.length} poisoned ones, but only ${pool.length} eligible images remain`,
    );
  }
  const crossIndices = drawDistinct(pool, count, new Rng(deriveSeed(config.name, 'cross-indices', seed)));
  const rng = new Rng(deriveSeed(config.name, 'cross-partners', seed));
  const n = train.labels.length;
  const partners = Int32Array.from(crossIndices, (i) => (i + 1 + rng.int(n - 1)) % n);
  return { crossIndices, partners };
}

export const inputAware: AttackPlugin<InputAwareConfig> = {
  name: 'inputaware',
  kind: 'training-controlled',
  description: 'Input-Aware Dynamic (IAD): per-image pattern and mask generators trained with the classifier; cross samples keep their labels',
  configSchema: inputAwareConfigSchema,
  validateAgainst,

  /** Materialises the poisoned training set from trained generators (`triggerParameters.generatorsId`). */
  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: InputAwareConfig, seed: number, triggerParameters?: TriggerParameters): PoisonResult {
    validateBaseConfig(config, train);
    validateAgainst(config, train);
    checkEligible(eligibleIndices, train.labels.length);
    const handle = inputAwareGenerators(triggerParameters);
    checkShape(handle, train);
    const poisonedIndices = drawDirtyLabelIndices(train, eligibleIndices, config, seed);
    const { crossIndices, partners } = drawInputAwareCross(train, eligibleIndices, poisonedIndices, config, seed);
    const per = imageBytes(train);
    const pick = (idx: ArrayLike<number>, name: string): ImageDataset => {
      const images = new Uint8Array(idx.length * per);
      for (let k = 0; k < idx.length; k++) images.set(train.images.subarray(idx[k] * per, (idx[k] + 1) * per), k * per);
      return { ...train, name, images, labels: Int32Array.from(idx, (i) => train.labels[i]) };
    };
    const dataset = cloneDataset(train, `${train.name}+inputaware`);
    const bd = handle.trigger(pick(poisonedIndices, 'bd'));
    const cross = handle.trigger(pick(crossIndices, 'cross'), pick(partners, 'partners'));
    const originalLabels = new Int32Array(poisonedIndices.length);
    poisonedIndices.forEach((i, k) => {
      originalLabels[k] = train.labels[i];
      dataset.images.set(bd.images.subarray(k * per, (k + 1) * per), i * per);
      dataset.labels[i] = attackTargetLabel(config, train.labels[i], train.numClasses);
    });
    crossIndices.forEach((i, k) => dataset.images.set(cross.images.subarray(k * per, (k + 1) * per), i * per));
    return {
      dataset,
      poisonedIndices,
      originalLabels,
      crossIndices,
      record: {
        attack: 'inputaware',
        kind: 'training-controlled',
        config,
        seed,
        triggerParameters: { ...triggerParameters, crossCount: crossIndices.length },
        poisonedCount: poisonedIndices.length,
        trainSize: train.labels.length,
      },
    };
  },

  applyTrigger(images: ImageDataset, _config: InputAwareConfig, _seed: number, triggerParameters?: TriggerParameters): ImageDataset {
    const handle = inputAwareGenerators(triggerParameters);
    checkShape(handle, images);
    return { ...handle.trigger(images), name: `${images.name}+inputaware-trigger` };
  },
};

/** round(rate * bs) backdoor samples per batch, the same count rule as the materialised set. */
export function inputAwareBatchCounts(config: InputAwareConfig, batchSize: number, eligibleInBatch: number): { backdoor: number; cross: number } {
  let backdoor = Math.min(poisonCount(config.rate, batchSize), eligibleInBatch);
  let cross = Math.round(config.crossRatio * backdoor);
  if (backdoor + cross > eligibleInBatch) {
    backdoor = Math.floor(eligibleInBatch / (1 + config.crossRatio));
    cross = Math.min(eligibleInBatch - backdoor, Math.round(config.crossRatio * backdoor));
  }
  return { backdoor, cross };
}

/**
 * Narcissus (Zeng et al., CCS 2023, arXiv 2204.05255), clean-label with an optimised trigger,
 * as attacks.md specifies it.
 *
 * The trigger is a full-image additive perturbation delta (HWC floats in [0,1] pixel units,
 * |delta| <= linfRadius = 16/255) learned by narcissusTrigger.ts: a surrogate trained on a
 * public out-of-distribution (POOD) set, a short "poison warm-up" on the target class, then
 * delta optimised so the surrogate maps target-class images + delta to the target class.
 * Training-time: clean-label. round(rate * n) eligible images of the target class get
 * x' = clip(x + 255 delta) (float, clipped before the cast); labels unchanged. The default rate
 * 0.0005 is a fraction of the whole training set (0.5% of a CIFAR-10 class). As for SIG, a
 * request beyond the target class is an error naming `rate`, and a request within it is
 * capped by the target-class images outside the clean budget.
 * Test-time: the trigger magnified x3, x' = clip(x + 3 * 255 delta).
 *
 * This file holds no TensorFlow: attack.ts (the registry) is also bundled into Temporal
 * workflow code. Learning the trigger needs TensorFlow, so `preparePoison` loads
 * narcissusTrigger.ts on first use (see `engine`). The learned delta travels in
 * `triggerParameters.perturbation` (base64 of little-endian float32, 16 KiB at 32x32x3), small
 * enough for a workflow payload, and `applyTrigger` needs nothing else.
 */
import { z } from 'zod';
import type { ImageDataset } from '../data/dataset';
import { ArchitectureName } from '../models/names';
import {
  AttackConfigError,
  baseAttackShape,
  checkEligible,
  classCounts,
  cloneDataset,
  drawCleanLabelIndices,
  imageBytes,
  poisonCount,
  toPixel,
  validateBaseConfig,
  type DatasetShape,
  type PoisonResult,
  type TriggerParameters,
} from './base';
import type { AttackPlugin, PrepareControl } from './attack';

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

/** What narcissusTrigger.ts hands back and the record stores. */
export interface NarcissusTriggerParameters extends TriggerParameters {
  /** base64 of the float32 HWC perturbation in [0,1] units */
  perturbation: string;
  shape: [number, number, number];
  linfRadius: number;
  testMultiplier: number;
  /** which POOD set the surrogate saw, in words, e.g. "synthetic (2000 images, 6 classes, seed 1)" */
  pood: string;
  poodFormat: 'synthetic' | 'fashionMnist';
  /** target-class samples the attacker used for warm-up and trigger generation */
  attackerSamples: number;
  surrogate: { arch: string; epochs: number; classes: number };
  /** mean CE of the surrogate towards the target on the attacker's samples + delta, per 10% of rounds */
  triggerLoss: number[];
  /** optimiser of delta, documented for the report */
  optimiser: string;
}

export function encodePerturbation(delta: Float32Array): string {
  const le = new Uint8Array(delta.length * 4);
  const view = new DataView(le.buffer);
  for (let i = 0; i < delta.length; i++) view.setFloat32(4 * i, delta[i], true);
  return Buffer.from(le).toString('base64');
}

export function decodePerturbation(text: string, length: number, field = 'triggerParameters.perturbation'): Float32Array {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== 4 * length) {
    throw new AttackConfigError(field, `holds ${bytes.length} bytes; ${length} float32 values (${4 * length} bytes) expected`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

/** The perturbation from a record's trigger parameters, checked against the images' shape. */
export function narcissusPerturbation(params: TriggerParameters | undefined, ds: DatasetShape): Float32Array {
  if (!params || typeof params.perturbation !== 'string') {
    throw new AttackConfigError(
      'triggerParameters',
      'narcissus needs its learned perturbation: run preparePoison (it trains the surrogate and optimises the trigger) and pass its result',
    );
  }
  const shape = params.shape as unknown;
  const want = [ds.height, ds.width, ds.channels];
  if (!Array.isArray(shape) || shape.join('x') !== want.join('x')) {
    throw new AttackConfigError('triggerParameters.shape', `perturbation is ${JSON.stringify(shape)}, the images are ${want.join('x')}`);
  }
  return decodePerturbation(params.perturbation, imageBytes(ds));
}

/** x' = clip(x + scale * delta) per pixel, in float, rounded once: image `index` in place. */
function addPerturbation(images: Uint8Array, index: number, delta: Float32Array, scale: number): void {
  const base = index * delta.length;
  for (let p = 0; p < delta.length; p++) images[base + p] = toPixel(images[base + p] + scale * delta[p]);
}

/** round(rate * n), capped by the eligible target-class images; beyond the whole class an error naming `rate`. */
export function narcissusPoisonCount(
  train: DatasetShape,
  eligibleIndices: Int32Array,
  config: NarcissusConfig,
): { count: number; requested: number; eligibleTarget: number } {
  const requested = poisonCount(config.rate, train.labels.length);
  const classSize = classCounts(train)[config.target];
  if (requested > classSize) {
    throw new AttackConfigError('rate', `clean-label rate ${config.rate} needs ${requested} images of target class ${config.target}, but ${train.name} has only ${classSize}`);
  }
  let eligibleTarget = 0;
  for (const i of eligibleIndices) if (train.labels[i] === config.target) eligibleTarget++;
  if (eligibleTarget === 0) {
    throw new AttackConfigError('rate', `no image of target class ${config.target} is eligible (outside the clean budget) for poisoning`);
  }
  return { count: Math.min(requested, eligibleTarget), requested, eligibleTarget };
}

function checkLabelMap(config: NarcissusConfig): void {
  if (config.labelMap !== 'allToOne') {
    throw new AttackConfigError('labelMap', 'narcissus is a clean-label attack; it supports only "allToOne"');
  }
}

function validateAgainst(config: NarcissusConfig, ds: DatasetShape): void {
  checkLabelMap(config);
  if (config.pood.format === 'fashionMnist' && !((ds.height === 32 && ds.width === 32 && ds.channels === 3) || (ds.height === 28 && ds.width === 28 && ds.channels === 1))) {
    throw new AttackConfigError(
      'pood',
      `a Fashion-MNIST POOD set fits 32x32x3 or 28x28x1 images; ${ds.name} has ${ds.height}x${ds.width}x${ds.channels} (use pood: { format: synthetic })`,
    );
  }
}

type Engine = typeof import('./narcissusTrigger');
// A request webpack cannot resolve statically: the Temporal workflow bundle (which includes this
// file through attack.ts) must not pull in TensorFlow, and workflows never call preparePoison.
// (webpack reports a "Critical dependency" note at info level; the bundle stays TensorFlow-free.)
const ENGINE_MODULE = './narcissusTrigger';
function engine(): Engine {
  return require(ENGINE_MODULE) as Engine;
}

export const narcissus: AttackPlugin<NarcissusConfig> = {
  name: 'narcissus',
  kind: 'clean-label',
  description: 'Narcissus: clean-label, a full-image perturbation (L-inf 16/255) optimised on a POOD surrogate, magnified x3 at test time',
  configSchema: narcissusConfigSchema,
  validateAgainst,

  async preparePoison(train: ImageDataset, eligibleIndices: Int32Array, config: NarcissusConfig, seed: number, control?: PrepareControl): Promise<NarcissusTriggerParameters> {
    validateBaseConfig(config, train);
    validateAgainst(config, train);
    // the cheap checks of poisonTrainingSet first, not after minutes of training
    checkEligible(eligibleIndices, train.labels.length);
    narcissusPoisonCount(train, eligibleIndices, config);
    return engine().generateNarcissusTrigger({ train, eligibleIndices, config, seed, control });
  },

  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: NarcissusConfig, seed: number, triggerParameters?: TriggerParameters): PoisonResult {
    validateBaseConfig(config, train);
    validateAgainst(config, train);
    const delta = narcissusPerturbation(triggerParameters, train);
    checkEligible(eligibleIndices, train.labels.length);
    const { count, requested, eligibleTarget } = narcissusPoisonCount(train, eligibleIndices, config);
    const drawConfig = count === requested ? config : { ...config, rate: count / train.labels.length };
    const poisonedIndices = drawCleanLabelIndices(train, eligibleIndices, drawConfig, seed);
    const dataset = cloneDataset(train, `${train.name}+narcissus`);
    const originalLabels = new Int32Array(poisonedIndices.length);
    poisonedIndices.forEach((i, k) => {
      originalLabels[k] = train.labels[i];
      addPerturbation(dataset.images, i, delta, 255);
    });
    return {
      dataset,
      poisonedIndices,
      originalLabels,
      record: {
        attack: 'narcissus',
        kind: 'clean-label',
        config,
        seed,
        triggerParameters: { ...triggerParameters, requestedCount: requested, eligibleTargetCount: eligibleTarget },
        poisonedCount: poisonedIndices.length,
        trainSize: train.labels.length,
      },
    };
  },

  applyTrigger(images: ImageDataset, config: NarcissusConfig, _seed: number, triggerParameters?: TriggerParameters): ImageDataset {
    checkLabelMap(config);
    const delta = narcissusPerturbation(triggerParameters, images);
    const out = cloneDataset(images, `${images.name}+narcissus-trigger`);
    for (let i = 0; i < images.labels.length; i++) addPerturbation(out.images, i, delta, 255 * config.testMultiplier);
    return out;
  },
};

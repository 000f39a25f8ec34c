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
 * Learning the trigger needs TensorFlow, so `preparePoison` imports narcissusTrigger.ts on
 * first use: poisoning from a stored trigger, applying it and listing attacks never load the
 * native backend. The learned delta travels in
 * `triggerParameters.perturbation` (base64 of little-endian float32, 16 KiB at 32x32x3), small
 * enough for a workflow payload, and `applyTrigger` needs nothing else.
 */
import type { ImageDataset } from '../data/dataset';
import {
  AttackConfigError,
  checkEligible,
  cleanLabelPoisonCount,
  cloneDataset,
  poisonCleanLabel,
  requireAllToOne,
  toPixel,
  validateBaseConfig,
  type DatasetShape,
  type PoisonResult,
  type TriggerParameters,
} from './base';
import { LEARNED_TRIGGER_IGNORES, narcissusConfigSchema, type NarcissusConfig } from './configs';
import { narcissusPerturbation, type NarcissusTriggerParameters } from './narcissusPerturbation';
import type { AttackPlugin, PrepareControl } from './attack';

export type { NarcissusConfig, NarcissusTriggerParameters };
export { decodePerturbation, encodePerturbation, narcissusPerturbation } from './narcissusPerturbation';

/** x' = clip(x + scale * delta) per pixel, in float, rounded once: image `index` in place. */
function addPerturbation(images: Uint8Array, index: number, delta: Float32Array, scale: number): void {
  const base = index * delta.length;
  for (let p = 0; p < delta.length; p++) images[base + p] = toPixel(images[base + p] + scale * delta[p]);
}

function validateAgainst(config: NarcissusConfig, ds: DatasetShape): void {
  requireAllToOne(config);
  if (config.pood.format === 'fashionMnist' && !((ds.height === 32 && ds.width === 32 && ds.channels === 3) || (ds.height === 28 && ds.width === 28 && ds.channels === 1))) {
    throw new AttackConfigError(
      'pood',
      `a Fashion-MNIST POOD set fits 32x32x3 or 28x28x1 images; ${ds.name} has ${ds.height}x${ds.width}x${ds.channels} (use pood: { format: synthetic })`,
    );
  }
}

export const narcissus: AttackPlugin<NarcissusConfig> = {
  name: 'narcissus',
  kind: 'clean-label',
  description: 'Narcissus: clean-label, a full-image perturbation (L-inf 16/255) optimised on a POOD surrogate, magnified x3 at test time',
  configSchema: narcissusConfigSchema,
  validateAgainst,
  // the trigger is learned before poisoning and magnified only when applied (test: 'reused at another rate')
  learnedTriggerIgnores: LEARNED_TRIGGER_IGNORES.narcissus,

  async preparePoison(train: ImageDataset, eligibleIndices: Int32Array, config: NarcissusConfig, seed: number, control?: PrepareControl): Promise<NarcissusTriggerParameters> {
    validateBaseConfig(config, train);
    validateAgainst(config, train);
    // the cheap checks of poisonTrainingSet first, not after minutes of training
    checkEligible(eligibleIndices, train.labels.length);
    cleanLabelPoisonCount(train, eligibleIndices, config);
    const { generateNarcissusTrigger } = await import('./narcissusTrigger');
    return generateNarcissusTrigger({ train, eligibleIndices, config, seed, control });
  },

  poisonTrainingSet(train: ImageDataset, eligibleIndices: Int32Array, config: NarcissusConfig, seed: number, triggerParameters?: TriggerParameters): PoisonResult {
    validateBaseConfig(config, train);
    validateAgainst(config, train);
    const delta = narcissusPerturbation(triggerParameters, train);
    checkEligible(eligibleIndices, train.labels.length);
    const { dataset, poisonedIndices, originalLabels, requested, eligibleTarget } = poisonCleanLabel(train, eligibleIndices, config, seed, (images, i) => addPerturbation(images, i, delta, 255));
    return {
      dataset,
      poisonedIndices,
      originalLabels,
      record: {
        attack: 'narcissus',
        kind: 'clean-label',
        config,
        seed,
        // the config's multiplier, not the one a reused trigger was learned with (it is not read in learning)
        triggerParameters: { ...triggerParameters, testMultiplier: config.testMultiplier, requestedCount: requested, eligibleTargetCount: eligibleTarget },
        poisonedCount: poisonedIndices.length,
        trainSize: train.labels.length,
      },
    };
  },

  applyTrigger(images: ImageDataset, config: NarcissusConfig, _seed: number, triggerParameters?: TriggerParameters): ImageDataset {
    requireAllToOne(config);
    const delta = narcissusPerturbation(triggerParameters, images);
    const out = cloneDataset(images, `${images.name}+narcissus-trigger`);
    for (let i = 0; i < images.labels.length; i++) addPerturbation(out.images, i, delta, 255 * config.testMultiplier);
    return out;
  },
};

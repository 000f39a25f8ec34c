/**
 * The backdoor test set on which ASR and RA are measured (protocol.md): the non-target
 * test images (all of them for all-to-all), each with the trigger applied.
 */
import { subsetDataset, type ImageDataset } from '../data/dataset';
import { attackTargetLabel, type BaseAttackConfig, type TriggerParameters } from './base';
import { getAttack, validateTriggerAgainst } from './registry';

export interface BackdoorTestSet {
  /** Triggered images; their labels are the true labels. */
  images: ImageDataset;
  /** True label of each triggered image (RA counts predictions equal to these). */
  trueLabels: Int32Array;
  /** The label the attack wants for each image (ASR counts predictions equal to these). */
  targetLabels: Int32Array;
  /** Index of each image in the clean test set. */
  sourceIndices: Int32Array;
}

export function buildBackdoorTestSet(
  test: ImageDataset,
  config: BaseAttackConfig,
  seed: number,
  triggerParameters?: TriggerParameters,
): BackdoorTestSet {
  const plugin = getAttack(config.name);
  validateTriggerAgainst(config, test);
  const keep: number[] = [];
  for (let i = 0; i < test.labels.length; i++) {
    if (config.labelMap === 'allToAll' || test.labels[i] !== config.target) keep.push(i);
  }
  const sourceIndices = Int32Array.from(keep);
  const clean = subsetDataset(test, sourceIndices, `${test.name}:non-target`);
  const images = plugin.applyTrigger(clean, config, seed, triggerParameters);
  const trueLabels = new Int32Array(clean.labels);
  const targetLabels = trueLabels.map((y) => attackTargetLabel(config, y, test.numClasses));
  return { images: { ...images, name: `${test.name}:backdoor(${config.name})` }, trueLabels, targetLabels, sourceIndices };
}

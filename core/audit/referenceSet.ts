/**
 * Reference sets for a first audit, from a known data set: clean, labelled, class-balanced
 * images the deployed model has not been trained on.
 *
 * - synthetic: fresh images of the generator the ci tier and the demo train on (the classes
 *   are fixed gratings; the seed only draws new instances), so a model from `npm run demo`
 *   or `tier: ci` on synthetic data can be audited against it;
 * - cifar10: a class-stratified subset of the CIFAR-10 test batch (never the training batches).
 */
import { deriveSeed } from '../rng';
import type { ImageDataset } from '../data/dataset';
import { generateSyntheticDataset } from '../data/synthetic';
import { loadCifar10 } from '../data/cifar10';
import { stratifiedSubset } from '../data/splits';

export type ReferenceSource = 'synthetic' | 'cifar10';

export function syntheticReferenceSet(size: number, seed: number): ImageDataset {
  // its own derived seed: never the images of a training or test split drawn with the same seed
  return generateSyntheticDataset({ size, seed: deriveSeed(seed, 'audit-reference'), name: `synthetic:reference:seed=${seed}` });
}

export async function cifar10ReferenceSet(dir: string, size: number, seed: number): Promise<ImageDataset> {
  const test = await loadCifar10(dir, 'test');
  return { ...stratifiedSubset(test, size, seed), name: `cifar10:test[stratified ${size}, seed=${seed}]` };
}

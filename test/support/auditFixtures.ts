/**
 * Models and data for the audit tests: the BadNets-backdoored tinyCnn of backdoored.ts, a
 * clean tinyCnn trained the same way on the same synthetic images without poisoning
 * (trained once, cached in the fixtures dir like the backdoored one), and a small
 * class-stratified reference set drawn from the clean test split.
 */
import { createHash } from 'node:crypto';
import { parsePurifyConfig } from '../../schemas/purify';
import { generateSyntheticSplits } from '../../core/data/synthetic';
import { stratifiedSubset } from '../../core/data/splits';
import type { ImageDataset } from '../../core/data/dataset';
import { decodeClassifier, encodeClassifier } from '../../core/models/layersFormat';
import type { Classifier } from '../../core/models/classifier';
import { deriveSeed } from '../../core/rng';
import { backdooredConfig, backdooredFixture } from './backdoored';
import { cachedFixtureBytes, trainedTinyCnnBytes } from './fixtures';

export { backdooredFixture };

/** The clean train and test splits that the backdoored fixture poisons (same config and seed). */
export function cleanSplits(): { train: ImageDataset; test: ImageDataset } {
  const cfg = parsePurifyConfig(backdooredConfig);
  if (cfg.data?.format !== 'synthetic') throw new Error('the audit fixtures expect synthetic data');
  return generateSyntheticSplits({ ...cfg.data, seed: deriveSeed(cfg.seed, 'synthetic') });
}

/** `size` images of the clean test split, class-stratified: what a team would keep as its reference set. */
export function referenceSet(size = 200, seed = 7): ImageDataset {
  return { ...stratifiedSubset(cleanSplits().test, size, seed), name: `reference-${size}` };
}

let cleanBytes: Promise<Uint8Array> | undefined;

/** Packed bytes of a tinyCnn trained on the unpoisoned training split (cached across test runs). */
export function cleanModelBytes(): Promise<Uint8Array> {
  cleanBytes ??= (async () => {
    const tag = createHash('sha256').update(JSON.stringify({ clean: backdooredConfig })).digest('hex').slice(0, 12);
    return cachedFixtureBytes(`clean-${tag}.ntmodel`, () => trainedTinyCnnBytes(cleanSplits().train, parsePurifyConfig(backdooredConfig)));
  })();
  return cleanBytes;
}

export async function cleanModel(): Promise<Classifier> {
  return decodeClassifier(await cleanModelBytes(), 'clean fixture');
}

export async function backdooredModelBytes(): Promise<Uint8Array> {
  const fixture = await backdooredFixture();
  const model = await fixture.model();
  try {
    return await encodeClassifier(model);
  } finally {
    model.model.dispose();
  }
}

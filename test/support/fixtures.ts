/**
 * The test fixtures folder (NTML_TEST_FIXTURES, set by runTests.ts; else .ntml/test-fixtures):
 * what several test files would otherwise each compute again, such as trained models, kept
 * across test runs.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import type { PurifyConfig } from '../../schemas/purify';
import type { ImageDataset } from '../../core/data/dataset';
import { createClassifier, encodeClassifier } from '../../core/models/layersFormat';
import { trainStandard } from '../../core/ntml/stages';
import { deriveSeed } from '../../core/rng';
import { repoRoot } from './processes';

export function fixturesDir(): string {
  return process.env.NTML_TEST_FIXTURES ?? path.join(repoRoot, '.ntml', 'test-fixtures');
}

/**
 * The bytes of fixture `name`: read from the fixtures folder, or made by `make` and stored there
 * (written whole, then renamed, so that a test run stopped midway leaves no half file).
 */
export async function cachedFixtureBytes(name: string, make: () => Promise<Uint8Array>): Promise<Uint8Array> {
  const file = path.join(fixturesDir(), name);
  try {
    return new Uint8Array(await fs.readFile(file));
  } catch {
    const bytes = await make();
    await fs.mkdir(path.dirname(file), { recursive: true });
    await fs.writeFile(`${file}.tmp`, bytes);
    await fs.rename(`${file}.tmp`, file);
    return bytes;
  }
}

/** A tinyCnn trained on `train` as the standard-training stage trains f_std (the config's recipe, seed and initial weights); packed. */
export async function trainedTinyCnnBytes(train: ImageDataset, cfg: PurifyConfig): Promise<Uint8Array> {
  const model = createClassifier('tinyCnn', train, train.numClasses, deriveSeed(cfg.seed, 'init:standard'));
  try {
    await trainStandard(model, train, cfg.training, cfg.seed);
    return await encodeClassifier(model);
  } finally {
    model.model.dispose();
  }
}

/**
 * The clean counterpart of an attack sweep's data, for clean models of the same architecture:
 * evaluation mode cannot train without an attack (every attack poisons at least one image), so
 * a clean f_std is a protection-mode run (defense none) on these files:
 *   train.ntds  the exact images standard training sees in the attack cells of that seed (the
 *               loaded split minus the clean reserve), with their true labels, none poisoned;
 *   clean.ntds  the defender's D_c of those cells (fitting part and held-out slice);
 *   test.ntds   the clean test split.
 * The indices come from evaluation mode's own prepareData (its sourceIndices), so the split
 * follows the protocol as it is, not a copy of it.
 */
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { parsePurifyConfig } from '../schemas/purify';
import { loadEvaluationData, prepareData } from '../core/experiment/prepareData';
import { subsetDataset, type ImageDataset } from '../core/data/dataset';
import { encodeDataset } from '../core/data/codec';

export interface CleanCounterpart {
  train: ImageDataset;
  clean: ImageDataset;
  test: ImageDataset;
  /** where the loaded data came from (evaluation mode's description) */
  source: string;
}

/**
 * `base`: an evaluation-mode sweep base (data, tier, cleanBudget, cleanReserve), with `data`
 * already resolved (no `format: auto`). Any attack serves to run prepareData: only its
 * clean-index bookkeeping is used, and it does not depend on the attack.
 */
export async function cleanCounterpart(base: Record<string, unknown>, seed: number): Promise<CleanCounterpart> {
  const { attack: _attack, defense: _defense, ntml: _ntml, mode, ...rest } = base;
  if (mode !== undefined && mode !== 'evaluation') throw new Error(`base.mode: the clean counterpart is of an evaluation-mode sweep, got ${JSON.stringify(mode)}`);
  const cfg = parsePurifyConfig({ ...rest, mode: 'evaluation', seed, attack: { name: 'badnets' }, defense: { name: 'none' } });
  const prepared = await prepareData(cfg);
  const indices = prepared.sourceIndices;
  if (!indices) throw new Error('prepareData kept no source indices for this data; the clean counterpart cannot be formed');
  const { train: loaded, test, source } = await loadEvaluationData(cfg.data!, cfg.seed);
  const name = (part: string) => `${loaded.name}:clean-counterpart:${part}:seed=${seed}`;
  return {
    train: subsetDataset(loaded, indices.training, name('train')),
    clean: subsetDataset(loaded, [...indices.cleanFit, ...indices.cleanHeldOut], name('clean')),
    test,
    source,
  };
}

/** Writes train.ntds, clean.ntds and test.ntds into `dir`; returns their paths. */
export async function writeCleanCounterpart(c: CleanCounterpart, dir: string): Promise<Record<'train' | 'clean' | 'test', string>> {
  await fs.mkdir(dir, { recursive: true });
  const files = { train: path.join(dir, 'train.ntds'), clean: path.join(dir, 'clean.ntds'), test: path.join(dir, 'test.ntds') };
  await fs.writeFile(files.train, encodeDataset(c.train));
  await fs.writeFile(files.clean, encodeDataset(c.clean));
  await fs.writeFile(files.test, encodeDataset(c.test));
  return files;
}

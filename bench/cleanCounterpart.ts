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
import { concatDatasets, subsetDataset, type ImageDataset } from '../core/data/dataset';
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
  const { cfg, prepared } = await prepareFromBase(base, seed, { name: 'badnets' });
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

/**
 * The protection-mode view of an attack cell's data: the poisoned training set exactly as that
 * cell's standard training sees it (poisoned images with the labels the attacker gave them), the
 * same D_c and the clean test split. This is what a protection-mode user holds: their own data
 * and a small trusted set, with the trigger unknown to the defense (issue 20, item 4). Only
 * attacks that poison data before training have such a set; a training-controlled attack
 * (Input-Aware, WaNet's default mode) poisons batches as it trains, so it is refused.
 */
export async function poisonedCounterpart(base: Record<string, unknown>, seed: number, attack: Record<string, unknown>): Promise<CleanCounterpart & { poisoned: number }> {
  const { prepared } = await prepareFromBase(base, seed, attack);
  if (prepared.trainingControlled || !prepared.poison) {
    throw new Error(`attack ${JSON.stringify(attack.name)}: poisons batches while it trains (training-controlled), so it has no poisoned training set to hand to protection mode; use a data-poisoning attack (badnets, blended, sig, narcissus, wanet with mode: poisonOnly)`);
  }
  const test = prepared.test;
  if (!test) throw new Error('prepareData returned no clean test split');
  return {
    train: prepared.train,
    clean: concatDatasets(prepared.cleanFit, prepared.cleanHeldOut),
    test,
    source: prepared.summary.source,
    poisoned: prepared.poison.poisonedIndices.length,
  };
}

async function prepareFromBase(base: Record<string, unknown>, seed: number, attack: Record<string, unknown>) {
  const { attack: _attack, defense: _defense, ntml: _ntml, mode, ...rest } = base;
  if (mode !== undefined && mode !== 'evaluation') throw new Error(`base.mode: the counterpart is of an evaluation-mode sweep, got ${JSON.stringify(mode)}`);
  const cfg = parsePurifyConfig({ ...rest, mode: 'evaluation', seed, attack, defense: { name: 'none' } });
  return { cfg, prepared: await prepareData(cfg) };
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

/**
 * The data of one recipe comparison cell, exported once so that both frameworks train on the
 * same bytes: CIFAR-10 binary batches (train.bin, test.bin, triggered.bin) and meta.json with
 * train.bin's sha256 (both sides check it before training) and the triggered set's target labels.
 *
 * Sets:
 *   clean:   the cpu tier's class-stratified training subset, every image clean, as
 *            prepareData's loader draws it (stratifiedSubset with the run seed's 'subset' seed);
 *   badnets: prepareData's training set for `attack: badnets` (the images and labels the
 *            pipeline's standard-training stage sees, poisoned), and its triggered test set.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as path from 'node:path';
import { deriveSeed } from '../core/rng';
import type { ImageDataset } from '../core/data/dataset';
import { encodeCifar10Batch, loadCifar10, loadCifar10Batch } from '../core/data/cifar10';
import { stratifiedSubset } from '../core/data/splits';
import { prepareData } from '../core/experiment/prepareData';
import type { BackdoorTestSet } from '../core/attacks/testSet';
import { parsePurifyConfig } from '../schemas/purify';

export const dataSets = ['clean', 'badnets'] as const;
export type DataSetName = (typeof dataSets)[number];

export interface CellMeta {
  set: DataSetName;
  seed: number;
  source: string;
  numClasses: number;
  train: { images: number; sha256: string; poisoned: number };
  test: { images: number };
  triggered?: { images: number; targetLabels: number[] };
}

export interface CellData {
  train: ImageDataset;
  test: ImageDataset;
  backdoorTest?: BackdoorTestSet;
  meta: CellMeta;
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/**
 * Builds the cell's data from the CIFAR-10 folder and writes it under `dir`, always afresh (a
 * few seconds): a cell left from before a change to the data code must not be reused.
 */
export async function exportCell(cifarDir: string, set: DataSetName, seed: number, trainSubset: number, dir: string): Promise<CellMeta> {
  const metaFile = path.join(dir, 'meta.json');
  await fs.rm(metaFile, { force: true });
  let train: ImageDataset;
  let test: ImageDataset;
  let backdoorTest: BackdoorTestSet | undefined;
  let source: string;
  let poisoned = 0;
  if (set === 'clean') {
    // the same call as prepareData's CIFAR-10 loader (deriveSeed(seed, 'subset'))
    train = stratifiedSubset(await loadCifar10(cifarDir, 'train'), trainSubset, deriveSeed(seed, 'subset'));
    test = await loadCifar10(cifarDir, 'test');
    source = `CIFAR-10, ${trainSubset}-image class-stratified subset (seed ${seed}), all clean`;
  } else {
    const cfg = parsePurifyConfig(
      { mode: 'evaluation', tier: 'cpu', seed, data: { format: 'cifar10', path: cifarDir, trainSubset }, attack: { name: 'badnets' }, defense: { name: 'none' } },
      'recipe comparison cell',
    );
    const prepared = await prepareData(cfg);
    train = prepared.train;
    test = prepared.test!;
    backdoorTest = prepared.backdoorTest!;
    poisoned = prepared.summary.poisonedCount;
    source = `prepareData, cpu tier, BadNets (defaults), seed ${seed}: ${prepared.summary.source}; ${poisoned} of ${train.labels.length} training images poisoned`;
  }
  await fs.mkdir(dir, { recursive: true });
  const trainBytes = encodeCifar10Batch(train);
  await fs.writeFile(path.join(dir, 'train.bin'), trainBytes);
  await fs.writeFile(path.join(dir, 'test.bin'), encodeCifar10Batch(test));
  const meta: CellMeta = {
    set,
    seed,
    source,
    numClasses: train.numClasses,
    train: { images: train.labels.length, sha256: sha256(trainBytes), poisoned },
    test: { images: test.labels.length },
  };
  if (backdoorTest) {
    // triggered.bin carries the true labels (RA); ASR counts predictions equal to these targets
    await fs.writeFile(path.join(dir, 'triggered.bin'), encodeCifar10Batch({ ...backdoorTest.images, labels: backdoorTest.trueLabels }));
    meta.triggered = { images: backdoorTest.trueLabels.length, targetLabels: Array.from(backdoorTest.targetLabels) };
  }
  // meta.json last: its presence says the cell is complete
  await fs.writeFile(metaFile, `${JSON.stringify(meta)}\n`);
  return meta;
}

/** Reads an exported cell back with the project's own CIFAR-10 loader, checking train.bin's digest. */
export async function readCell(dir: string): Promise<CellData> {
  const meta = JSON.parse(await fs.readFile(path.join(dir, 'meta.json'), 'utf8')) as CellMeta;
  const trainFile = path.join(dir, 'train.bin');
  const digest = sha256(await fs.readFile(trainFile));
  if (digest !== meta.train.sha256) throw new Error(`${trainFile}: sha256 ${digest} is not meta.json's ${meta.train.sha256}`);
  const withClasses = (ds: ImageDataset) => ({ ...ds, numClasses: meta.numClasses });
  const train = withClasses(await loadCifar10Batch(trainFile));
  const test = withClasses(await loadCifar10Batch(path.join(dir, 'test.bin')));
  let backdoorTest: BackdoorTestSet | undefined;
  if (meta.triggered) {
    const images = withClasses(await loadCifar10Batch(path.join(dir, 'triggered.bin')));
    backdoorTest = {
      images,
      trueLabels: images.labels,
      targetLabels: Int32Array.from(meta.triggered.targetLabels),
      sourceIndices: Int32Array.from({ length: images.labels.length }, (_, i) => i),
    };
  }
  return { train, test, backdoorTest, meta };
}

/**
 * bench/recipeCompare's pure parts: the two recipes it compares (the cpu tier's as defined,
 * and the candidate differing only in schedule, Nesterov, peak and warm-up), an exported cell
 * read back with its digest checked, and the report's statistics (sample std, gaps paired by seed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { comparedRecipes } from '../../bench/recipeCompare';
import { readCell } from '../../bench/recipeData';
import { recipeMarkdown, stat, summarise, type RunRecord } from '../../bench/recipeReport';
import { encodeCifar10Batch } from '../../core/data/cifar10';
import { generateSyntheticDataset } from '../../core/data/synthetic';
import { tierRecipe } from '../../schemas/purify';
import { createHash } from 'node:crypto';

test('recipeCompare: "cosine" is the tier\'s earlier recipe; "oneCycle" changes only schedule, Nesterov, peak and warm-up, and by default is the cpu tier\'s recipe', () => {
  const r = comparedRecipes({ oneCycleLearningRate: 0.12, warmupFraction: 0.2 });
  assert.deepEqual(
    { schedule: r.cosine.schedule, nesterov: r.cosine.nesterov ?? false, learningRate: r.cosine.learningRate, warmupFraction: r.cosine.warmupFraction },
    { schedule: 'cosine', nesterov: false, learningRate: 0.05, warmupFraction: undefined },
  );
  const { schedule, nesterov, learningRate, warmupFraction, ...rest } = r.oneCycle;
  assert.deepEqual({ schedule, nesterov, learningRate, warmupFraction }, { schedule: 'oneCycle', nesterov: true, learningRate: 0.12, warmupFraction: 0.2 });
  const { schedule: _s, learningRate: _l, nesterov: _n, ...cosineRest } = r.cosine;
  assert.deepEqual(rest, cosineRest);
  const tier = tierRecipe('cpu');
  assert.deepEqual(comparedRecipes({ oneCycleLearningRate: tier.learningRate, warmupFraction: tier.warmupFraction ?? 0.25 }).oneCycle, tier);
  assert.equal(comparedRecipes({ epochs: 1, oneCycleLearningRate: 0.1, warmupFraction: 0.25 }).oneCycle.epochs, 1, 'a smoke run shortens both');
});

test('recipeData: a cell reads back with the project\'s CIFAR-10 loader; a changed train.bin is refused by its digest', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'recipe-cell-'));
  try {
    const ds = generateSyntheticDataset({ size: 12, height: 32, width: 32, numClasses: 10, seed: 3 });
    const bytes = encodeCifar10Batch(ds);
    await fs.writeFile(path.join(dir, 'train.bin'), bytes);
    await fs.writeFile(path.join(dir, 'test.bin'), encodeCifar10Batch(ds));
    await fs.writeFile(path.join(dir, 'triggered.bin'), encodeCifar10Batch(ds));
    const meta = {
      set: 'badnets', seed: 1, source: 'test', numClasses: 10,
      train: { images: 12, sha256: createHash('sha256').update(bytes).digest('hex'), poisoned: 0 },
      test: { images: 12 },
      triggered: { images: 12, targetLabels: new Array(12).fill(0) },
    };
    await fs.writeFile(path.join(dir, 'meta.json'), JSON.stringify(meta));
    const cell = await readCell(dir);
    assert.deepEqual(Array.from(cell.train.images), Array.from(ds.images));
    assert.deepEqual(Array.from(cell.train.labels), Array.from(ds.labels));
    assert.deepEqual(Array.from(cell.backdoorTest!.trueLabels), Array.from(ds.labels));
    assert.deepEqual(Array.from(cell.backdoorTest!.targetLabels), new Array(12).fill(0));
    bytes[100] ^= 1;
    await fs.writeFile(path.join(dir, 'train.bin'), bytes);
    await assert.rejects(readCell(dir), /train\.bin: sha256 [0-9a-f]{64} is not meta\.json's/);
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
});

test('recipeReport: sample std, ntml - PyTorch gaps paired by seed, the goals', () => {
  const s = stat([70, 72, 74]);
  assert.equal(s.mean, 72);
  assert.equal(s.std, 2, 'sample std (n - 1)');
  assert.deepEqual(stat([5]), { n: 1, mean: 5, std: 0 });
  const run = (seed: number, recipe: string, framework: 'ntml' | 'pytorch', acc: number): RunRecord => ({
    set: 'badnets', seed, recipe, framework, trainImages: 100, poisoned: 10, wallSeconds: 1, loadBefore: [1, 1, 1], loadAfter: [1, 1, 1],
    result: { acc, asr: 99, trainSeconds: 1, history: [{ epoch: 1, loss: 1, learningRate: 0, seconds: 1 }], trainSha256: 'x' },
  });
  const runs = [
    run(1, 'cosine', 'ntml', 70), run(1, 'cosine', 'pytorch', 72),
    run(2, 'cosine', 'ntml', 71), run(2, 'cosine', 'pytorch', 72),
    run(1, 'oneCycle', 'ntml', 77), run(1, 'oneCycle', 'pytorch', 77.5),
    run(2, 'oneCycle', 'ntml', 79), // seed 2's PyTorch run not there yet: no pair
  ];
  const { rows, gaps } = summarise(runs);
  const cosine = gaps.find((g) => g.recipe === 'cosine')!.gap;
  assert.equal(cosine.n, 2);
  assert.equal(cosine.mean, -1.5);
  const oneCycle = gaps.find((g) => g.recipe === 'oneCycle')!.gap;
  assert.deepEqual(oneCycle, { n: 1, mean: -0.5, std: 0 });
  assert.equal(rows.find((r) => r.recipe === 'oneCycle' && r.framework === 'ntml')!.acc.mean, 78);
  const md = recipeMarkdown({
    date: 'd', finished: false, command: 'node x', machine: { cpus: 2, model: 'm', node: 'v', totalMemoryGiB: 1 },
    settings: { trainSubset: 100, threads: 2, recipes: comparedRecipes({ oneCycleLearningRate: 0.1, warmupFraction: 0.25 }) },
    runs,
  });
  assert.match(md, /\*\*Not finished\*\*/);
  assert.match(md, /under \*\*oneCycle\*\*: clean ACC 78\.00 ± 1\.41 \(n=2\); goal ≥ 76: met/);
  assert.match(md, /under \*\*cosine\*\*: clean ACC 70\.50 ± 0\.71 \(n=2\); goal ≥ 76: not met/);
  assert.match(md, /\| badnets \| cosine \| -1\.50 ± 0\.71 \(n=2\) \| no \|/);
});

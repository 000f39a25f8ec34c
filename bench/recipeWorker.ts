/**
 * One ntml training run of bench/recipeCompare, in its own process: the pipeline's
 * standard-training stage (a fresh smallCnn initialised from deriveSeed(seed, 'init:standard'),
 * core/ntml/stages trainStandard) on an exported cell, then clean ACC and, for a poisoned cell,
 * ASR and RA on its triggered test set. Prints one JSON object on stdout.
 *
 *   node dist/bench/recipeWorker.js --data DIR --recipe JSON --seed S --threads T
 */
import { deriveSeed } from '../core/rng';
import { nativeTensorflowVersion } from '../core/tf';
import { createClassifier } from '../core/models/layersFormat';
import { trainStandard } from '../core/ntml/stages';
import { evaluateClassifier } from '../core/experiment/evaluate';
import { TrainRecipe } from '../core/train/recipe';
import { readCell } from './recipeData';

function arg(argv: string[], flag: string): string {
  const i = argv.indexOf(flag);
  if (i < 0 || argv[i + 1] === undefined) throw new Error(`${flag} is required`);
  return argv[i + 1];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const parsed = TrainRecipe.safeParse(JSON.parse(arg(argv, '--recipe')));
  if (!parsed.success) throw new Error(`--recipe: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  const recipe = parsed.data;
  const seed = Number(arg(argv, '--seed'));
  const cell = await readCell(arg(argv, '--data'));
  const model = createClassifier('smallCnn', cell.train, cell.meta.numClasses, deriveSeed(seed, 'init:standard'));
  const t0 = performance.now();
  const result = await trainStandard(model, cell.train, recipe, seed);
  const trainSeconds = (performance.now() - t0) / 1000;
  const metrics = await evaluateClassifier(model, cell.test, cell.backdoorTest);
  console.log(
    JSON.stringify({
      impl: 'ntml',
      tensorflow: nativeTensorflowVersion(),
      threads: Number(process.env.TF_NUM_INTRAOP_THREADS ?? 0) || undefined,
      seed,
      trainImages: cell.train.labels.length,
      trainSha256: cell.meta.train.sha256,
      trainSeconds,
      history: result.history.map((h) => ({ epoch: h.epoch, loss: h.loss, learningRate: h.learningRate, seconds: h.seconds })),
      acc: metrics.acc,
      asr: metrics.asr,
      ra: metrics.ra,
    }),
  );
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});

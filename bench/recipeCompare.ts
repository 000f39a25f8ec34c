/**
 * Issue 19 item 6: the cpu tier's standard model under its earlier cosine recipe and under the
 * one-cycle + Nesterov recipe (the tier's recipe since this comparison), trained by ntml and by a like-for-like PyTorch reference
 * (bench/reference/pytorch_recipe.py) on the same exported records, seed by seed.
 *
 *   NTML_CIFAR10_DIR=/path/to/cifar-10-batches-bin node dist/bench/recipeCompare.js
 *       [--seeds 1,2,3] [--sets clean,badnets] [--recipes cosine,oneCycle]
 *       [--frameworks ntml,pytorch] [--train-subset 20000] [--epochs E]
 *       [--one-cycle-lr 0.1] [--warmup 0.25] [--threads T] [--out DIR] [--work DIR]
 *
 * Per (set, seed) the data is exported once (bench/recipeData.ts); per recipe the two
 * frameworks run one after the other in fresh processes, alternating which goes first. Every
 * finished run is appended to DIR/report.json at once, so a stopped comparison continues where
 * it stopped when run again with the same settings. DIR/report.md: mean +- std (sample) of clean
 * ACC and ASR per set, recipe and framework, the ntml - PyTorch gaps, the issue's goals, the
 * load average around every run and the exact command. A benchmark: never run in CI.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findRepoRoot } from '../store/repoRoot';
import { parseBenchArgs, type OptionSpecs } from './args';
import { TrainRecipe } from '../core/train/recipe';
import { tierRecipe } from '../schemas/purify';
import { pytorchPython, referenceDir } from './reference/pytorchEnv';
import { runChild as runChildJson } from './childJson';
import { dataSets, exportCell, type DataSetName } from './recipeData';
import { recipeMarkdown, type RecipeReport, type RunRecord } from './recipeReport';

const frameworks = ['ntml', 'pytorch'] as const;
type Framework = (typeof frameworks)[number];
const recipeNames = ['cosine', 'oneCycle'] as const;
type RecipeName = (typeof recipeNames)[number];

interface Options {
  seeds: number[];
  sets: DataSetName[];
  recipes: RecipeName[];
  frameworks: Framework[];
  trainSubset: number;
  epochs?: number;
  oneCycleLearningRate: number;
  warmupFraction: number;
  threads: number;
  out: string;
  work: string;
}

const root = findRepoRoot(__dirname) ?? process.cwd();

/**
 * The recipes compared: the cpu tier's recipe before issue 19 (cosine decay from peak lr 0.05,
 * heavy-ball momentum; spelled out here because the tier no longer uses it), and the one-cycle
 * candidate (one-cycle schedule, Nesterov momentum, a higher peak that the warm-up makes safe;
 * with the default --one-cycle-lr and --warmup it is the tier's recipe today, schemas/purify.ts).
 * Everything else (batch 128, momentum 0.9, wd 5e-4, crop + flip, 8 epochs) is the tier's.
 */
export function comparedRecipes(o: Pick<Options, 'epochs' | 'oneCycleLearningRate' | 'warmupFraction'>): Record<RecipeName, TrainRecipe> {
  const { schedule: _schedule, nesterov: _nesterov, warmupFraction: _warmup, ...tier } = tierRecipe('cpu');
  const cosine = TrainRecipe.parse({ ...tier, learningRate: 0.05, ...(o.epochs ? { epochs: o.epochs } : {}) });
  return {
    cosine,
    oneCycle: TrainRecipe.parse({ ...cosine, schedule: 'oneCycle', nesterov: true, learningRate: o.oneCycleLearningRate, warmupFraction: o.warmupFraction }),
  };
}

const USAGE =
  'usage: recipeCompare.js [--seeds 1,2,3] [--sets clean,badnets] [--recipes cosine,oneCycle] [--frameworks ntml,pytorch] [--train-subset N] [--epochs E] [--one-cycle-lr X] [--warmup F] [--threads T] [--out DIR] [--work DIR]';

const OPTIONS: OptionSpecs = Object.fromEntries(
  ['seeds', 'sets', 'recipes', 'frameworks', 'train-subset', 'epochs', 'one-cycle-lr', 'warmup', 'threads', 'out', 'work'].map((n) => [n, { type: 'string' }]),
);

export function parseOptions(argv: string[]): Options {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  return {
    seeds: a.integers('seeds', [1, 2, 3]),
    sets: a.list('sets', dataSets, dataSets),
    recipes: a.list('recipes', recipeNames, recipeNames),
    frameworks: a.list('frameworks', frameworks, frameworks),
    trainSubset: a.integer('train-subset', 20000),
    epochs: a.integer('epochs', undefined),
    // the tier's one-cycle recipe unless a screen asks for another peak or warm-up
    oneCycleLearningRate: a.positiveNumber('one-cycle-lr', tierRecipe('cpu').learningRate),
    warmupFraction: a.numberIn('warmup', tierRecipe('cpu').warmupFraction ?? 0.25, 0, 0.9),
    threads: a.integer('threads', os.availableParallelism()),
    out: a.path('out', path.join(root, 'bench', 'results', 'recipe-cpu')),
    work: a.path('work', path.join(os.tmpdir(), 'ntml-recipe-compare')),
  };
}

// --- one training run, in a fresh process ------------------------------------------------------

type RunResult = RunRecord['result'];

const runChild = (cmd: string, args: string[], env: NodeJS.ProcessEnv) => runChildJson<RunResult>(cmd, args, env);

function runFramework(framework: Framework, python: string | undefined, cell: string, recipe: TrainRecipe, seed: number, threads: number): Promise<RunResult> {
  const common = ['--data', cell, '--recipe', JSON.stringify(recipe), '--seed', String(seed), '--threads', String(threads)];
  if (framework === 'pytorch') {
    return runChild(python!, [path.join(referenceDir, 'pytorch_recipe.py'), ...common], { ...process.env, PYTHONUNBUFFERED: '1' });
  }
  return runChild(process.execPath, [path.join(__dirname, 'recipeWorker.js'), ...common], {
    ...process.env,
    TF_NUM_INTRAOP_THREADS: String(threads),
    TF_NUM_INTEROP_THREADS: String(threads),
  });
}

/** The per-epoch learning rates of the two frameworks must be the same schedule. */
function checkSchedulesAgree(a: RunResult, b: RunResult, what: string): void {
  a.history.forEach((h, i) => {
    const other = b.history[i]?.learningRate;
    if (other === undefined || Math.abs(h.learningRate - other) > 1e-9 * Math.max(1, h.learningRate)) {
      throw new Error(`${what}: epoch ${h.epoch} ended at learning rate ${h.learningRate} in one framework and ${other} in the other`);
    }
  });
}

// --- the driver ---------------------------------------------------------------------------------

/** An argument as the report shows it: paths inside the checkout relative to it, no machine's own paths. */
function shownArgument(a: string): string {
  if (!path.isAbsolute(a)) return a;
  const inside = path.relative(root, a);
  return inside.startsWith('..') || path.isAbsolute(inside) ? '<folder outside the checkout>' : inside || '.';
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  const cifarDir = process.env.NTML_CIFAR10_DIR?.trim();
  if (!cifarDir) throw new Error('NTML_CIFAR10_DIR: set it to the cifar-10-batches-bin folder');
  const recipes = comparedRecipes(o);
  const python = o.frameworks.includes('pytorch') ? pytorchPython() : undefined;
  const settings = { trainSubset: o.trainSubset, threads: o.threads, recipes: Object.fromEntries(o.recipes.map((r) => [r, recipes[r]])) };
  await fs.mkdir(o.out, { recursive: true });
  const reportFile = path.join(o.out, 'report.json');
  const previous = await fs.readFile(reportFile, 'utf8').then((s) => JSON.parse(s) as RecipeReport, () => undefined);
  // a stopped comparison with the same settings continues; anything else starts afresh
  const runs: RunRecord[] = previous && JSON.stringify(previous.settings) === JSON.stringify(settings) ? previous.runs : [];
  if (runs.length) console.log(`continuing: ${runs.length} runs already in ${reportFile}`);
  const command = [
    'NTML_CIFAR10_DIR=<cifar-10-batches-bin>',
    'node',
    path.relative(root, __filename).replace(/\\/g, '/'),
    ...process.argv.slice(2).map(shownArgument),
  ].join(' ');
  const report = (finished: boolean): RecipeReport => ({
    date: new Date().toISOString(),
    finished,
    command,
    machine: { cpus: os.availableParallelism(), model: os.cpus()[0]?.model ?? 'unknown', node: process.version, totalMemoryGiB: os.totalmem() / 2 ** 30 },
    settings,
    runs,
  });
  const save = async (finished: boolean) => {
    const r = report(finished);
    await fs.writeFile(reportFile, `${JSON.stringify(r, null, 2)}\n`);
    await fs.writeFile(path.join(o.out, 'report.md'), recipeMarkdown(r));
  };

  let pair = 0; // alternation by position in the plan, so a continued comparison keeps the same order
  for (const seed of o.seeds) {
    for (const set of o.sets) {
      const cell = path.join(o.work, `${set}-seed${seed}-n${o.trainSubset}`);
      const meta = await exportCell(cifarDir, set, seed, o.trainSubset, cell);
      const stale = runs.filter((r) => r.set === set && r.seed === seed && r.result.trainSha256 !== meta.train.sha256);
      if (stale.length) {
        console.log(`${set}, seed ${seed}: the data changed since ${stale.length} stored runs; they are dropped and rerun`);
        runs.splice(0, runs.length, ...runs.filter((r) => !stale.includes(r)));
      }
      console.log(`${set}, seed ${seed}: ${meta.train.images} training images (${meta.train.poisoned} poisoned), sha256 ${meta.train.sha256.slice(0, 12)}`);
      for (const recipeName of o.recipes) {
        const order = pair++ % 2 === 0 ? o.frameworks : [...o.frameworks].reverse();
        const done: Partial<Record<Framework, RunResult>> = {};
        for (const framework of order) {
          // a stored run counts only if it trained on the very records exported now
          const key = (r: RunRecord) =>
            r.set === set && r.seed === seed && r.recipe === recipeName && r.framework === framework && r.result.trainSha256 === meta.train.sha256;
          const stored = runs.find(key);
          if (stored) {
            done[framework] = stored.result;
            continue;
          }
          const loadBefore = os.loadavg();
          const t0 = performance.now();
          console.log(`  ${recipeName} / ${framework} ...`);
          const result = await runFramework(framework, python, cell, recipes[recipeName], seed, o.threads);
          if (result.trainSha256 !== meta.train.sha256) throw new Error(`${framework} trained on ${result.trainSha256}, the cell is ${meta.train.sha256}`);
          const record: RunRecord = {
            set, seed, recipe: recipeName, framework, trainImages: meta.train.images, poisoned: meta.train.poisoned,
            wallSeconds: (performance.now() - t0) / 1000, loadBefore, loadAfter: os.loadavg(), result,
          };
          runs.push(record);
          done[framework] = result;
          console.log(`  ${recipeName} / ${framework}: ACC ${result.acc.toFixed(2)}${result.asr === undefined ? '' : `, ASR ${result.asr.toFixed(2)}`} (${record.wallSeconds.toFixed(0)} s, load ${loadBefore[0].toFixed(2)})`);
          await save(false);
        }
        if (done.ntml && done.pytorch) checkSchedulesAgree(done.ntml, done.pytorch, `${set}, seed ${seed}, ${recipeName}`);
      }
    }
  }
  await save(true);
  console.log(`wrote ${path.join(o.out, 'report.md')} and report.json`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}

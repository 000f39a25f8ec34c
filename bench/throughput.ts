/**
 * Training and inference throughput of the project's own training loop (core/train) against a
 * PyTorch reference of the same architectures, optimiser and batch size
 * (bench/reference/pytorch_throughput.py), alternated in one run on the same machine.
 *
 *   node dist/bench/throughput.js [--rounds R] [--images N] [--epochs E] [--batch-size B]
 *       [--inference-batch-size B] [--threads T] [--archs resnet20,smallCnn] [--augment on|off]
 *       [--with-plain] [--no-pytorch] [--out DIR] [--name BASE]
 *
 * Every configuration runs in a fresh child process (ours: this file with --worker; PyTorch:
 * the reference script in a virtual environment under ~/.cache/ntml/bench-venv, created from
 * bench/reference/requirements.txt on first use), so peak RSS is that configuration's own and
 * no run inherits another's allocations. Both sides get the same thread count (tfjs through
 * TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS, PyTorch through torch.set_num_threads).
 * Per configuration: a warm-up epoch on 512 images, E timed epochs over N random 32x32x3 images
 * at batch B, then one warm-up and one timed inference pass over the same images at the
 * inference batch size (default B; the same on both sides). Ours times three inference paths in
 * the same process, rotating which goes first by round: the BN-folded graph every evaluation
 * uses (core/models/foldedInference), the unfolded applyModel pass it replaced
 * (NTML_FOLDED_INFERENCE=0) and the folded graph as one TensorFlow session per batch
 * (NTML_FOLDED_INFERENCE=graph, core/models/graphInference); the ratio to PyTorch is the eager
 * folded one's, the others are reported beside it. Rounds alternate which
 * side goes first. --with-plain adds, in the first round, our loop with
 * NTML_FAST_PATH=0 (the plain tfjs composition) as the before-picture.
 * Writes bench/results/<BASE>.json and <BASE>.md (BASE: throughput). A benchmark: never run in CI.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../core/tf';
import { Rng } from '../core/rng';
import type { ImageDataset } from '../core/data/dataset';
import { createClassifier } from '../core/models/layersFormat';
import { predictLabels, type Classifier } from '../core/models/classifier';
import { trainClassifier } from '../core/train/trainClassifier';
import { loopTimings } from '../core/train/epochLoop';
import { useFastPath } from '../core/train/fast';
import { TrainRecipe } from '../core/train/recipe';
import { architectureNames, type ArchitectureName } from '../core/models/names';
import { findRepoRoot } from '../store/repoRoot';
import { UsageError } from '../cli/errors';
import { parseBenchArgs, type OptionSpecs } from './args';
import { machine, median, pytorchPython, referenceDir as reference, runChild, threadEnv, type Machine } from './benchHost';

type Impl = 'ours' | 'ours-plain' | 'pytorch';

interface Options {
  rounds: number;
  images: number;
  epochs: number;
  batchSize: number;
  /** batch of the inference passes, both sides */
  inferenceBatchSize: number;
  warmupImages: number;
  threads: number;
  archs: ArchitectureName[];
  augment: boolean;
  withPlain: boolean;
  pytorch: boolean;
  out: string;
  /** base name of the result files in `out` */
  name: string;
}

/** One configuration's numbers, as both the worker and the PyTorch script print them. */
interface RunResult {
  impl: Impl;
  arch: ArchitectureName;
  round: number;
  augmentation: boolean;
  batchSize: number;
  images: number;
  epochs: number;
  threads: number;
  parameters: number;
  warmupSeconds: number;
  trainSeconds: number;
  trainImagesPerSecond: number;
  epochImagesPerSecond: number[];
  /** share of the timed training wall time spent gathering, augmenting and encoding batches */
  dataShare: number;
  /** process CPU seconds per wall second during the timed training */
  trainCoresBusy: number;
  inferenceBatchSize?: number;
  inferenceSeconds: number;
  /** ours: the folded inference graph (what evaluations run) */
  inferenceImagesPerSecond: number;
  /** ours only: the unfolded applyModel pass, timed beside the folded one in the same process */
  unfoldedInferenceImagesPerSecond?: number;
  /** ours only: the folded graph as one TensorFlow session per batch (NTML_FOLDED_INFERENCE=graph), same process */
  graphInferenceImagesPerSecond?: number;
  finalLoss: number;
  /** the child process's peak resident memory over its whole life */
  peakRssMiB: number;
  /** 1-minute load average when the child started: other work on the machine */
  loadAverage: number;
  tensorsBefore?: number;
  tensorsAfterTraining?: number;
  tensorsAfterDispose?: number;
  torch?: string;
}

const root = findRepoRoot(__dirname) ?? process.cwd();

const USAGE =
  'usage: throughput.js [--rounds R] [--images N] [--epochs E] [--batch-size B] [--inference-batch-size B] [--threads T] [--archs a,b] [--augment on|off] [--with-plain] [--no-pytorch] [--out DIR] [--name BASE]';

const OPTIONS: OptionSpecs = {
  rounds: { type: 'string' },
  images: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  'inference-batch-size': { type: 'string' },
  threads: { type: 'string' },
  archs: { type: 'string' },
  augment: { type: 'string' },
  'with-plain': { type: 'boolean' },
  'no-pytorch': { type: 'boolean' },
  out: { type: 'string' },
  name: { type: 'string' },
  // one configuration's child process (runOurs): its architecture, 1-based round, plain loop
  worker: { type: 'string', internal: true },
  round: { type: 'string', internal: true },
  plain: { type: 'boolean', internal: true },
};

export function parseOptions(argv: string[]): Options & { worker?: { arch: ArchitectureName; round: number; plain: boolean } } {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  const batchSize = a.integer('batch-size', 128);
  const o: Options = {
    rounds: a.integer('rounds', 3),
    images: a.integer('images', 2560),
    epochs: a.integer('epochs', 1),
    batchSize,
    inferenceBatchSize: a.integer('inference-batch-size', batchSize),
    warmupImages: 512,
    threads: a.integer('threads', os.availableParallelism()),
    archs: a.list('archs', architectureNames, ['resnet20', 'smallCnn']),
    augment: a.choice('augment', ['on', 'off'], 'on') === 'on',
    withPlain: a.flag('with-plain'),
    pytorch: !a.flag('no-pytorch'),
    out: a.path('out', path.join(root, 'bench', 'results')),
    name: a.baseName('name', 'throughput'),
  };
  for (const n of ['round', 'plain']) if (a.has(n) && !a.has('worker')) throw new UsageError(`--${n} is only for a configuration's child process (with --worker)`);
  const worker = a.has('worker') ? { arch: a.choice('worker', architectureNames, 'resnet20'), round: a.integer('round', 1) - 1, plain: a.flag('plain') } : undefined;
  return { ...o, worker };
}

function randomImages(n: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(n * 32 * 32 * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(256);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = rng.int(10);
  return { name: `random:${n}`, height: 32, width: 32, channels: 3, numClasses: 10, images, labels };
}

// --- worker: one configuration of our loop, in its own process ---------------------------

async function worker(o: Options, arch: ArchitectureName, round: number, plain: boolean): Promise<RunResult> {
  const loadAverage = os.loadavg()[0];
  const data = randomImages(o.images, 7);
  const tensorsBefore = tf.memory().numTensors;
  const fastPath = !plain && useFastPath();
  const recipe = (epochs: number) =>
    TrainRecipe.parse({
      epochs,
      batchSize: o.batchSize,
      learningRate: 0.05,
      schedule: 'constant',
      augment: o.augment ? { padding: 4, flip: true } : { padding: 0, flip: false },
    });
  const c = createClassifier(arch, data, 10, 1);
  const parameters = c.model.countParams();
  const warm = Int32Array.from({ length: Math.min(o.warmupImages, o.images) }, (_, i) => i);
  let t0 = performance.now();
  await trainClassifier({ classifier: c, data, indices: warm, recipe: recipe(1), seed: 2, fastPath });
  const warmupSeconds = (performance.now() - t0) / 1000;

  const assembly0 = loopTimings.batchAssemblySeconds;
  const cpu0 = process.cpuUsage();
  t0 = performance.now();
  const trained = await trainClassifier({ classifier: c, data, recipe: recipe(o.epochs), seed: 3, fastPath });
  const trainSeconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const dataSeconds = loopTimings.batchAssemblySeconds - assembly0;
  const tensorsAfterTraining = tf.memory().numTensors;

  const inference = await timeInference(c, data, o.inferenceBatchSize, round);
  c.model.dispose();
  return {
    impl: plain ? 'ours-plain' : 'ours',
    arch,
    round,
    augmentation: o.augment,
    batchSize: o.batchSize,
    images: o.images,
    epochs: o.epochs,
    threads: o.threads,
    parameters,
    warmupSeconds,
    trainSeconds,
    trainImagesPerSecond: (o.images * o.epochs) / trainSeconds,
    epochImagesPerSecond: trained.history.map((h) => h.images / h.seconds),
    dataShare: dataSeconds / trainSeconds,
    trainCoresBusy: (cpu.user + cpu.system) / 1e6 / trainSeconds,
    inferenceBatchSize: o.inferenceBatchSize,
    inferenceSeconds: inference.folded,
    inferenceImagesPerSecond: o.images / inference.folded,
    unfoldedInferenceImagesPerSecond: o.images / inference.unfolded,
    graphInferenceImagesPerSecond: o.images / inference.graph,
    finalLoss: trained.history[trained.history.length - 1].loss,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    loadAverage,
    tensorsBefore,
    tensorsAfterTraining,
    tensorsAfterDispose: tf.memory().numTensors,
  };
}

type InferencePath = 'folded' | 'unfolded' | 'graph';
const INFERENCE_MODE: Record<InferencePath, string> = { folded: 'eager', unfolded: '0', graph: 'graph' };

/**
 * Seconds of one predictLabels pass over `data` on each inference path (NTML_FOLDED_INFERENCE:
 * the eager folded graph, the unfolded applyModel pass, the folded graph as one TensorFlow
 * session), each after its own warm-up pass (which for the session includes building it: a
 * predictLabels call builds its graph, so the timed pass pays that too); the order rotates by
 * round, so a drift in machine load within the process does not favour one.
 */
async function timeInference(c: Classifier, data: ImageDataset, batchSize: number, round: number): Promise<Record<InferencePath, number>> {
  const saved = process.env.NTML_FOLDED_INFERENCE;
  const pass = async (p: InferencePath): Promise<number> => {
    process.env.NTML_FOLDED_INFERENCE = INFERENCE_MODE[p];
    await predictLabels(c, data, batchSize); // warm-up of this path
    const t0 = performance.now();
    await predictLabels(c, data, batchSize);
    return (performance.now() - t0) / 1000;
  };
  try {
    const paths: InferencePath[] = ['folded', 'unfolded', 'graph'];
    const order = paths.map((_, i) => paths[(i + round) % paths.length]);
    const seconds = {} as Record<InferencePath, number>;
    for (const p of order) seconds[p] = await pass(p);
    return seconds;
  } finally {
    if (saved === undefined) delete process.env.NTML_FOLDED_INFERENCE;
    else process.env.NTML_FOLDED_INFERENCE = saved;
  }
}

// --- the driver --------------------------------------------------------------------------------

async function runOurs(o: Options, arch: ArchitectureName, round: number, plain: boolean): Promise<RunResult> {
  const args = [
    __filename, '--worker', arch, '--round', String(round + 1), ...(plain ? ['--plain'] : []),
    '--images', String(o.images), '--epochs', String(o.epochs), '--batch-size', String(o.batchSize),
    '--inference-batch-size', String(o.inferenceBatchSize), '--threads', String(o.threads), '--augment', o.augment ? 'on' : 'off',
  ];
  const env = {
    ...process.env,
    ...threadEnv(o.threads),
    NTML_FAST_PATH: plain ? '0' : (process.env.NTML_FAST_PATH ?? '1'),
  };
  return runChild<RunResult>(process.execPath, args, env);
}

async function runPytorch(o: Options, python: string, arch: ArchitectureName, round: number): Promise<RunResult> {
  const loadAverage = os.loadavg()[0];
  const args = [
    path.join(reference, 'pytorch_throughput.py'), '--arch', arch, '--images', String(o.images), '--epochs', String(o.epochs),
    '--batch-size', String(o.batchSize), '--inference-batch-size', String(o.inferenceBatchSize), '--warmup-images', String(o.warmupImages), '--threads', String(o.threads),
    '--augment', o.augment ? '1' : '0',
  ];
  const r = await runChild<RunResult>(python, args, { ...process.env, PYTHONUNBUFFERED: '1' });
  return { ...r, impl: 'pytorch', round, loadAverage };
}

interface Summary {
  arch: ArchitectureName;
  trainRatios: number[];
  /** ours folded / PyTorch, per round */
  inferenceRatios: number[];
  /** ours unfolded (applyModel) / PyTorch, per round */
  unfoldedInferenceRatios: number[];
  /** ours folded as one session per batch / PyTorch, per round */
  graphInferenceRatios: number[];
  medianTrainRatio: number;
  medianInferenceRatio: number;
  medianUnfoldedInferenceRatio: number;
  medianGraphInferenceRatio: number;
}

function summarise(o: Options, runs: RunResult[]): Summary[] {
  return o.archs.flatMap((arch) => {
    const pairs = Array.from({ length: o.rounds }, (_, r) => [
      runs.find((x) => x.arch === arch && x.round === r && x.impl === 'ours'),
      runs.find((x) => x.arch === arch && x.round === r && x.impl === 'pytorch'),
    ]).filter((p): p is [RunResult, RunResult] => !!p[0] && !!p[1]);
    if (pairs.length === 0) return [];
    const trainRatios = pairs.map(([a, b]) => a.trainImagesPerSecond / b.trainImagesPerSecond);
    const inferenceRatios = pairs.map(([a, b]) => a.inferenceImagesPerSecond / b.inferenceImagesPerSecond);
    const unfoldedInferenceRatios = pairs.map(([a, b]) => (a.unfoldedInferenceImagesPerSecond ?? NaN) / b.inferenceImagesPerSecond);
    const graphInferenceRatios = pairs.map(([a, b]) => (a.graphInferenceImagesPerSecond ?? NaN) / b.inferenceImagesPerSecond);
    return [{
      arch, trainRatios, inferenceRatios, unfoldedInferenceRatios, graphInferenceRatios,
      medianTrainRatio: median(trainRatios), medianInferenceRatio: median(inferenceRatios),
      medianUnfoldedInferenceRatio: median(unfoldedInferenceRatios), medianGraphInferenceRatio: median(graphInferenceRatios),
    }];
  });
}

function markdown(o: Options, m: Machine, runs: RunResult[], summary: Summary[], info: { date: string; loadStart: number; loadEnd: number; totalSeconds: number }): string {
  const f0 = (v: number) => v.toFixed(0);
  const f2 = (v: number) => v.toFixed(2);
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const implName: Record<Impl, string> = { ours: 'ours (fast path)', 'ours-plain': 'ours (plain tfjs composition, NTML_FAST_PATH=0; oneDNN on)', pytorch: 'PyTorch' };
  const rows = runs.map(
    (r) =>
      `| ${r.round + 1} | ${r.arch} | ${implName[r.impl]} | ${f0(r.trainImagesPerSecond)} | ${f0(r.inferenceImagesPerSecond)} | ${r.unfoldedInferenceImagesPerSecond === undefined ? '' : f0(r.unfoldedInferenceImagesPerSecond)} | ${r.graphInferenceImagesPerSecond === undefined ? '' : f0(r.graphInferenceImagesPerSecond)} | ${pct(r.dataShare)} | ${f2(r.trainCoresBusy)} | ${f0(r.peakRssMiB)} | ${f2(r.loadAverage)} | ${r.finalLoss.toFixed(3)} |`,
  );
  const sums = summary.map(
    (s) =>
      `| ${s.arch} | ${s.trainRatios.map(f2).join(' / ')} | **${f2(s.medianTrainRatio)}** | ${s.inferenceRatios.map(f2).join(' / ')} | **${f2(s.medianInferenceRatio)}** | ${s.unfoldedInferenceRatios.map(f2).join(' / ')} | ${f2(s.medianUnfoldedInferenceRatio)} | ${s.graphInferenceRatios.map(f2).join(' / ')} | ${f2(s.medianGraphInferenceRatio)} |`,
  );
  const torch = runs.find((r) => r.impl === 'pytorch')?.torch;
  return [
    '# Training throughput: ours vs PyTorch',
    '',
    `Measured ${info.date} with \`node dist/bench/throughput.js\` (bench/throughput.ts): ${o.rounds} rounds, each running`,
    `the project's training loop (core/train/trainClassifier) and the PyTorch reference (bench/reference/pytorch_throughput.py)`,
    `in fresh processes, alternating which goes first. Batch ${o.batchSize}, ${o.images} random 32x32x3 images, ${o.epochs} timed epoch(s)`,
    `after a warm-up epoch on ${o.warmupImages} images, augmentation ${o.augment ? 'random crop (pad 4) + flip' : 'off'}, SGD momentum 0.9,`,
    `weight decay 5e-4; inference: one timed pass over the same images at batch ${o.inferenceBatchSize} after a warm-up pass (ours: predictLabels`,
    `through the BN-folded inference graph, and beside it in the same process, rotating which goes first, the unfolded`,
    `applyModel pass it replaced and the folded graph as one TensorFlow session per batch, NTML_FOLDED_INFERENCE=graph, its`,
    `build included; PyTorch: eval + inference_mode). ${o.threads} threads on both sides.`,
    '',
    '## Ratio ours / PyTorch (images per second; above 1 = we are faster)',
    '',
    '| model | training, per round | training median | inference (folded), per round | inference (folded) median | inference (unfolded), per round | inference (unfolded) median | inference (folded, one session), per round | inference (session) median |',
    '|---|---|---|---|---|---|---|---|---|',
    ...sums,
    '',
    '## Runs',
    '',
    '| round | model | implementation | train img/s | inference img/s (ours: folded) | inference img/s (ours: unfolded) | inference img/s (ours: folded, one session) | data loading + augmentation share of training | cores busy in training | peak RSS MiB | load avg at start |  final loss |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `1-minute load average ${info.loadStart.toFixed(2)} at the start and ${info.loadEnd.toFixed(2)} at the end, on ${m.logicalCores} cores; total ${info.totalSeconds.toFixed(0)} s.`,
    'A load above the core count means other processes competed for the CPU during the run: every number above is then lower',
    'than on an idle machine, and PyTorch (OpenMP threads that wait for each other at every parallel region) tends to lose more',
    "to that competition than TensorFlow's thread pool does. Compare ratios only from runs on a quiet machine.",
    'Peak RSS is each child process\'s own maximum (getrusage).',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpuModel}, ${m.logicalCores} logical cores (available parallelism ${m.availableParallelism}), ${m.totalMemoryGiB} GiB memory`,
    `- OS: ${m.platform}`,
    `- Node.js ${m.node}, @tensorflow/tfjs-node ${m.tfjs} on native TensorFlow ${m.tensorflow}, backend ${m.backend}, TF_ENABLE_ONEDNN_OPTS=${m.oneDNN}`,
    `- PyTorch ${torch ?? '(not run)'}`,
    '',
  ].join('\n');
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  if (o.worker) {
    const r = await worker(o, o.worker.arch, o.worker.round, o.worker.plain);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const t0 = performance.now();
  const loadStart = os.loadavg()[0];
  const m = machine(o.threads);
  console.log(`machine: ${m.cpuModel}, ${m.logicalCores} cores, load ${loadStart.toFixed(2)}, Node ${m.node}, TensorFlow ${m.tensorflow}, ${o.threads} threads`);
  const python = o.pytorch ? pytorchPython() : undefined;
  const runs: RunResult[] = [];
  const report = (r: RunResult) => {
    runs.push(r);
    console.log(
      `round ${r.round + 1} ${r.arch.padEnd(8)} ${r.impl.padEnd(10)} train ${r.trainImagesPerSecond.toFixed(0).padStart(5)} img/s  ` +
        `inference ${r.inferenceImagesPerSecond.toFixed(0).padStart(5)} img/s` +
        `${r.unfoldedInferenceImagesPerSecond === undefined ? '' : ` (unfolded ${r.unfoldedInferenceImagesPerSecond.toFixed(0)}, session ${r.graphInferenceImagesPerSecond?.toFixed(0)})`}  data ${(100 * r.dataShare).toFixed(1)}%  ` +
        `peak RSS ${r.peakRssMiB.toFixed(0)} MiB  load ${r.loadAverage.toFixed(2)}`,
    );
  };
  for (let round = 0; round < o.rounds; round++) {
    for (const arch of o.archs) {
      const sides: (() => Promise<RunResult>)[] = [() => runOurs(o, arch, round, false)];
      if (python) sides.push(() => runPytorch(o, python, arch, round));
      if (round % 2 === 1) sides.reverse();
      for (const side of sides) report(await side());
      if (o.withPlain && round === 0) report(await runOurs(o, arch, round, true));
    }
  }
  const summary = summarise(o, runs);
  for (const s of summary) {
    console.log(
      `${s.arch}: ours/PyTorch training ${s.trainRatios.map((r) => r.toFixed(2)).join(' ')} (median ${s.medianTrainRatio.toFixed(2)}), ` +
        `inference folded ${s.inferenceRatios.map((r) => r.toFixed(2)).join(' ')} (median ${s.medianInferenceRatio.toFixed(2)}), ` +
        `unfolded ${s.unfoldedInferenceRatios.map((r) => r.toFixed(2)).join(' ')} (median ${s.medianUnfoldedInferenceRatio.toFixed(2)}), ` +
        `session ${s.graphInferenceRatios.map((r) => r.toFixed(2)).join(' ')} (median ${s.medianGraphInferenceRatio.toFixed(2)})`,
    );
  }
  const info = { date: new Date().toISOString(), loadStart, loadEnd: os.loadavg()[0], totalSeconds: (performance.now() - t0) / 1000 };
  await fs.mkdir(o.out, { recursive: true });
  const { out: _out, ...options } = o;
  const file = (ext: string) => path.join(o.out, `${o.name}.${ext}`);
  await fs.writeFile(file('json'), `${JSON.stringify({ ...info, options, machine: m, summary, runs }, null, 2)}\n`);
  await fs.writeFile(file('md'), markdown(o, m, runs, summary, info));
  console.log(`load ${loadStart.toFixed(2)} -> ${info.loadEnd.toFixed(2)}; wrote ${file('json')} and ${file('md')}`);
}

// a test imports parseOptions; only running the file runs the benchmark
if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}

/**
 * Training and inference throughput of the project's own training loop (core/train) on the
 * native TensorFlow backend: resnet20 and smallCnn at batch 128 on random 32x32x3 images,
 * without and with augmentation (random crop after 4-pixel padding + horizontal flip).
 *
 *   node dist/bench/throughput.js [--images N] [--epochs E] [--out DIR]
 *
 * Per configuration: a warm-up epoch on a small slice (kernel selection, allocations), then E
 * timed epochs over N images via trainClassifier, then predictLabels over the same images. Reports
 * images/s, peak RSS (sampled every 50 ms during the configuration, and the process maximum), and
 * the live tensor count before and after (a leak shows as a difference). Writes
 * bench/results/throughput.json and bench/results/throughput.md.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf, nativeTensorflowVersion, backendKind } from '../core/tf';
import { Rng } from '../core/rng';
import type { ImageDataset } from '../core/data/dataset';
import { createClassifier } from '../core/models/layersFormat';
import { predictLabels } from '../core/models/classifier';
import { trainClassifier } from '../core/train/trainClassifier';
import { TrainRecipe } from '../core/train/recipe';
import type { ArchitectureName } from '../core/models/names';
import { findRepoRoot } from '../store/repoRoot';

interface Options {
  images: number;
  epochs: number;
  batchSize: number;
  warmupImages: number;
  out: string;
}

interface Result {
  arch: ArchitectureName;
  augmentation: boolean;
  batchSize: number;
  images: number;
  epochs: number;
  parameters: number;
  warmupSeconds: number;
  trainSeconds: number;
  trainImagesPerSecond: number;
  /** process CPU seconds per wall second during the timed training: the cores it actually got */
  trainCoresBusy: number;
  /** per timed epoch, from the epoch loop's own clock */
  epochImagesPerSecond: number[];
  inferenceSeconds: number;
  inferenceImagesPerSecond: number;
  finalLoss: number;
  peakRssMiB: number;
  tensorsBefore: number;
  tensorsAfterTraining: number;
  tensorsAfterDispose: number;
}

function parseOptions(argv: string[]): Options {
  const root = findRepoRoot(__dirname) ?? process.cwd();
  const o: Options = { images: 2560, epochs: 2, batchSize: 128, warmupImages: 512, out: path.join(root, 'bench', 'results') };
  for (let i = 0; i < argv.length; i++) {
    const [flag, value] = [argv[i], argv[i + 1]];
    const num = () => {
      const n = Number(value);
      if (!Number.isInteger(n) || n <= 0) throw new Error(`${flag} needs a positive integer`);
      i++;
      return n;
    };
    if (flag === '--images') o.images = num();
    else if (flag === '--epochs') o.epochs = num();
    else if (flag === '--batch-size') o.batchSize = num();
    else if (flag === '--out') {
      if (!value) throw new Error('--out needs a folder');
      o.out = path.resolve(value);
      i++;
    } else throw new Error(`unknown argument ${flag}; usage: throughput.js [--images N] [--epochs E] [--batch-size B] [--out DIR]`);
  }
  return o;
}

function randomImages(n: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = new Uint8Array(n * 32 * 32 * 3);
  for (let i = 0; i < images.length; i++) images[i] = rng.int(256);
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) labels[i] = rng.int(10);
  return { name: `random:${n}`, height: 32, width: 32, channels: 3, numClasses: 10, images, labels };
}

const mib = (bytes: number) => bytes / (1024 * 1024);

/** Peak RSS while `f` runs, sampled every 50 ms (plus before and after). */
async function withPeakRss<T>(f: () => Promise<T>): Promise<{ value: T; peakRss: number }> {
  let peak = process.memoryUsage().rss;
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage().rss);
  }, 50);
  try {
    const value = await f();
    peak = Math.max(peak, process.memoryUsage().rss);
    return { value, peakRss: peak };
  } finally {
    clearInterval(timer);
  }
}

async function benchmark(arch: ArchitectureName, augmentation: boolean, data: ImageDataset, o: Options): Promise<Result> {
  const tensorsBefore = tf.memory().numTensors;
  const recipe = (epochs: number) =>
    TrainRecipe.parse({
      epochs,
      batchSize: o.batchSize,
      learningRate: 0.05,
      schedule: 'constant',
      augment: augmentation ? { padding: 4, flip: true } : { padding: 0, flip: false },
    });
  const { value, peakRss } = await withPeakRss(async () => {
    const c = createClassifier(arch, data, 10, 1);
    const parameters = c.model.countParams();
    // warm-up: one epoch over a slice (first-call kernel selection and buffer allocation)
    const warm = Int32Array.from({ length: Math.min(o.warmupImages, data.labels.length) }, (_, i) => i);
    let t0 = performance.now();
    await trainClassifier({ classifier: c, data, indices: warm, recipe: recipe(1), seed: 2 });
    const warmupSeconds = (performance.now() - t0) / 1000;

    t0 = performance.now();
    const cpu0 = process.cpuUsage();
    const trained = await trainClassifier({ classifier: c, data, recipe: recipe(o.epochs), seed: 3 });
    const trainSeconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const trainCoresBusy = (cpu.user + cpu.system) / 1e6 / trainSeconds;
    const tensorsAfterTraining = tf.memory().numTensors;

    await predictLabels(c, data, o.batchSize); // warm-up of the inference path
    t0 = performance.now();
    await predictLabels(c, data, o.batchSize);
    const inferenceSeconds = (performance.now() - t0) / 1000;
    c.model.dispose();
    return {
      parameters,
      warmupSeconds,
      trainSeconds,
      trainCoresBusy,
      history: trained.history,
      tensorsAfterTraining,
      inferenceSeconds,
    };
  });
  const images = data.labels.length;
  return {
    arch,
    augmentation,
    batchSize: o.batchSize,
    images,
    epochs: o.epochs,
    parameters: value.parameters,
    warmupSeconds: value.warmupSeconds,
    trainSeconds: value.trainSeconds,
    trainImagesPerSecond: (images * o.epochs) / value.trainSeconds,
    trainCoresBusy: value.trainCoresBusy,
    epochImagesPerSecond: value.history.map((h) => h.images / h.seconds),
    inferenceSeconds: value.inferenceSeconds,
    inferenceImagesPerSecond: images / value.inferenceSeconds,
    finalLoss: value.history[value.history.length - 1].loss,
    peakRssMiB: mib(peakRss),
    tensorsBefore,
    tensorsAfterTraining: value.tensorsAfterTraining,
    tensorsAfterDispose: tf.memory().numTensors,
  };
}

function machine() {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    logicalCores: cpus.length,
    availableParallelism: os.availableParallelism(),
    totalMemoryGiB: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    tfjs: tf.version.tfjs,
    tensorflow: nativeTensorflowVersion(),
    backend: `${backendKind} (${tf.getBackend()})`,
    /** 1-minute load average at the start: other work on the machine lowers every number */
    loadAverageAtStart: Number(os.loadavg()[0].toFixed(2)),
  };
}

interface RunInfo {
  totalSeconds: number;
  maxRssMiB: number;
  date: string;
  /** process CPU seconds / wall seconds: how many cores the run kept busy on average */
  coresBusy: number;
  loadAverageAtEnd: number;
}

function markdown(results: Result[], m: ReturnType<typeof machine>, o: Options, run: RunInfo): string {
  const f0 = (v: number) => v.toFixed(0);
  const f1 = (v: number) => v.toFixed(1);
  const rows = results.map(
    (r) =>
      `| ${r.arch} | ${r.augmentation ? 'crop+flip' : 'none'} | ${(r.parameters / 1000).toFixed(0)}k | ${f0(r.trainImagesPerSecond)} | ${r.epochImagesPerSecond.map(f0).join(' / ')} | ${r.trainCoresBusy.toFixed(2)} | ${f0(r.inferenceImagesPerSecond)} | ${f0(r.peakRssMiB)} | ${r.tensorsBefore} → ${r.tensorsAfterTraining} → ${r.tensorsAfterDispose} |`,
  );
  return [
    '# Training throughput',
    '',
    `Measured ${run.date} with \`node dist/bench/throughput.js\` (bench/throughput.ts): the project's training loop`,
    `(core/train/trainClassifier: SGD with momentum, weight decay, host-side batch assembly) at batch ${o.batchSize}`,
    `on ${o.images} random 32x32x3 images, ${o.epochs} timed epochs after a one-epoch warm-up on ${o.warmupImages} images;`,
    `inference is predictLabels over the same images (batch ${o.batchSize}, after one warm-up pass).`,
    '',
    '| model | augmentation | params | train img/s | per epoch img/s | cores busy in training | inference img/s | peak RSS MiB | live tensors before → after training → after dispose |',
    '|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '',
    `Peak RSS is sampled every 50 ms during each configuration (the process maximum was ${f0(run.maxRssMiB)} MiB). Total run time ${f1(run.totalSeconds)} s;`,
    `the process kept ${run.coresBusy.toFixed(2)} cores busy on average, with a 1-minute load average of ${m.loadAverageAtStart} at the start and ${run.loadAverageAtEnd} at the end`,
    `(a load above the core count means other processes competed for the CPU and every number above is lower than on an idle machine).`,
    '"Cores busy" is process CPU time over wall time during the timed epochs: below the core count, the run did not get the whole machine.',
    'A tensor count that returns to its starting value after the model is disposed means the loop leaks no tensors.',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpuModel}, ${m.logicalCores} logical cores (available parallelism ${m.availableParallelism}), ${m.totalMemoryGiB} GiB memory`,
    `- OS: ${m.platform}`,
    `- Node.js ${m.node}, @tensorflow/tfjs-node ${m.tfjs} on native TensorFlow ${m.tensorflow}, backend ${m.backend}`,
    '',
    '## Reference points (quoted, not measured here)',
    '',
    'For ResNet-20 at batch 128 on a 2-core build machine:',
    '',
    '- a plain tfjs-node training loop: ~300 img/s',
    '- PyTorch 2.13 on CPU: ~700 img/s',
    '',
  ].join('\n');
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const t0 = performance.now();
  const m = machine();
  console.log(`machine: ${m.cpuModel}, ${m.logicalCores} cores, Node ${m.node}, tfjs ${m.tfjs}, TensorFlow ${m.tensorflow}`);
  const data = randomImages(o.images, 7);
  const results: Result[] = [];
  for (const arch of ['resnet20', 'smallCnn'] as ArchitectureName[]) {
    for (const augmentation of [false, true]) {
      const r = await benchmark(arch, augmentation, data, o);
      results.push(r);
      console.log(
        `${arch.padEnd(8)} aug=${augmentation ? 'on ' : 'off'}  train ${r.trainImagesPerSecond.toFixed(0)} img/s (${r.trainCoresBusy.toFixed(2)} cores busy)  ` +
          `inference ${r.inferenceImagesPerSecond.toFixed(0)} img/s  peak RSS ${r.peakRssMiB.toFixed(0)} MiB  ` +
          `tensors ${r.tensorsBefore} -> ${r.tensorsAfterTraining} -> ${r.tensorsAfterDispose}  (warm-up ${r.warmupSeconds.toFixed(1)} s)`,
      );
    }
  }
  const totalSeconds = (performance.now() - t0) / 1000;
  const usage = process.resourceUsage();
  const run: RunInfo = {
    totalSeconds,
    maxRssMiB: usage.maxRSS / 1024,
    date: new Date().toISOString(),
    coresBusy: (usage.userCPUTime + usage.systemCPUTime) / 1e6 / totalSeconds,
    loadAverageAtEnd: Number(os.loadavg()[0].toFixed(2)),
  };
  await fs.mkdir(o.out, { recursive: true });
  const json = { ...run, options: { images: o.images, epochs: o.epochs, batchSize: o.batchSize, warmupImages: o.warmupImages }, machine: m, results };
  await fs.writeFile(path.join(o.out, 'throughput.json'), `${JSON.stringify(json, null, 2)}\n`);
  await fs.writeFile(path.join(o.out, 'throughput.md'), markdown(results, m, o, run));
  console.log(`total ${totalSeconds.toFixed(1)} s, ${run.coresBusy.toFixed(2)} cores busy, load ${m.loadAverageAtStart} -> ${run.loadAverageAtEnd}; wrote ${path.join(o.out, 'throughput.json')} and throughput.md`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

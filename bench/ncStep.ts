/**
 * Neural Cleanse's cost per class-step, class after class (classesPerPass 1) against all classes
 * in one batched step (the default), side by side on the same model and reference set:
 *   node dist/bench/ncStep.js [--arch smallCnn] [--steps 20] [--rounds 3] [--reference-size 1000] [--passes 1,10]
 * The model has random weights (NC's step costs the same whatever the weights; the verdicts are
 * the tests' business), the reference set is random 32x32x3 images in 10 classes. Each round
 * runs every --passes setting once, in turn, so a load change hits them alike; it prints ms per
 * class-step (scan time / (classes x steps), final ASR included), wall-clock and this process's
 * CPU time (user + system: on a loaded machine the steadier of the two), per round and their
 * medians, and the load average before and after. A benchmark: a loaded machine's numbers compare only side by side.
 */
import * as os from 'node:os';
import { tf } from '../core/tf';
import { createClassifier } from '../core/models/layersFormat';
import { ArchitectureName } from '../core/models/names';
import { DEFAULT_NC_OPTIONS, neuralCleanse } from '../core/audit/neuralCleanse';
import type { ImageDataset } from '../core/data/dataset';
import { Rng } from '../core/rng';
import { parseBenchArgs, type OptionSpecs } from './args';
import { UsageError } from '../cli/errors';

const USAGE = 'usage: ncStep.js [--arch smallCnn|tinyCnn|resnet20] [--steps N] [--rounds N] [--reference-size N] [--passes 1,10]';

const OPTIONS: OptionSpecs = {
  arch: { type: 'string' },
  steps: { type: 'string' },
  rounds: { type: 'string' },
  'reference-size': { type: 'string' },
  passes: { type: 'string' },
};

const CLASSES = 10;

export function parseOptions(argv: string[]) {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  const passes = a.text('passes', '1,10').split(',').map((v) => Number(v));
  if (passes.length === 0 || passes.some((p) => !Number.isInteger(p) || p < 1 || p > CLASSES)) {
    throw new UsageError(`--passes must be a comma-separated list of integers in [1, ${CLASSES}], got ${JSON.stringify(a.text('passes'))}\n${USAGE}`);
  }
  return {
    arch: a.choice('arch', ['smallCnn', 'tinyCnn', 'resnet20'] as const, 'smallCnn') as ArchitectureName,
    steps: a.integer('steps', 20),
    rounds: a.integer('rounds', 3),
    referenceSize: a.integer('reference-size', 1000, CLASSES),
    passes,
  };
}

function randomReference(size: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = Uint8Array.from({ length: size * 32 * 32 * 3 }, () => Math.floor(rng.next() * 256));
  const labels = Int32Array.from({ length: size }, (_, i) => i % CLASSES);
  return { name: `random-${size}`, height: 32, width: 32, channels: 3, numClasses: CLASSES, images, labels };
}

const load = () => os.loadavg()[0].toFixed(2);
function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const reference = randomReference(o.referenceSize, 1);
  const c = createClassifier(o.arch, reference, CLASSES, 1);
  const nc = { ...DEFAULT_NC_OPTIONS, stepsPerClass: o.steps };
  console.log(`${o.arch}, ${CLASSES} classes x ${o.steps} steps of batch ${nc.batchSize}, reference ${o.referenceSize}; ${tf.getBackend()}; load ${load()}`);
  // warm-up: kernels and the graph plan of every batch shape
  for (const p of o.passes) await neuralCleanse(c, reference, { ...nc, stepsPerClass: 2, classesPerPass: p });
  const ms: Record<number, number[]> = Object.fromEntries(o.passes.map((p) => [p, []]));
  const cpuMs: Record<number, number[]> = Object.fromEntries(o.passes.map((p) => [p, []]));
  for (let r = 1; r <= o.rounds; r++) {
    for (const p of o.passes) {
      const before = load();
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      await neuralCleanse(c, reference, { ...nc, classesPerPass: p });
      const perClassStep = (performance.now() - t0) / (CLASSES * o.steps);
      const cpu = process.cpuUsage(cpu0);
      const cpuPerClassStep = (cpu.user + cpu.system) / 1000 / (CLASSES * o.steps);
      ms[p].push(perClassStep);
      cpuMs[p].push(cpuPerClassStep);
      console.log(`round ${r}, classesPerPass ${p}: ${perClassStep.toFixed(1)} ms per class-step, CPU ${cpuPerClassStep.toFixed(1)} ms (load ${before} -> ${load()})`);
    }
  }
  const [base, cpuBase] = [median(ms[o.passes[0]]), median(cpuMs[o.passes[0]])];
  for (const p of o.passes) {
    console.log(
      `classesPerPass ${p}: median ${median(ms[p]).toFixed(1)} ms per class-step (${(base / median(ms[p])).toFixed(2)}x classesPerPass ${o.passes[0]}), ` +
        `CPU ${median(cpuMs[p]).toFixed(1)} ms (${(cpuBase / median(cpuMs[p])).toFixed(2)}x)`,
    );
  }
  c.model.dispose();
  console.log(`live tensors at the end: ${tf.memory().numTensors}; load ${load()}`);
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof UsageError ? err.message : err);
    process.exit(err instanceof UsageError ? 2 : 1);
  });
}

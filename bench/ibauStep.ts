/**
 * I-BAU's and ANP's hot loops, the reference path against the input-gradient one (issue 22), side by
 * side on the same model and data:
 *   node dist/bench/ibauStep.js [--arch smallCnn] [--batch 80] [--rounds 3] [--outer-steps 3]
 *       [--anp-iterations 5] [--out DIR] [--name BASE]
 * Per path: CPU ms per I-BAU inner step (a gradient step of delta), per I-BAU outer step (the implicit
 * hypergradient, K = 5, and the Adam update) and per ANP mask iteration (noise start, one
 * perturbation step, the mask step), at the defenses' defaults. The reference path is
 * `unlearn`/`learnMasks`' `{ reference: true }`: fused convolutions everywhere, H v's points one at a
 * time, ANP's per-variable updates. Each round runs both paths, in alternating order, so a load change
 * hits them alike; CPU time is this process's user + system (on a loaded machine the steadier
 * measure), wall time is printed beside it, the load average before and after each measurement.
 * The model has random weights and the data is random 32x32x3 images in 10 classes: a step costs the
 * same whatever the values; that both paths compute the same numbers is the tests' business
 * (test/core/defenses/ibau.test.ts, anp.test.ts). --batch 80 is what both defenses run at
 * |D_c| = 100 (min(128, the 80 fit images)). Also printed: how much H v moves when the finite-difference
 * step is divided or multiplied by 4 on this model (the kinks of ReLU and max-pooling; docs/performance.md),
 * beside the Gauss-Newton product, which has no such kinks.
 * Writes <out>/<BASE>.json and .md (default bench/results/ibau-step). A benchmark: never run in CI.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../core/tf';
import { createClassifier } from '../core/models/layersFormat';
import type { ArchitectureName } from '../core/models/names';
import type { ImageDataset } from '../core/data/dataset';
import { Rng } from '../core/rng';
import { Adam } from '../core/train/adam';
import { trainableVariables } from '../core/train/sgd';
import { applyModel, applyModelForInputGradients } from '../core/train/fast';
import { anpDefenseSchema, ibauDefenseSchema } from '../core/defenses/configs';
import { batchTensors } from '../core/defenses/batches';
import { finiteDifferenceStep, hypergradient, finiteDifferenceHvp, perturbed, universalPerturbation, type UnlearningBatch } from '../core/defenses/ibau';
import { learnMasks } from '../core/defenses/anp';
import { findRepoRoot } from '../store/repoRoot';
import { UsageError } from '../cli/errors';
import { parseBenchArgs, type OptionSpecs } from './args';
import { machine, median } from './benchHost';

const USAGE =
  'usage: ibauStep.js [--arch smallCnn|tinyCnn|resnet20] [--batch N] [--rounds N] [--outer-steps N] [--anp-iterations N] [--out DIR] [--name BASE]';

const OPTIONS: OptionSpecs = {
  arch: { type: 'string' },
  batch: { type: 'string' },
  rounds: { type: 'string' },
  'outer-steps': { type: 'string' },
  'anp-iterations': { type: 'string' },
  out: { type: 'string' },
  name: { type: 'string' },
};

const CLASSES = 10;
const PATHS = ['reference', 'inputGradients'] as const;
type PathName = (typeof PATHS)[number];
const MEASURES = ['ibauInnerStep', 'ibauOuterStep', 'anpIteration'] as const;
type Measure = (typeof MEASURES)[number];

export function parseOptions(argv: string[]) {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  return {
    arch: a.choice('arch', ['smallCnn', 'tinyCnn', 'resnet20'] as const, 'smallCnn') as ArchitectureName,
    batch: a.integer('batch', 80, 2),
    rounds: a.integer('rounds', 3),
    outerSteps: a.integer('outer-steps', 3),
    anpIterations: a.integer('anp-iterations', 5),
    out: a.path('out', path.join(findRepoRoot(__dirname) ?? process.cwd(), 'bench', 'results')),
    name: a.baseName('name', 'ibau-step'),
  };
}

function randomImages(size: number, seed: number): ImageDataset {
  const rng = new Rng(seed);
  const images = Uint8Array.from({ length: size * 32 * 32 * 3 }, () => Math.floor(rng.next() * 256));
  const labels = Int32Array.from({ length: size }, (_, i) => i % CLASSES);
  return { name: `random-${size}`, height: 32, width: 32, channels: 3, numClasses: CLASSES, images, labels };
}

const load = () => Number(os.loadavg()[0].toFixed(2));

interface Sample {
  round: number;
  path: PathName;
  measure: Measure;
  cpuMs: number;
  wallMs: number;
  loadBefore: number;
  loadAfter: number;
}

/** CPU and wall ms per unit of `work` (which does `units` of them). */
async function timed(units: number, work: () => Promise<void> | void): Promise<{ cpuMs: number; wallMs: number; loadBefore: number; loadAfter: number }> {
  const loadBefore = load();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await work();
  const wallMs = (performance.now() - t0) / units;
  const cpu = process.cpuUsage(cpu0);
  return { cpuMs: (cpu.user + cpu.system) / 1000 / units, wallMs, loadBefore, loadAfter: load() };
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const data = randomImages(o.batch, 1);
  const c = createClassifier(o.arch, data, CLASSES, 1);
  const ibauCfg = ibauDefenseSchema.parse({ name: 'ibau' });
  const anpCfg = anpDefenseSchema.parse({ name: 'anp', iterations: o.anpIterations, checkpoints: 1, batchSize: o.batch });
  const vars = trainableVariables(c.model);
  const adam = new Adam(vars);
  const rng = new Rng(2);
  const all = Int32Array.from({ length: o.batch }, (_, i) => i);
  const batch = () => ({ ...batchTensors(data, all, c.meta.inputRange, rng), range: c.meta.inputRange, penalty: ibauCfg.perturbationPenalty });
  const forward = (x: TF.Tensor4D) => applyModel(c.model, x, false) as TF.Tensor2D;
  const inputGradientForward = (x: TF.Tensor4D) => applyModelForInputGradients(c.model, x) as TF.Tensor2D;
  const shape = [1, 32, 32, 3];
  const startLoad = load();
  console.log(
    `${o.arch}, batch ${o.batch}; I-BAU K = ${ibauCfg.fixedPointSteps}, ANP perturbSteps ${anpCfg.perturbSteps}; ${tf.getBackend()}, ` +
      `intra-op threads ${process.env.TF_NUM_INTRAOP_THREADS ?? 'default'}; load ${startLoad}`,
  );

  const run: Record<Measure, (p: PathName, delta: TF.Tensor) => Promise<void>> = {
    async ibauInnerStep(p) {
      const batches = Array.from({ length: ibauCfg.innerSteps }, batch);
      tf.dispose(universalPerturbation(batches, forward, ibauCfg, shape, p === 'reference' ? undefined : inputGradientForward));
      tf.dispose(batches.flatMap((b) => [b.x, b.y]));
    },
    async ibauOuterStep(p, delta) {
      for (let s = 0; s < o.outerSteps; s++) {
        const b: UnlearningBatch = { ...batch(), forward, vars, ...(p === 'reference' ? {} : { inputGradientForward }) };
        const hg = hypergradient(b, delta, { mode: 'implicit', fixedPointSteps: ibauCfg.fixedPointSteps, fixedPointStepSize: ibauCfg.fixedPointStepSize, secondOrder: 'finiteDifference' });
        adam.step(hg.grads, ibauCfg.learningRate);
        await hg.loss.data();
        tf.dispose([hg.loss, ...hg.grads, b.x, b.y]);
      }
    },
    async anpIteration(p) {
      await learnMasks(c, { cleanFit: data, augment: { padding: 4, flip: true } }, anpCfg, 3, {}, { reference: p === 'reference' });
    },
  };
  const units: Record<Measure, number> = { ibauInnerStep: ibauCfg.innerSteps, ibauOuterStep: o.outerSteps, anpIteration: o.anpIterations };

  const deltaBatches = Array.from({ length: ibauCfg.innerSteps }, batch);
  const delta = universalPerturbation(deltaBatches, forward, ibauCfg, shape, inputGradientForward);
  tf.dispose(deltaBatches.flatMap((b) => [b.x, b.y]));
  // warm-up: kernels, graph plans and the doubled batch's shapes on both paths
  for (const p of PATHS) for (const m of MEASURES) await run[m](p, delta);

  const samples: Sample[] = [];
  for (let r = 1; r <= o.rounds; r++) {
    const order = r % 2 ? PATHS : [...PATHS].reverse();
    for (const m of MEASURES) {
      for (const p of order) {
        const t = await timed(units[m], () => run[m](p, delta));
        samples.push({ round: r, path: p, measure: m, ...t });
        console.log(`round ${r}, ${m}, ${p}: CPU ${t.cpuMs.toFixed(1)} ms, wall ${t.wallMs.toFixed(1)} ms (load ${t.loadBefore} -> ${t.loadAfter})`);
      }
    }
  }

  const fdStability = finiteDifferenceDiagnostic(batch(), forward, inputGradientForward, delta);
  console.log(
    `H v at t = ${fdStability.step.toExponential(2)} on this model: relative change ${fdStability.quarter.toFixed(2)} at t/4, ${fdStability.fourTimes.toFixed(2)} at 4t; ` +
      `Gauss-Newton ${fdStability.gaussNewtonQuarter.toExponential(1)} / ${fdStability.gaussNewtonFourTimes.toExponential(1)}; H v(t) differs from it by ${fdStability.fromGaussNewton.toFixed(2)}`,
  );
  const summary = MEASURES.map((m) => {
    const of = (p: PathName, k: 'cpuMs' | 'wallMs') => median(samples.filter((s) => s.measure === m && s.path === p).map((s) => s[k]));
    const row = { measure: m, referenceCpuMs: of('reference', 'cpuMs'), inputGradientsCpuMs: of('inputGradients', 'cpuMs'), referenceWallMs: of('reference', 'wallMs'), inputGradientsWallMs: of('inputGradients', 'wallMs') };
    console.log(`${m}: median CPU ${row.referenceCpuMs.toFixed(1)} -> ${row.inputGradientsCpuMs.toFixed(1)} ms (${(row.referenceCpuMs / row.inputGradientsCpuMs).toFixed(2)}x), wall ${row.referenceWallMs.toFixed(1)} -> ${row.inputGradientsWallMs.toFixed(1)} ms`);
    return row;
  });
  const endLoad = load();
  const result = { options: { ...o, out: undefined }, machine: machine(Number(process.env.TF_NUM_INTRAOP_THREADS ?? os.availableParallelism())), startLoad, endLoad, summary, samples, fdStability, date: new Date().toISOString() };
  await fs.mkdir(o.out, { recursive: true });
  await fs.writeFile(path.join(o.out, `${o.name}.json`), JSON.stringify(result, null, 2) + '\n');
  await fs.writeFile(path.join(o.out, `${o.name}.md`), markdown(result));
  tf.dispose([delta]);
  adam.dispose();
  c.model.dispose();
  console.log(`live tensors at the end: ${tf.memory().numTensors}; load ${endLoad}; wrote ${path.join(o.out, o.name)}.{json,md}`);
}

/**
 * Gauss-Newton H v = 2 penalty v - (1/n) sum_i J_i^T S_i J_i v (S_i = diag(p_i) - p_i p_i^T), with
 * J v by central differences of the logits: for a model built of ReLU, max-pooling, BN and affine
 * layers the logits are piecewise linear in delta, so this is the Hessian of L_in wherever it exists
 * (what double backward, the authors' autograd, computes), and the logits' differences, unlike the
 * gradients', have no jumps. A diagnostic here, not I-BAU's estimator.
 */
function gaussNewtonHvp(p: UnlearningBatch, delta: TF.Tensor, v: TF.Tensor, step: number): TF.Tensor {
  return tf.tidy(() => {
    const f = (d: TF.Tensor) => p.forward(perturbed(p, d));
    const norm = tf.norm(v);
    const u = tf.div(v, norm);
    const jv = tf.mul(tf.sub(f(tf.add(delta, tf.mul(u, step))), f(tf.sub(delta, tf.mul(u, step)))), tf.div(norm, 2 * step));
    const prob = tf.softmax(f(delta));
    const weights = tf.div(tf.sub(tf.mul(prob, jv), tf.mul(prob, tf.sum(tf.mul(prob, jv), 1, true))), p.x.shape[0]);
    const jtw = tf.grad((d: TF.Tensor) => tf.sum(tf.mul(weights, f(d))))(delta);
    return tf.sub(tf.mul(2 * p.penalty, v), jtw);
  });
}

/**
 * How much H v moves from the step t to t/4 and 4t (relative to its norm): I-BAU's central
 * differences of gradients on the input-gradient path, and the Gauss-Newton product beside it.
 */
function finiteDifferenceDiagnostic(
  b: Omit<UnlearningBatch, 'forward' | 'vars'>,
  forward: UnlearningBatch['forward'],
  inputGradientForward: UnlearningBatch['inputGradientForward'],
  delta: TF.Tensor,
): FdStability {
  return tf.tidy(() => {
    const p: UnlearningBatch = { ...b, forward, inputGradientForward, vars: [] };
    const v = tf.randomNormal(delta.shape, 0, 1, 'float32', 3);
    const t = finiteDifferenceStep(delta.size);
    const rel = (a: TF.Tensor, base: TF.Tensor) => tf.norm(tf.sub(a, base)).dataSync()[0] / tf.norm(base).dataSync()[0];
    const [quarter, base, four] = [t / 4, t, 4 * t].map((s) => finiteDifferenceHvp(p, delta, v, s));
    const [gnQuarter, gnBase, gnFour] = [t / 4, t, 4 * t].map((s) => gaussNewtonHvp(p, delta, v, s));
    tf.dispose([b.x, b.y]);
    return {
      step: t,
      quarter: rel(quarter, base),
      fourTimes: rel(four, base),
      gaussNewtonQuarter: rel(gnQuarter, gnBase),
      gaussNewtonFourTimes: rel(gnFour, gnBase),
      fromGaussNewton: rel(base, gnBase),
    };
  });
}

interface FdStability {
  /** t */
  step: number;
  /** ||H v(t/4) - H v(t)|| / ||H v(t)||, central differences of gradients */
  quarter: number;
  fourTimes: number;
  /** the same for the Gauss-Newton product */
  gaussNewtonQuarter: number;
  gaussNewtonFourTimes: number;
  /** ||H v(t) - GN(t)|| / ||GN(t)|| */
  fromGaussNewton: number;
}

function markdown(r: {
  options: { arch: string; batch: number; rounds: number; outerSteps: number; anpIterations: number };
  machine: ReturnType<typeof machine>;
  startLoad: number;
  endLoad: number;
  summary: Array<{ measure: string; referenceCpuMs: number; inputGradientsCpuMs: number; referenceWallMs: number; inputGradientsWallMs: number }>;
  samples: Sample[];
  fdStability: FdStability;
  date: string;
}): string {
  const per = (m: string, p: PathName, k: 'cpuMs' | 'wallMs') =>
    r.samples
      .filter((s) => s.measure === m && s.path === p)
      .map((s) => s[k].toFixed(1))
      .join(' / ');
  const loads = r.samples.map((s) => s.loadBefore);
  return [
    `# I-BAU and ANP hot loops: reference path vs input-gradient path`,
    '',
    `${r.date}; \`node dist/bench/ibauStep.js --arch ${r.options.arch} --batch ${r.options.batch} --rounds ${r.options.rounds} --outer-steps ${r.options.outerSteps} --anp-iterations ${r.options.anpIterations}\`; ` +
      `${r.machine.cpuModel}, ${r.machine.logicalCores} logical cores, intra-op threads ${process.env.TF_NUM_INTRAOP_THREADS ?? 'default'}, ${r.machine.backend}.`,
    '',
    `**Load average** ${r.startLoad} at the start, ${r.endLoad} at the end, ${Math.min(...loads)}-${Math.max(...loads)} before the measurements: ` +
      'the machine was shared, so CPU time (user + system of this process) is the measure; wall time is listed, not claimed.',
    '',
    '| per | reference CPU ms (median) | input-gradient CPU ms (median) | CPU ratio | reference wall ms | input-gradient wall ms |',
    '|---|---|---|---|---|---|',
    ...r.summary.map(
      (s) =>
        `| ${s.measure} | ${s.referenceCpuMs.toFixed(1)} | ${s.inputGradientsCpuMs.toFixed(1)} | ${(s.referenceCpuMs / s.inputGradientsCpuMs).toFixed(2)}x | ${s.referenceWallMs.toFixed(1)} | ${s.inputGradientsWallMs.toFixed(1)} |`,
    ),
    '',
    'Per round (CPU ms, rounds in order):',
    '',
    '| per | reference | input-gradient |',
    '|---|---|---|',
    ...r.summary.map((s) => `| ${s.measure} | ${per(s.measure, 'reference', 'cpuMs')} | ${per(s.measure, 'inputGradients', 'cpuMs')} |`),
    '',
    `H v by central differences of gradients on this model (random weights, the bench's delta, a random direction): relative change ` +
      `${r.fdStability.quarter.toFixed(2)} from t = ${r.fdStability.step.toExponential(2)} to t/4, ${r.fdStability.fourTimes.toFixed(2)} to 4t (ReLU and max-pool kinks; docs/performance.md). ` +
      `The Gauss-Newton product (the Hessian where it exists, logits differenced instead of gradients): ${r.fdStability.gaussNewtonQuarter.toExponential(1)} and ` +
      `${r.fdStability.gaussNewtonFourTimes.toExponential(1)}; at t the two differ by ${r.fdStability.fromGaussNewton.toFixed(2)} of its norm.`,
    '',
  ].join('\n');
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof UsageError ? err.message : err);
    process.exit(err instanceof UsageError ? 2 : 1);
  });
}

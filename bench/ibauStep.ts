/**
 * I-BAU's and ANP's hot loops, the reference path against the input-gradient one (issue 22), and I-BAU's
 * second-order products by finite differences against the frozen-pattern ones (issue 19), side by side
 * on the same model and data:
 *   node dist/bench/ibauStep.js [--arch smallCnn] [--batch 80] [--rounds 3] [--outer-steps 3]
 *       [--anp-iterations 5] [--out DIR] [--name BASE]
 * Per path: CPU ms per I-BAU inner step (a gradient step of delta), per I-BAU outer step (the implicit
 * hypergradient, K = 5, and the Adam update) and per ANP mask iteration (noise start, one
 * perturbation step, the mask step), at the defenses' defaults; per H v and per mixed product, by finite
 * differences (on the input-gradient path) and with the activation pattern frozen (ibau.secondOrder's two
 * values), and the outer step with each. The reference path is
 * `unlearn`/`learnMasks`' `{ reference: true }`: fused convolutions everywhere, H v's points one at a
 * time, ANP's per-variable updates. Each round runs both paths, in alternating order, so a load change
 * hits them alike; CPU time is this process's user + system (on a loaded machine the steadier
 * measure), wall time is printed beside it, the load average before and after each measurement.
 * The model has random weights and the data is random 32x32x3 images in 10 classes: a step costs the
 * same whatever the values; that both paths compute the same numbers is the tests' business
 * (test/core/defenses/ibau.test.ts, anp.test.ts). --batch 80 is what both defenses run at
 * |D_c| = 100 (min(128, the 80 fit images)). Also printed: how much H v moves when the finite-difference
 * step is divided or multiplied by 4 on this model (the kinks of ReLU and max-pooling; docs/performance.md),
 * beside the Gauss-Newton product, which has no such kinks; the same for the mixed product, and how far
 * each finite difference is from its frozen-pattern product (autograd's: bench/reference/ibauSecondOrder.ts).
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
import { applyModel, applyModelForInputGradients, applyModelWithPattern } from '../core/train/fast';
import { anpDefenseSchema, ibauDefenseSchema } from '../core/defenses/configs';
import { batchTensors } from '../core/defenses/batches';
import {
  finiteDifferenceHvp,
  finiteDifferenceMixedProduct,
  finiteDifferenceStep,
  frozenPatternHvp,
  frozenPatternMixedProduct,
  hypergradient,
  universalPerturbation,
  type UnlearningBatch,
} from '../core/defenses/ibau';
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
/** reference and inputGradients: issue 22's two paths (finite differences); frozenPattern: the input-gradient path with ibau.secondOrder frozenPattern */
const PATHS = ['reference', 'inputGradients', 'frozenPattern'] as const;
type PathName = (typeof PATHS)[number];
const MEASURES = ['ibauInnerStep', 'ibauOuterStep', 'hvp', 'mixedProduct', 'anpIteration'] as const;
type Measure = (typeof MEASURES)[number];
/** the paths each measure compares (the second-order products do not touch the inner step or ANP) */
const PATHS_OF: Record<Measure, readonly PathName[]> = {
  ibauInnerStep: ['reference', 'inputGradients'],
  ibauOuterStep: PATHS,
  hvp: ['inputGradients', 'frozenPattern'],
  mixedProduct: ['inputGradients', 'frozenPattern'],
  anpIteration: ['reference', 'inputGradients'],
};
/** products per hvp / mixedProduct sample */
const PRODUCTS = 4;

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
  const patternForward: UnlearningBatch['patternForward'] = (x, pattern, inputGradientsOnly) => applyModelWithPattern(c.model, x, pattern, inputGradientsOnly) as TF.Tensor2D;
  const shape = [1, 32, 32, 3];
  const direction = tf.randomNormal(shape, 0, 1, 'float32', 5);
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
        const b: UnlearningBatch = { ...batch(), forward, vars, patternForward, ...(p === 'reference' ? {} : { inputGradientForward }) };
        const secondOrder = p === 'frozenPattern' ? 'frozenPattern' : 'finiteDifference';
        const hg = hypergradient(b, delta, { mode: 'implicit', fixedPointSteps: ibauCfg.fixedPointSteps, fixedPointStepSize: ibauCfg.fixedPointStepSize, secondOrder });
        adam.step(hg.grads, ibauCfg.learningRate);
        await hg.loss.data();
        tf.dispose([hg.loss, ...hg.grads, b.x, b.y]);
      }
    },
    async hvp(p, delta) {
      const b: UnlearningBatch = { ...batch(), forward, vars, inputGradientForward, patternForward };
      for (let k = 0; k < PRODUCTS; k++) {
        const hv = p === 'frozenPattern' ? frozenPatternHvp(b, delta, direction) : finiteDifferenceHvp(b, delta, direction);
        await hv.data();
        hv.dispose();
      }
      tf.dispose([b.x, b.y]);
    },
    async mixedProduct(p, delta) {
      const b: UnlearningBatch = { ...batch(), forward, vars, inputGradientForward, patternForward };
      for (let k = 0; k < PRODUCTS; k++) {
        const mixed = p === 'frozenPattern' ? frozenPatternMixedProduct(b, delta, direction) : finiteDifferenceMixedProduct(b, delta, direction);
        await Promise.all(mixed.map((t) => t.data()));
        tf.dispose(mixed);
      }
      tf.dispose([b.x, b.y]);
    },
    async anpIteration(p) {
      await learnMasks(c, { cleanFit: data, augment: { padding: 4, flip: true } }, anpCfg, 3, {}, { reference: p === 'reference' });
    },
  };
  const units: Record<Measure, number> = { ibauInnerStep: ibauCfg.innerSteps, ibauOuterStep: o.outerSteps, hvp: PRODUCTS, mixedProduct: PRODUCTS, anpIteration: o.anpIterations };

  const deltaBatches = Array.from({ length: ibauCfg.innerSteps }, batch);
  const delta = universalPerturbation(deltaBatches, forward, ibauCfg, shape, inputGradientForward);
  tf.dispose(deltaBatches.flatMap((b) => [b.x, b.y]));
  // warm-up: kernels, graph plans and the doubled batch's shapes on both paths
  for (const m of MEASURES) for (const p of PATHS_OF[m]) await run[m](p, delta);

  const samples: Sample[] = [];
  for (let r = 1; r <= o.rounds; r++) {
    for (const m of MEASURES) {
      const order = r % 2 ? PATHS_OF[m] : [...PATHS_OF[m]].reverse();
      for (const p of order) {
        const t = await timed(units[m], () => run[m](p, delta));
        samples.push({ round: r, path: p, measure: m, ...t });
        console.log(`round ${r}, ${m}, ${p}: CPU ${t.cpuMs.toFixed(1)} ms, wall ${t.wallMs.toFixed(1)} ms (load ${t.loadBefore} -> ${t.loadAfter})`);
      }
    }
  }

  const fdStability = finiteDifferenceDiagnostic({ ...batch(), forward, inputGradientForward, patternForward, vars }, delta);
  console.log(
    `finite differences at t = ${fdStability.step.toExponential(2)} on this model, relative change at t/4 and 4t: H v ${fdStability.hv.quarter.toFixed(2)} / ${fdStability.hv.fourTimes.toFixed(2)}, ` +
      `mixed product ${fdStability.mixed.quarter.toFixed(2)} / ${fdStability.mixed.fourTimes.toFixed(2)}; frozen pattern, input steps 0.1 vs 10: ` +
      `${fdStability.frozenStepChange.hv.toExponential(1)} / ${fdStability.frozenStepChange.mixed.toExponential(1)}; finite differences at t vs frozen pattern: ` +
      `${fdStability.fromFrozen.hv.toFixed(2)} / ${fdStability.fromFrozen.mixed.toFixed(2)}`,
  );
  const summary = MEASURES.map((m) => {
    const of = (p: PathName, k: 'cpuMs' | 'wallMs') => {
      const xs = samples.filter((s) => s.measure === m && s.path === p).map((s) => s[k]);
      return xs.length ? median(xs) : null;
    };
    const row: SummaryRow = {
      measure: m,
      cpuMs: Object.fromEntries(PATHS_OF[m].map((p) => [p, of(p, 'cpuMs')])),
      wallMs: Object.fromEntries(PATHS_OF[m].map((p) => [p, of(p, 'wallMs')])),
    };
    console.log(`${m}: median CPU ${PATHS_OF[m].map((p) => `${p} ${row.cpuMs[p]!.toFixed(1)}`).join(', ')} ms; wall ${PATHS_OF[m].map((p) => row.wallMs[p]!.toFixed(1)).join(' / ')} ms`);
    return row;
  });
  const endLoad = load();
  const result = { options: { ...o, out: undefined }, machine: machine(Number(process.env.TF_NUM_INTRAOP_THREADS ?? os.availableParallelism())), startLoad, endLoad, summary, samples, fdStability, date: new Date().toISOString() };
  await fs.mkdir(o.out, { recursive: true });
  await fs.writeFile(path.join(o.out, `${o.name}.json`), JSON.stringify(result, null, 2) + '\n');
  await fs.writeFile(path.join(o.out, `${o.name}.md`), markdown(result));
  tf.dispose([delta, direction]);
  adam.dispose();
  c.model.dispose();
  console.log(`live tensors at the end: ${tf.memory().numTensors}; load ${endLoad}; wrote ${path.join(o.out, o.name)}.{json,md}`);
}

interface SummaryRow {
  measure: Measure;
  /** median per path measured (PATHS_OF) */
  cpuMs: Partial<Record<PathName, number | null>>;
  wallMs: Partial<Record<PathName, number | null>>;
}

/**
 * How much the finite-difference products move from the step t to t/4 and 4t (relative to their
 * norm), how much the frozen-pattern ones move between input steps of 0.1 and 10 of the range
 * (they are exact at any step: rounding only), and how far the former are from the latter at t.
 */
function finiteDifferenceDiagnostic(p: UnlearningBatch, delta: TF.Tensor): FdStability {
  return tf.tidy(() => {
    const v = tf.randomNormal(delta.shape, 0, 1, 'float32', 3);
    const t = finiteDifferenceStep(delta.size);
    const rel = (a: TF.Tensor[], base: TF.Tensor[]) => {
      const num = a.reduce((s, x, i) => s + tf.sum(tf.square(tf.sub(x, base[i]))).dataSync()[0], 0);
      return Math.sqrt(num / base.reduce((s, x) => s + tf.sum(tf.square(x)).dataSync()[0], 0));
    };
    const [hvQuarter, hv, hvFour] = [t / 4, t, 4 * t].map((s) => [finiteDifferenceHvp(p, delta, v, s)]);
    const [mixedQuarter, mixed, mixedFour] = [t / 4, t, 4 * t].map((s) => finiteDifferenceMixedProduct(p, delta, v, s));
    const [frozenHvSmall, frozenHv] = [0.1, 10].map((s) => [frozenPatternHvp(p, delta, v, s)]);
    const [frozenMixedSmall, frozenMixed] = [0.1, 10].map((s) => frozenPatternMixedProduct(p, delta, v, s));
    tf.dispose([p.x, p.y]);
    return {
      step: t,
      hv: { quarter: rel(hvQuarter, hv), fourTimes: rel(hvFour, hv) },
      mixed: { quarter: rel(mixedQuarter, mixed), fourTimes: rel(mixedFour, mixed) },
      frozenStepChange: { hv: rel(frozenHvSmall, frozenHv), mixed: rel(frozenMixedSmall, frozenMixed) },
      fromFrozen: { hv: rel(hv, frozenHv), mixed: rel(mixed, frozenMixed) },
    };
  });
}

interface FdStability {
  /** t */
  step: number;
  /** ||P(t/4) - P(t)|| / ||P(t)|| and the same at 4t, P the finite-difference H v or mixed product */
  hv: { quarter: number; fourTimes: number };
  mixed: { quarter: number; fourTimes: number };
  /** ||F(0.1) - F(10)|| / ||F(10)||, F the frozen-pattern product at that RMS input step */
  frozenStepChange: { hv: number; mixed: number };
  /** ||P(t) - F|| / ||F|| */
  fromFrozen: { hv: number; mixed: number };
}

function markdown(r: {
  options: { arch: string; batch: number; rounds: number; outerSteps: number; anpIterations: number };
  machine: ReturnType<typeof machine>;
  startLoad: number;
  endLoad: number;
  summary: SummaryRow[];
  samples: Sample[];
  fdStability: FdStability;
  date: string;
}): string {
  const per = (m: string, p: PathName, k: 'cpuMs' | 'wallMs') =>
    r.samples
      .filter((s) => s.measure === m && s.path === p)
      .map((s) => s[k].toFixed(1))
      .join(' / ') || '-';
  const cell = (x: number | null | undefined) => (x == null ? '-' : x.toFixed(1));
  const ratio = (a: number | null | undefined, b: number | null | undefined) => (a == null || b == null ? '-' : `${(a / b).toFixed(2)}x`);
  const loads = r.samples.map((s) => s.loadBefore);
  const f = r.fdStability;
  return [
    `# I-BAU and ANP hot loops: reference path, input-gradient path, frozen-pattern second-order products`,
    '',
    `${r.date}; \`node dist/bench/ibauStep.js --arch ${r.options.arch} --batch ${r.options.batch} --rounds ${r.options.rounds} --outer-steps ${r.options.outerSteps} --anp-iterations ${r.options.anpIterations}\`; ` +
      `${r.machine.cpuModel}, ${r.machine.logicalCores} logical cores, intra-op threads ${process.env.TF_NUM_INTRAOP_THREADS ?? 'default'}, ${r.machine.backend}.`,
    '',
    `**Load average** ${r.startLoad} at the start, ${r.endLoad} at the end, ${Math.min(...loads)}-${Math.max(...loads)} before the measurements: ` +
      'the machine was shared, so CPU time (user + system of this process) is the measure; wall time is listed, not claimed.',
    '',
    'reference and input-gradient: finite-difference products (issue 22\'s two paths); frozen pattern: the input-gradient path with `secondOrder: frozenPattern` (the default).',
    '',
    '| per | reference CPU ms (median) | input-gradient CPU ms | frozen-pattern CPU ms | reference / input-gradient | input-gradient / frozen-pattern | wall ms (same order) |',
    '|---|---|---|---|---|---|---|',
    ...r.summary.map(
      (s) =>
        `| ${s.measure} | ${cell(s.cpuMs.reference)} | ${cell(s.cpuMs.inputGradients)} | ${cell(s.cpuMs.frozenPattern)} | ${ratio(s.cpuMs.reference, s.cpuMs.inputGradients)} | ` +
        `${ratio(s.cpuMs.inputGradients, s.cpuMs.frozenPattern)} | ${PATHS.map((p) => cell(s.wallMs[p])).join(' / ')} |`,
    ),
    '',
    'Per round (CPU ms, rounds in order):',
    '',
    '| per | reference | input-gradient | frozen-pattern |',
    '|---|---|---|---|',
    ...r.summary.map((s) => `| ${s.measure} | ${PATHS.map((p) => per(s.measure, p, 'cpuMs')).join(' | ')} |`),
    '',
    `Finite differences on this model (random weights, the bench's delta, a random direction), relative change from t = ${f.step.toExponential(2)} ` +
      `to t/4 and to 4t: H v ${f.hv.quarter.toFixed(2)} and ${f.hv.fourTimes.toFixed(2)}, mixed product ${f.mixed.quarter.toFixed(2)} and ${f.mixed.fourTimes.toFixed(2)} ` +
      `(ReLU and max-pool kinks; docs/performance.md). Frozen-pattern products between input steps of 0.1 and 10 of the range: ` +
      `${f.frozenStepChange.hv.toExponential(1)} and ${f.frozenStepChange.mixed.toExponential(1)}. At t the finite differences are ` +
      `${f.fromFrozen.hv.toFixed(2)} (H v) and ${f.fromFrozen.mixed.toFixed(2)} (mixed) of the frozen-pattern products' norm away from them.`,
    '',
  ].join('\n');
}

if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof UsageError ? err.message : err);
    process.exit(err instanceof UsageError ? 2 : 1);
  });
}

/**
 * What each stage of a cpu-tier cell costs (issue 22): seconds, images and images per second of
 * every stage of NT-ML and of each baseline defense, plus the audit's Neural-Cleanse scan and
 * probes, beside plain (standard) training's images per second, with ANP's and I-BAU's inner
 * loops also run by a PyTorch reference (bench/reference/pytorch_anp_ibau.py).
 *
 *   node dist/bench/stageCost.js [--tier cpu|ci] [--train-subset N] [--threads T] [--groups ntml,ft,...]
 *       [--smoke] [--no-pytorch] [--out DIR] [--name BASE]
 *
 * The stages run in-process through the pure core (core/pipeline/stageRuns.ts,
 * core/pipeline/defenseStage.ts, core/audit/*), never through Temporal or the store, so the
 * numbers are ML cost only. Each group of stages runs in a fresh child process (the same
 * thread settings for all; its peak RSS is its own): `ntml` (data preparation, untimed; then
 * standard training, non-target labels, NT training, mutual learning, split plan, split
 * distillation, evaluation) writes f_std to a work folder; `ft`, `fp`, `nad`, `anp`, `ibau`
 * and `audit` each load it and run one stage.
 *
 * Images per second alone would rank stages by how much work each does per image. Each stage
 * therefore also states its inherent passes per image in training-step equivalents: a forward
 * pass counts 1, a backward pass that also computes weight gradients 2, a backward pass to the
 * inputs (or masks, or a perturbation) only 1 (the filter gradients are skipped), and a plain
 * training step is 1 + 2 = 3, so plain training has 1 pass per image. "Relative to plain" is the
 * stage's images/s x its passes per image / plain training's images/s: 1.0 means the stage does
 * its inherent work as fast as plain training does; a stage well below 1 spends time its passes
 * do not explain (host syncs, small batches, tape overhead). Held-out selection and diagnostics
 * forwards are counted where the stage's config fixes their number (the notes column says
 * which); pruning searches whose length depends on the data are not.
 *
 * Writes <out>/<BASE>.json and .md (default bench/results/stage-cost). A benchmark: never run in
 * CI, and speed numbers from a loaded machine are not results (the load average is recorded at
 * the start and end of every group: compare only runs on a quiet machine).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { tf } from '../core/tf';
import { parsePurifyConfig, type PurifyConfig } from '../schemas/purify';
import { prepareData } from '../core/experiment/prepareData';
import { evaluateClassifier } from '../core/experiment/evaluate';
import { exportLayersModel, importLayersModel, cloneClassifier, createClassifier } from '../core/models/layersFormat';
import { predictLabels, type Classifier } from '../core/models/classifier';
import { trainClassifier } from '../core/train/trainClassifier';
import type { ImageDataset } from '../core/data/dataset';
import type { EpochRecord } from '../core/train/epochLoop';
import { plainStageEnv, type StageEnv } from '../core/pipeline/stageEnv';
import {
  mutualLearningStage,
  nonTargetLabelStage,
  ntStudentStage,
  splitDistillationStage,
  splitPlanStage,
  standardTrainingStage,
} from '../core/pipeline/stageRuns';
import { baselineDefenseStage } from '../core/pipeline/defenseStage';
import { defenseConfigSchema, type BaselineDefenseConfig, type DefenseConfigInput } from '../core/defenses/configs';
import { DEFAULT_NC_OPTIONS, neuralCleanse } from '../core/audit/neuralCleanse';
import { probeKnownTriggers } from '../core/audit/probes';
import { concatDatasets, subsetDataset } from '../core/data/dataset';
import { substituteAutoData } from '../cli/config';
import { findRepoRoot } from '../store/repoRoot';
import { UsageError } from '../cli/errors';
import { parseBenchArgs, type OptionSpecs } from './args';
import { machine, pytorchPython, referenceDir, runChild, threadEnv, type Machine } from './benchHost';

const GROUPS = ['ntml', 'ft', 'fp', 'nad', 'anp', 'ibau', 'audit'] as const;
type Group = (typeof GROUPS)[number];

interface Options {
  tier: 'cpu' | 'ci';
  trainSubset: number;
  threads: number;
  groups: Group[];
  smoke: boolean;
  pytorch: boolean;
  out: string;
  name: string;
  /** the reference set of the audit stages: this many test images */
  referenceSize: number;
}

/** One stage's measurement, as a child reports it. */
export interface StageCost {
  stage: string;
  group: Group;
  seconds: number;
  /** images through the stage's main loop (optimiser steps x batch, or images predicted) */
  images: number;
  /** training-step equivalents per main-loop image (see the file comment) */
  passesPerImage: number;
  /** further work the config fixes (selection, diagnostics, inner steps), in training-image equivalents */
  extraEquivalents: number;
  /** how the passes were counted */
  notes: string;
  /** the main loop's batch, where it is not the tier's (ANP, I-BAU: min(batch, |D_c fit|)) */
  batchSize?: number;
}

interface GroupResult {
  group: Group;
  stages: StageCost[];
  peakRssMiB: number;
  loadStart: number;
  loadEnd: number;
  /** live tensors after the group's models were disposed, minus before: 0 when nothing leaked */
  tensorsLeft: number;
  setupSeconds: number;
}

/** The PyTorch reference's numbers (bench/reference/pytorch_anp_ibau.py). */
interface ReferenceResult {
  impl: 'pytorch';
  torch: string;
  threads: number;
  arch: string;
  batchSize: number;
  plainImagesPerSecond: number;
  anp: { iterations: number; seconds: number; imagesPerSecond: number; passesPerImage: number };
  ibau: { hvp: string; outerSteps: number; seconds: number; imagesPerSecond: number; passesPerImage: number };
  peakRssMiB: number;
  loadAverage?: number;
}

const root = findRepoRoot(__dirname) ?? process.cwd();

const USAGE =
  'usage: stageCost.js [--tier cpu|ci] [--train-subset N] [--threads T] [--groups ntml,ft,fp,nad,anp,ibau,audit] [--reference-size N] [--smoke] [--no-pytorch] [--out DIR] [--name BASE]';

const OPTIONS: OptionSpecs = {
  tier: { type: 'string' },
  'train-subset': { type: 'string' },
  threads: { type: 'string' },
  groups: { type: 'string' },
  'reference-size': { type: 'string' },
  smoke: { type: 'boolean' },
  'no-pytorch': { type: 'boolean' },
  out: { type: 'string' },
  name: { type: 'string' },
  // a group's child process (runGroup): its group and scratch folder
  worker: { type: 'string', internal: true },
  work: { type: 'string', internal: true },
};

export function parseOptions(argv: string[]): Options & { worker?: { group: Group; work: string } } {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  const smoke = a.flag('smoke');
  const tier = a.choice('tier', ['cpu', 'ci'], 'cpu');
  const o: Options = {
    // --smoke is the ci tier whatever --tier says
    tier: smoke ? 'ci' : tier,
    trainSubset: a.integer('train-subset', 20000),
    threads: a.integer('threads', os.availableParallelism()),
    groups: a.list('groups', GROUPS, GROUPS),
    smoke,
    pytorch: !a.flag('no-pytorch'),
    out: a.path('out', path.join(root, 'bench', 'results')),
    name: a.baseName('name', 'stage-cost'),
    referenceSize: a.integer('reference-size', 1000),
  };
  if (a.has('work') && !a.has('worker')) throw new UsageError('--work is only for a group\'s child process (with --worker)');
  const worker = a.has('worker') ? { group: a.choice('worker', GROUPS, 'ntml'), work: a.text('work', '') } : undefined;
  return { ...o, worker };
}

// --- the cell's configuration ----------------------------------------------------------------

/**
 * The cell every group runs: BadNets at the tier's defaults, D_c = 100 (NT-ML's budget), each
 * baseline at its defaults. --smoke cuts every budget to a few steps on a small synthetic set:
 * it checks that the bench runs end to end, and its numbers mean nothing.
 */
function cellConfig(o: Options, defense: DefenseConfigInput = { name: 'ntml' }): PurifyConfig {
  const raw: Record<string, unknown> = o.smoke
    ? {
        tier: 'ci',
        seed: 1,
        data: { format: 'synthetic', trainSize: 600, testSize: 200 },
        attack: { name: 'badnets' },
        cleanBudget: 100,
        training: { epochs: 1 },
        ntml: { ntEpochs: 1, mlEpochs: 2, splitEpochs: 1 },
        defense,
      }
    : {
        tier: o.tier,
        seed: 1,
        data: { format: 'auto', trainSubset: o.trainSubset },
        attack: { name: 'badnets' },
        cleanBudget: 100,
        defense,
      };
  const resolved = substituteAutoData(raw).raw;
  const data = resolved.data as { format: string };
  // without CIFAR-10, synthetic images of the same count and size, so the stages do the same work
  if (!o.smoke && data.format === 'synthetic') resolved.data = { format: 'synthetic', trainSize: o.trainSubset, testSize: 10000 };
  return parsePurifyConfig(resolved, 'stage-cost cell');
}

/** Each baseline's config: its defaults, or a few steps in a smoke run. */
function baselineConfig(o: Options, name: Exclude<Group, 'ntml' | 'audit'>): DefenseConfigInput {
  if (!o.smoke) return { name };
  switch (name) {
    case 'ft':
      return { name, steps: 4, rounds: 2 };
    case 'fp':
      return { name, fineTune: { steps: 4, rounds: 2 } };
    case 'nad':
      return { name, teacherEpochs: 1, epochs: 1, stepsPerEpoch: 2 };
    case 'anp':
      return { name, iterations: 4, checkpoints: 2 };
    case 'ibau':
      return { name, rounds: 1, stepsPerRound: 2, innerSteps: 2 };
  }
}

function ncOptions(o: Options) {
  return o.smoke ? { ...DEFAULT_NC_OPTIONS, stepsPerClass: 3 } : DEFAULT_NC_OPTIONS;
}

// --- pass counting -----------------------------------------------------------------------------

const F = 1; // forward
const B = 2; // backward with weight gradients
const BI = 1; // backward to inputs / masks / perturbation only
const STEP = F + B;
const per = (units: number) => units / STEP;

const historyImages = (h: EpochRecord[] | undefined) => (h ?? []).reduce((s, r) => s + r.images, 0);

// --- the worker: one group in its own process --------------------------------------------------

async function timed<T>(f: () => Promise<T>): Promise<{ out: T; seconds: number }> {
  const t0 = performance.now();
  const out = await f();
  return { out, seconds: (performance.now() - t0) / 1000 };
}

/**
 * A few training steps and one inference batch of a throwaway model, untimed: TensorFlow's kernels
 * and oneDNN's primitives are created on first use, and without this the first timed stage of
 * every group (standard training, the yardstick, among them) would pay for them.
 */
async function warmUp(cfg: PurifyConfig, train: ImageDataset): Promise<void> {
  if (!('arch' in cfg.model)) return;
  const c = createClassifier(cfg.model.arch, train, train.numClasses, 0);
  try {
    const indices = Int32Array.from({ length: Math.min(train.labels.length, 3 * cfg.training.batchSize) }, (_, i) => i);
    await trainClassifier({ classifier: c, data: train, indices, recipe: { ...cfg.training, epochs: 1 }, seed: 0 });
    await predictLabels(c, subsetDataset(train, indices.subarray(0, Math.min(indices.length, 256))));
  } finally {
    c.model.dispose();
  }
}

async function worker(o: Options, group: Group, work: string): Promise<GroupResult> {
  const loadStart = os.loadavg()[0];
  const tensorsBefore = tf.memory().numTensors;
  const t0 = performance.now();
  const cfg = cellConfig(o, group === 'ntml' || group === 'audit' ? { name: 'ntml' } : baselineConfig(o, group));
  const data = await prepareData(cfg);
  await warmUp(cfg, data.train);
  const env: StageEnv = plainStageEnv();
  const stages: StageCost[] = [];
  const add = (s: Omit<StageCost, 'group'>) => {
    stages.push({ ...s, group });
    console.error(`${group}: ${s.stage} ${s.seconds.toFixed(1)} s, ${s.images} images`);
  };
  const fStdPath = path.join(work, 'standard', 'model.json');
  let setupSeconds = (performance.now() - t0) / 1000;
  try {
    if (group === 'ntml') {
      await ntmlStages(cfg, data, env, add);
      setupSeconds = (performance.now() - t0) / 1000 - stages.reduce((s, x) => s + x.seconds, 0);
    } else {
      const standard = env.scope.classifier(await importLayersModel(fStdPath));
      setupSeconds = (performance.now() - t0) / 1000;
      if (group === 'audit') await auditStages(o, standard, data, add);
      else await defenseStageCost(cfg, standard, data, env, add);
    }
  } finally {
    env.scope.disposeAll();
  }
  return {
    group,
    stages,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    loadStart,
    loadEnd: os.loadavg()[0],
    tensorsLeft: tf.memory().numTensors - tensorsBefore,
    setupSeconds,
  };

  async function ntmlStages(cfg: PurifyConfig, d: typeof data, e: StageEnv, add: (s: Omit<StageCost, 'group'>) => void) {
    const nt = cfg.ntml;
    const n = d.train.labels.length;
    const heldOut = d.cleanHeldOut.labels.length;
    const diagnosticImages = Math.min(nt.diagnosticSamples, d.test?.labels.length ?? 0) + Math.min(nt.diagnosticSamples, d.backdoorTest?.trueLabels.length ?? 0);

    const std = await timed(() => standardTrainingStage(cfg, d.train, e));
    add({ stage: 'standard training', seconds: std.seconds, images: historyImages(std.out.result.history), passesPerImage: 1, extraEquivalents: 0, notes: 'one training step per image: the reference' });
    const standard = std.out.model;
    await exportLayersModel(standard, path.dirname(fStdPath));

    const labels = await timed(() => nonTargetLabelStage(cfg, standard, d.train));
    add({ stage: 'non-target labels', seconds: labels.seconds, images: n, passesPerImage: per(F), extraEquivalents: 0, notes: "one forward of f_std per training image" });

    const student = await timed(() => ntStudentStage(cfg, standard, d.train, labels.out, e));
    add({ stage: 'NT training', seconds: student.seconds, images: historyImages(student.out.result.history), passesPerImage: 1, extraEquivalents: 0, notes: 'one training step per image' });

    // teacher: standard (the default) is a copy of f_std; mutual learning changes it
    const teacher = e.scope.classifier(await cloneClassifier(standard));
    const clean = { cleanFit: d.cleanFit, cleanHeldOut: d.cleanHeldOut, test: d.test, backdoorTest: d.backdoorTest };
    const ml = await timed(() => mutualLearningStage(cfg, { student: student.out.model, teacher }, clean, undefined, e));
    const mutual = nt.ml !== 'oneWay';
    const mlSelectForwards = nt.mlSelect === 'last' ? 0 : (nt.mlEpochs + 1) * heldOut;
    add({
      stage: 'mutual learning',
      seconds: ml.seconds,
      images: historyImages(ml.out.history),
      // S: forward + backward, T's inference forward inside S's tape; mutual: T forward + backward
      passesPerImage: per(mutual ? F + B + F + F + B : F + B + F),
      extraEquivalents: per(F) * (mlSelectForwards + nt.mlEpochs * diagnosticImages),
      notes: `${mutual ? 'two models trained (S: F+B plus T\'s inference F; T: F+B)' : 'S trained, T forward only'}; held-out selection and diagnostics forwards each epoch`,
    });

    const cleanSet = concatDatasets(d.cleanFit, d.cleanHeldOut);
    const plan = await timed(() => splitPlanStage(cfg, { teacher: async () => teacher, student: student.out.model, standard }, d.train, cleanSet));
    const models = nt.splitTarget === 'teacher' ? 3 : 2;
    add({ stage: 'split plan', seconds: plan.seconds, images: n, passesPerImage: per(models * F), extraEquivalents: 0, notes: `forwards of ${models} models over the training set` });

    if (nt.ml === 'split') {
      const sd = await timed(() =>
        splitDistillationStage(cfg, { student: student.out.model, standard }, { train: d.train, kept: plan.out.kept, cleanHeldOut: d.cleanHeldOut, test: d.test, backdoorTest: d.backdoorTest }, undefined, e, {
          target: plan.out.estimatedTarget,
          groups: d.poison ? { poisoned: d.poison.poisonedIndices, noise: d.poison.crossIndices } : undefined,
        }),
      );
      const selectForwards = nt.splitSelect === 'heldOut' ? (nt.splitEpochs + 1) * heldOut : 0;
      add({
        stage: 'split distillation',
        seconds: sd.seconds,
        images: historyImages(sd.out.history),
        passesPerImage: per(F + F + B),
        extraEquivalents: per(F) * (selectForwards + nt.splitEpochs * diagnosticImages),
        notes: "one forward of f_std per input plus the student's training step; held-out selection and diagnostics forwards",
      });
    }

    const evalImages = (d.test?.labels.length ?? 0) + (d.backdoorTest?.trueLabels.length ?? 0);
    const ev = await timed(async () => {
      for (const c of [standard, student.out.model, teacher]) await evaluateClassifier(c, d.test, d.backdoorTest);
    });
    add({ stage: 'evaluation', seconds: ev.seconds, images: 3 * evalImages, passesPerImage: per(F), extraEquivalents: 0, notes: 'forwards over the test and backdoor test sets, 3 models (f_std, student, teacher)' });
  }
}

async function defenseStageCost(
  cfg: PurifyConfig,
  standard: Classifier,
  d: Awaited<ReturnType<typeof prepareData>>,
  env: StageEnv,
  add: (s: Omit<StageCost, 'group'>) => void,
) {
  const def = defenseConfigSchema.parse(cfg.defense) as BaselineDefenseConfig;
  const heldOut = d.cleanHeldOut.labels.length;
  const fit = d.cleanFit.labels.length;
  const run = await timed(() => baselineDefenseStage(cfg, standard, { cleanFit: d.cleanFit, cleanHeldOut: d.cleanHeldOut }, env));
  const h = run.out.history;
  const base = { stage: run.out.displayName, seconds: run.seconds };
  switch (def.name) {
    case 'ft':
      add({ ...base, images: historyImages(h.fineTune), passesPerImage: 1, extraEquivalents: per(F) * (def.rounds + 1) * heldOut, notes: 'training steps; held-out scoring each round' });
      break;
    case 'fp':
      add({
        ...base,
        images: historyImages(h.fineTune),
        passesPerImage: 1,
        extraEquivalents: per(F) * (fit + (def.fineTune.rounds + 2) * heldOut),
        notes: 'fine-tuning steps; mean activations over the fitting set and held-out scoring counted, the pruning search (data-dependent length) not',
      });
      break;
    case 'nad': {
      const teacher = historyImages(h.teacher);
      const student = historyImages(h.student);
      // the teacher phase is plain fine-tuning (1 per image); the student's step adds the frozen teacher's forward
      const images = teacher + student;
      add({ ...base, images, passesPerImage: (teacher * 1 + student * per(F + F + B)) / images, extraEquivalents: 0, notes: 'teacher fine-tuning steps, then student steps with a teacher forward each' });
      break;
    }
    case 'anp': {
      // per iteration: perturbSteps x (F + BI) for the perturbation, then natural + perturbed F and BI to the masks
      const units = def.eps > 0 ? def.perturbSteps * (F + BI) + 2 * (F + BI) : F + BI;
      add({ ...base, batchSize: Math.min(def.batchSize, fit), images: historyImages(h.masks), passesPerImage: per(units), extraEquivalents: per(F) * 2 * heldOut, notes: `${def.perturbSteps} perturbation step(s) of F+BI, then 2 F + 2 BI for the masks, per image; pruning scored on the held-out slice` });
      break;
    }
    case 'ibau': {
      const K = def.fixedPointSteps;
      // direct gradient F+B; K-1 Hessian-vector products by central differences (2 x (F+BI)); the mixed product 2 x (F+B)
      const units = def.hypergradient === 'implicit' ? F + B + (K - 1) * 2 * (F + BI) + 2 * (F + B) : F + B;
      const batch = Math.min(def.batchSize, fit);
      const perRound = def.innerSteps * batch * (F + BI + (def.perturbationLabels === 'predicted' ? F : 0)) + batch * F + heldOut * F;
      add({
        ...base,
        batchSize: batch,
        images: historyImages(h.unlearning),
        passesPerImage: per(units),
        extraEquivalents: per(def.rounds * perRound),
        notes: `${def.hypergradient}: F+B, ${K - 1} finite-difference HVPs (2 F+BI each), mixed product (2 F+B) per outer image; inner steps and held-out scoring per round`,
      });
      break;
    }
  }
}

async function auditStages(o: Options, standard: Classifier, d: Awaited<ReturnType<typeof prepareData>>, add: (s: Omit<StageCost, 'group'>) => void) {
  if (!d.test) throw new Error('the audit stages need a test split for their reference set');
  const size = Math.min(o.referenceSize, d.test.labels.length);
  const reference = subsetDataset(d.test, Int32Array.from({ length: size }, (_, i) => i), 'audit reference');
  const nc = ncOptions(o);
  const scan = await timed(() => neuralCleanse(standard, reference, nc));
  const classes = standard.meta.numClasses;
  add({
    stage: 'Neural-Cleanse scan',
    seconds: scan.seconds,
    images: scan.out.classes.reduce((s, t) => s + t.steps, 0) * Math.min(nc.batchSize, size),
    passesPerImage: per(F + BI),
    extraEquivalents: 0,
    notes: `${classes} classes x ${nc.stepsPerClass} steps of batch ${nc.batchSize}, all classes stacked in one step (${classes} x ${nc.batchSize} images): F + BI to the masks and patterns`,
  });
  const probes = await timed(() => probeKnownTriggers(standard, reference));
  const probed = probes.out.probes.filter((p) => p.status === 'probed').length;
  add({ stage: 'probes', seconds: probes.seconds, images: size * (probed + 1), passesPerImage: per(F), extraEquivalents: 0, notes: `forwards over the reference set (${size}), clean and with ${probed} known triggers` });
}

// --- the driver --------------------------------------------------------------------------------

async function runGroup(o: Options, group: Group, work: string): Promise<GroupResult> {
  const args = [__filename, '--worker', group, '--work', work, '--tier', o.tier, '--train-subset', String(o.trainSubset), '--reference-size', String(o.referenceSize), ...(o.smoke ? ['--smoke'] : [])];
  return runChild<GroupResult>(process.execPath, args, { ...process.env, ...threadEnv(o.threads) });
}

/** The architectures bench/reference/pytorch_anp_ibau.py builds. */
const REFERENCE_ARCHS = ['tinyCnn', 'smallCnn', 'resnet20'];

async function runReference(o: Options, python: string, batchSize: number, anp: { iterations: number }, ibau: BaselineDefenseConfig & { name: 'ibau' }): Promise<ReferenceResult> {
  const loadAverage = os.loadavg()[0];
  const cfg = cellConfig(o);
  const arch = 'arch' in cfg.model && REFERENCE_ARCHS.includes(cfg.model.arch) ? cfg.model.arch : 'smallCnn';
  const args = [
    path.join(referenceDir, 'pytorch_anp_ibau.py'), '--arch', arch, '--threads', String(o.threads), '--batch-size', String(batchSize),
    '--plain-batch-size', String(cfg.training.batchSize),
    '--anp-iterations', String(anp.iterations), '--ibau-steps', String(ibau.rounds * ibau.stepsPerRound), '--fixed-point-steps', String(ibau.fixedPointSteps),
    '--plain-steps', String(o.smoke ? 2 : 20),
  ];
  const r = await runChild<ReferenceResult>(python, args, { ...process.env, PYTHONUNBUFFERED: '1' });
  return { ...r, loadAverage };
}

interface Row extends StageCost {
  imagesPerSecond: number;
  /** training-image equivalents per second */
  equivalentPerSecond: number;
  relativeToPlain: number;
  peakRssMiB: number;
}

function rows(results: GroupResult[]): { plain: number; rows: Row[] } {
  const plainStage = results.flatMap((r) => r.stages).find((s) => s.stage === 'standard training');
  const plain = plainStage ? plainStage.images / plainStage.seconds : NaN;
  const out = results.flatMap((r) =>
    r.stages.map((s) => {
      const equivalentPerSecond = (s.images * s.passesPerImage + s.extraEquivalents) / s.seconds;
      return { ...s, imagesPerSecond: s.images / s.seconds, equivalentPerSecond, relativeToPlain: equivalentPerSecond / plain, peakRssMiB: r.peakRssMiB };
    }),
  );
  return { plain, rows: out };
}

function markdown(o: Options, m: Machine, results: GroupResult[], reference: ReferenceResult | undefined, info: { date: string; loadStart: number; loadEnd: number; totalSeconds: number; data: string; arch: string; argv: string }): string {
  const { plain, rows: table } = rows(results);
  const f0 = (v: number) => (Number.isFinite(v) ? v.toFixed(0) : '-');
  const f1 = (v: number) => v.toFixed(1);
  const f2 = (v: number) => v.toFixed(2);
  const lines = table.map(
    (r) =>
      `| ${r.stage} | ${r.group} | ${f1(r.seconds)} | ${r.images} | ${f0(r.imagesPerSecond)} | ${f2(r.passesPerImage)} | ${f0(r.extraEquivalents)} | ${f0(r.equivalentPerSecond)} | **${f2(r.relativeToPlain)}** | ${f0(r.peakRssMiB)} | ${r.notes} |`,
  );
  const groups = results.map(
    (g) => `| ${g.group} | ${f1(g.setupSeconds)} | ${f0(g.peakRssMiB)} | ${f2(g.loadStart)} | ${f2(g.loadEnd)} | ${g.tensorsLeft} |`,
  );
  const ours = (name: string) => table.find((r) => r.group === name);
  const side = reference
    ? [
        '## ANP and I-BAU beside a PyTorch reference of the same inner loop',
        '',
        `bench/reference/pytorch_anp_ibau.py, ${reference.arch} (ours: ${info.arch}), batch ${reference.batchSize}, ${reference.threads} threads (torch ${reference.torch}), load ${reference.loadAverage?.toFixed(2)} at its start.`,
        'Each side\'s "relative to plain" divides by its own plain-training images/s, so the two columns compare how much of each',
        "framework's training speed the inner loop keeps.",
        '',
        '| loop | ours img/s | PyTorch img/s | ours / PyTorch | passes per image | ours relative to plain | PyTorch relative to plain |',
        '|---|---|---|---|---|---|---|',
        `| plain training | ${f0(plain)} | ${f0(reference.plainImagesPerSecond)} | ${f2(plain / reference.plainImagesPerSecond)} | 1.00 | 1.00 | 1.00 |`,
        ...(
          [
            ['ANP mask iteration', ours('anp'), reference.anp],
            [`I-BAU outer step (${reference.ibau.hvp} HVPs)`, ours('ibau'), reference.ibau],
          ] as const
        ).map(([name, r, ref]) =>
          r
            ? `| ${name} | ${f0(r.imagesPerSecond)} | ${f0(ref.imagesPerSecond)} | ${f2(r.imagesPerSecond / ref.imagesPerSecond)} | ${f2(r.passesPerImage)} / ${f2(ref.passesPerImage)} | ${f2((r.imagesPerSecond * r.passesPerImage) / plain)} | ${f2((ref.imagesPerSecond * ref.passesPerImage) / reference.plainImagesPerSecond)} |`
            : `| ${name} | (not run) | ${f0(ref.imagesPerSecond)} | | | | |`,
        ),
        '',
        'Ours counts the whole stage (its images/s include pruning or held-out scoring); the reference times the inner loop alone.',
        '',
      ]
    : [];
  return [
    `# Stage cost${o.smoke ? ' (SMOKE RUN: a few steps per stage on a small synthetic set; the numbers mean nothing)' : ''}`,
    '',
    `Measured ${info.date} with \`node dist/bench/stageCost.js ${info.argv}\` (bench/stageCost.ts): one ${o.tier}-tier cell (${info.arch}, BadNets, D_c = 100, seed 1,`,
    `${o.smoke ? 'every budget cut to a few steps' : 'each defense at its defaults'}), data: ${info.data}. Every group of stages in a fresh process after an untimed warm-up,`,
    `TensorFlow threads: ${o.threads} intra-op and ${o.threads} inter-op.`,
    '',
    'Passes per image are training-step equivalents (forward 1, backward with weight gradients 2, backward to inputs/masks only 1;',
    'a training step = 3 = 1 pass). "Relative to plain" = (images x passes per image + counted extra work) / seconds / plain',
    `training's images/s (${f0(plain)} img/s here): 1.0 = the stage does its inherent work as fast as plain training; well below 1 =`,
    'time its passes do not explain.',
    '',
    '| stage | group | seconds | images | img/s | passes per image | extra work (training-image equivalents) | equivalent img/s | relative to plain | peak RSS MiB (group) | counted |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...lines,
    '',
    ...side,
    '## Groups',
    '',
    '| group | setup s (data, loading f_std; untimed) | peak RSS MiB | load at start | load at end | tensors left |',
    '|---|---|---|---|---|---|',
    ...groups,
    '',
    `1-minute load average ${f2(info.loadStart)} at the start and ${f2(info.loadEnd)} at the end, on ${m.logicalCores} cores; total ${info.totalSeconds.toFixed(0)} s.`,
    'A load above the core count means other processes competed for the CPU: compare only runs on a quiet machine.',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpuModel}, ${m.logicalCores} logical cores (available parallelism ${m.availableParallelism}), ${m.totalMemoryGiB} GiB memory`,
    `- OS: ${m.platform}`,
    `- Node.js ${m.node}, @tensorflow/tfjs-node ${m.tfjs} on native TensorFlow ${m.tensorflow}, backend ${m.backend}, TF_ENABLE_ONEDNN_OPTS=${m.oneDNN}, fast path ${m.fastPath}`,
    `- PyTorch ${reference?.torch ?? '(not run)'}`,
    '',
  ].join('\n');
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  if (o.worker) {
    const r = await worker(o, o.worker.group, o.worker.work);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return;
  }
  const t0 = performance.now();
  const loadStart = os.loadavg()[0];
  const m = machine(o.threads);
  console.log(`machine: ${m.cpuModel}, ${m.logicalCores} cores, load ${loadStart.toFixed(2)}, TensorFlow ${m.tensorflow}, ${o.threads} threads`);
  const groups = o.groups.includes('ntml') ? o.groups : (['ntml', ...o.groups] as Group[]);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-stage-cost-'));
  const results: GroupResult[] = [];
  try {
    for (const group of groups) {
      const r = await runGroup(o, group, work);
      results.push(r);
      for (const s of r.stages) console.log(`${group.padEnd(5)} ${s.stage.padEnd(22)} ${s.seconds.toFixed(1).padStart(7)} s ${String(s.images).padStart(8)} images  ${(s.images / s.seconds).toFixed(0).padStart(6)} img/s`);
      console.log(`${group.padEnd(5)} peak RSS ${r.peakRssMiB.toFixed(0)} MiB, load ${r.loadStart.toFixed(2)} -> ${r.loadEnd.toFixed(2)}, tensors left ${r.tensorsLeft}`);
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
  let reference: ReferenceResult | undefined;
  if (o.pytorch) {
    const anpCfg = defenseConfigSchema.parse(baselineConfig(o, 'anp')) as BaselineDefenseConfig & { name: 'anp' };
    const ibauCfg = defenseConfigSchema.parse(baselineConfig(o, 'ibau')) as BaselineDefenseConfig & { name: 'ibau' };
    // the reference runs the loops at the batch ours ran them at: min(batch, |D_c fit|)
    const batch = results.flatMap((r) => r.stages).find((s) => s.batchSize)?.batchSize ?? anpCfg.batchSize;
    reference = await runReference(o, pytorchPython(), batch, { iterations: o.smoke ? 4 : Math.min(anpCfg.iterations, 200) }, ibauCfg);
    console.log(`PyTorch: plain ${reference.plainImagesPerSecond.toFixed(0)} img/s, ANP ${reference.anp.imagesPerSecond.toFixed(0)} img/s, I-BAU ${reference.ibau.imagesPerSecond.toFixed(0)} img/s`);
  }
  const cfg = cellConfig(o);
  const info = {
    date: new Date().toISOString(),
    loadStart,
    loadEnd: os.loadavg()[0],
    totalSeconds: (performance.now() - t0) / 1000,
    data: cfg.data ? JSON.stringify(cfg.data) : 'protection-mode files',
    arch: 'arch' in cfg.model ? cfg.model.arch : 'a user model',
    argv: process.argv.slice(2).join(' '),
    smoke: o.smoke,
  };
  await fs.mkdir(o.out, { recursive: true });
  const file = (ext: string) => path.join(o.out, `${o.name}.${ext}`);
  const { out: _out, ...options } = o;
  const { plain, rows: table } = rows(results);
  await fs.writeFile(file('json'), `${JSON.stringify({ ...info, options, machine: m, plainImagesPerSecond: plain, stages: table, groups: results, reference }, null, 2)}\n`);
  await fs.writeFile(file('md'), markdown(o, m, results, reference, info));
  console.log(`load ${loadStart.toFixed(2)} -> ${info.loadEnd.toFixed(2)}; wrote ${file('json')} and ${file('md')}`);
}

// a test imports parseOptions; only running the file runs the benchmark
if (require.main === module) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err);
    process.exit(1);
  });
}

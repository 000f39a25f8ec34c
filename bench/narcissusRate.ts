/**
 * Narcissus's poisoning rate at the cpu tier, on one learned trigger (issue 20, item 3: "a
 * cpu-tier Narcissus budget that fits, stated"; dev seeds only).
 *
 * attacks-cpu's Narcissus cell of --seed learned its trigger (surrogate, warm-up and 1000
 * rounds: the expensive part, hours of a core). The trigger reads the attacker's data, the seed
 * and the trigger settings, not the poisoning rate or the test-time multiplier, so every rate
 * here reuses it (PrepareControl.learnedTrigger) and only poisons and trains f_std again: the
 * cell's own config with `attack.rate` replaced, the pipeline's prepareData and standard-training
 * code (core/pipeline/stageRuns, no Temporal), then clean ACC, ASR (trigger x3) and RA on the
 * cell's test split. Before any training the script checks the reuse: prepareData with the
 * stored trigger at the cell's own rate must rebuild the very training set the cell stored
 * (same sha256), else it stops.
 * With --clean-sweep, the f_std of that sweep's cells (clean models: bench/specs/clean-cpu.yaml)
 * are measured on the same triggered test set: the ASR the x3 trigger gives a model that never
 * saw a poisoned image.
 *
 *   TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 node dist/bench/narcissusRate.js \
 *     --sweep attacks-cpu --seed 1 --rates 0.005,0.02,0.05 [--clean-sweep clean-cpu] \
 *     --out bench/results/narcissus-rate-cpu
 *
 * The store is the one of the environment or the local stack (as `ntml store`). report.json is
 * rewritten after every rate, and a rerun skips the rates (and clean models) it holds.
 */
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ArtifactRef, ArtifactStore } from '../store';
import type { PurifyReport, SweepCellRecord } from '../workflows/contract';
import type { TriggerParameters } from '../core/attacks/base';
import type { ImageDataset } from '../core/data/dataset';
import type { BackdoorTestSet } from '../core/attacks/testSet';
import { parsePurifyConfig, type PurifyConfig } from '../schemas/purify';
import { parseBenchArgs } from './args';
import { UsageError } from '../cli/errors';

interface RateRow {
  rate: number;
  poisoned: number;
  acc: number;
  asr?: number;
  ra?: number;
  trainSeconds: number;
  loadAverage: { start: number[]; end: number[] };
}

interface CleanRow {
  cell: string;
  seed: number;
  acc: number;
  asr?: number;
  ra?: number;
}

interface RateReport {
  sweep: string;
  cellId: string;
  seed: number;
  /** the cell's own f_std, as the sweep measured it */
  cell: { rate: number; acc?: number; asr?: number; ra?: number };
  reuseCheck: string;
  command: string;
  threads: string;
  machine: { cpuModel: string; logicalCores: number };
  rows: RateRow[];
  clean: CleanRow[];
}

const USAGE =
  'usage: node dist/bench/narcissusRate.js --sweep NAME --seed N --rates R1,R2,... --out DIR [--clean-sweep NAME]';

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function cellsOf(store: ArtifactStore, sweep: string): Promise<SweepCellRecord[]> {
  const keys = await store.listRecords(`sweeps/${sweep}/cells/`);
  if (keys.length === 0) throw new Error(`no cells of sweep ${JSON.stringify(sweep)} in the store ${store.location}`);
  const cells = await Promise.all(keys.map((k) => store.getRecord<SweepCellRecord>(k)));
  return cells.filter((c): c is SweepCellRecord => c?.status === 'completed');
}

/**
 * The completed Narcissus cell of `seed`, and the trigger it learned: from its prepareData output
 * with the training set it poisoned (on the store the sweep ran in), else from its learned-trigger
 * entry (a store that imported the sweep's bundle holds no data sets; the entry verified itself).
 */
async function narcissusCell(store: ArtifactStore, sweep: string, seed: number) {
  const cell = (await cellsOf(store, sweep)).find((c) => c.axes.attack === 'narcissus' && c.axes.seed === seed);
  if (!cell) throw new Error(`sweep ${sweep} has no completed Narcissus cell of seed ${seed}`);
  const key = cell.stages?.find((s) => s.stage === 'prepareData')?.cacheKey;
  const entry = key ? await store.getRecord<{ output?: { train?: ArtifactRef; poison?: { triggerParameters?: TriggerParameters } } }>(`cache/prepareData/${key}`) : undefined;
  const output = entry?.output;
  if (output?.poison?.triggerParameters && output.train) return { cell, trigger: output.poison.triggerParameters, storedTrain: output.train };
  const { storedTriggerOfCell } = await import('../activities/learnedTriggerCache');
  const stored = await storedTriggerOfCell(store, parsePurifyConfig(cell.config), cell.config);
  if (!stored.trigger) throw new Error(`sweep ${sweep}, cell ${cell.cellId}: neither its prepareData entry (${key ?? 'no key'}) nor its learned trigger (cache/learnedTrigger/${stored.key}) is in the store`);
  return { cell, trigger: stored.trigger, storedTrain: undefined };
}

function withRate(config: Record<string, unknown>, rate: number): PurifyConfig {
  const attack = { ...(config.attack as Record<string, unknown>), rate };
  return parsePurifyConfig({ ...config, attack });
}

async function prepared(cfg: PurifyConfig, trigger: TriggerParameters) {
  const { prepareData } = await import('../core/experiment/prepareData');
  const data = await prepareData(cfg, undefined, { learnedTrigger: trigger });
  if (!data.test || !data.backdoorTest) throw new Error('prepareData gave no test split or triggered test set');
  return data as typeof data & { test: ImageDataset; backdoorTest: BackdoorTestSet };
}

async function readReport(file: string): Promise<RateReport | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, 'utf8')) as RateReport;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`${file}: not a report this script wrote (${(e as Error).message}); give another --out`);
  }
}

const pct = (x: number | undefined) => (x === undefined ? '-' : x.toFixed(1));

function markdown(r: RateReport): string {
  const lines = [
    `# Narcissus's poisoning rate at the cpu tier, on one learned trigger (${r.sweep}, seed ${r.seed})`,
    '',
    `Generated by \`${r.command}\` (bench/narcissusRate.ts; TensorFlow threads ${r.threads}, ${r.machine.cpuModel}, ${r.machine.logicalCores} cores).`,
    `The trigger is the one cell ${r.cellId} learned; ${r.reuseCheck}.`,
    '',
    '| rate | poisoned images | ACC | ASR (trigger x3) | RA | training s | load avg (start / end) |',
    '|---|---|---|---|---|---|---|',
    `| ${r.cell.rate} (the cell itself, in the sweep) | - | ${pct(r.cell.acc)} | ${pct(r.cell.asr)} | ${pct(r.cell.ra)} | - | - |`,
    ...[...r.rows]
      .sort((a, b) => a.rate - b.rate)
      .map((x) => `| ${x.rate} | ${x.poisoned} | ${pct(x.acc)} | ${pct(x.asr)} | ${pct(x.ra)} | ${x.trainSeconds.toFixed(0)} | ${x.loadAverage.start[0].toFixed(1)} / ${x.loadAverage.end[0].toFixed(1)} |`),
  ];
  if (r.clean.length) {
    lines.push('', 'Clean models (never saw a poisoned image) on the same triggered test set:', '', '| clean cell | seed | ACC | ASR (trigger x3) | RA |', '|---|---|---|---|---|');
    for (const c of r.clean) lines.push(`| ${c.cell} | ${c.seed} | ${pct(c.acc)} | ${pct(c.asr)} | ${pct(c.ra)} |`);
  }
  return `${lines.join('\n')}\n`;
}

async function main(argv: string[]): Promise<void> {
  const a = parseBenchArgs(argv, { sweep: { type: 'string' }, seed: { type: 'string' }, rates: { type: 'string' }, out: { type: 'string' }, 'clean-sweep': { type: 'string' } }, USAGE);
  const sweep = a.text('sweep');
  const out = a.text('out');
  const ratesText = a.text('rates');
  if (!sweep || !out || !ratesText) throw new Error(`--sweep, --rates and --out are required\n${USAGE}`);
  const seed = a.integer('seed', 1, 0);
  const rates = ratesText.split(',').map((t) => {
    const r = Number(t);
    if (!(r > 0 && r <= 1)) throw new Error(`--rates: ${JSON.stringify(t)} is not a rate in (0, 1]`);
    return r;
  });
  const file = path.join(out, 'report.json');
  const { withStore } = await import('../cli/store');
  await withStore({ stderr: process.stderr }, async (store) => {
    const { cell, trigger, storedTrain } = await narcissusCell(store, sweep, seed);
    const ownRate = parsePurifyConfig(cell.config).attack!.rate;
    const report: RateReport = (await readReport(file)) ?? {
      sweep,
      cellId: cell.cellId,
      seed,
      cell: { rate: ownRate, acc: cell.metrics?.standard.acc, asr: cell.metrics?.standard.asr, ra: cell.metrics?.standard.ra },
      reuseCheck: '',
      command: ['node', path.relative(process.cwd(), process.argv[1]), ...argv].join(' '),
      threads: process.env.TF_NUM_INTRAOP_THREADS ?? 'TensorFlow default',
      machine: { cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown', logicalCores: os.cpus().length },
      rows: [],
      clean: [],
    };
    if (report.cellId !== cell.cellId) throw new Error(`${file} was made from cell ${report.cellId}, not ${cell.cellId}; give another --out`);
    // the command that reproduces every row: this run's (a rerun names every rate it keeps)
    report.command = ['node', path.relative(process.cwd(), process.argv[1]), ...argv].join(' ');
    // one row per clean model and per rate (the last measured), whatever an earlier run wrote
    report.clean = [...new Map(report.clean.map((r) => [r.cell, r])).values()];
    report.rows = [...new Map(report.rows.map((r) => [r.rate, r])).values()];
    const save = async () => {
      await fs.mkdir(out, { recursive: true });
      await fs.writeFile(file, `${JSON.stringify(report, null, 1)}\n`);
      await fs.writeFile(path.join(out, 'report.md'), markdown(report));
    };

    // the reuse must rebuild the cell's own poisoned training set, byte for byte (where it is stored)
    const { encodeDataset } = await import('../core/data/codec');
    const own = await prepared(withRate(cell.config, ownRate), trigger);
    const rebuilt = sha256(encodeDataset(own.train));
    if (storedTrain && rebuilt !== storedTrain.sha256) throw new Error(`the stored trigger at rate ${ownRate} rebuilds a training set ${rebuilt.slice(0, 12)} that is not the cell's ${storedTrain.sha256.slice(0, 12)}: the reuse does not hold`);
    report.reuseCheck = storedTrain
      ? `at the cell's own rate (${ownRate}) prepareData with the stored trigger rebuilt the cell's stored training set byte for byte (sha256 ${rebuilt.slice(0, 12)})`
      : `the trigger came from the cell's learned-trigger entry (its sha256 verified); the cell's training set is not in this store, so the rebuild (sha256 ${rebuilt.slice(0, 12)}) was not compared with it`;
    await save();

    const { evaluateClassifier } = await import('../core/experiment/evaluate');
    const cleanSweep = a.text('clean-sweep');
    if (cleanSweep) {
      const { decodeClassifier } = await import('../core/models/layersFormat');
      for (const c of await cellsOf(store, cleanSweep)) {
        if (report.clean.some((r) => r.cell === `${cleanSweep}/${c.cellId}`) || !c.report) continue;
        const models = JSON.parse(Buffer.from(await store.get(c.report)).toString('utf8')) as PurifyReport;
        const model = await decodeClassifier(await store.get(models.models.standard), models.models.standard.uri);
        const m = await evaluateClassifier(model, own.test, own.backdoorTest);
        model.model.dispose();
        report.clean.push({ cell: `${cleanSweep}/${c.cellId}`, seed: c.axes.seed, acc: m.acc, asr: m.asr, ra: m.ra });
        process.stderr.write(`clean ${c.cellId} (seed ${c.axes.seed}): ACC ${pct(m.acc)} ASR ${pct(m.asr)}\n`);
        await save();
      }
    }

    const { standardTrainingStage } = await import('../core/pipeline/stageRuns');
    const { plainStageEnv } = await import('../core/pipeline/stageEnv');
    for (const rate of rates) {
      if (report.rows.some((r) => r.rate === rate)) continue;
      const cfg = withRate(cell.config, rate);
      const data = await prepared(cfg, trigger);
      const start = os.loadavg();
      const t0 = performance.now();
      process.stderr.write(`rate ${rate}: ${data.summary.poisonedCount} poisoned; training f_std ...\n`);
      const env = plainStageEnv();
      const { model } = await standardTrainingStage(cfg, data.train, env);
      const trainSeconds = (performance.now() - t0) / 1000;
      const m = await evaluateClassifier(model, data.test, data.backdoorTest);
      env.scope.disposeAll();
      report.rows.push({ rate, poisoned: data.summary.poisonedCount, acc: m.acc, asr: m.asr, ra: m.ra, trainSeconds, loadAverage: { start, end: os.loadavg() } });
      process.stderr.write(`rate ${rate}: ACC ${pct(m.acc)} ASR ${pct(m.asr)} RA ${pct(m.ra)} (${trainSeconds.toFixed(0)} s)\n`);
      await save();
    }
  });
}

main(process.argv.slice(2)).then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`narcissusRate: ${(e as Error).message}\n`);
    process.exit(e instanceof UsageError ? 2 : 1);
  },
);

/**
 * Audit detection measured on a sweep's models (issue 25, item 6): every finished cell's
 * standard model f_std (backdoored in an attack sweep, clean in a clean sweep) is audited by
 * the `audit` workflow, the code path of `ntml audit run`, against a reference set drawn from
 * the cell's own clean test split; one row per model says the verdict, which check fired, the
 * class it named against the true target, and the time taken.
 *
 *   node dist/bench/auditDetection.js --sweep attacks-cpu [--clean-sweep clean-cpu] \
 *     --out bench/results/audit-detection [--policy FILE] [--reference-size 500] [--reference-seed 0]
 *   node dist/bench/auditDetection.js clean-data --spec bench/specs/attacks-cpu.yaml --seed 1 \
 *     --out-dir .ntml/bench-data/clean-cpu
 *
 * The sweeps are read from the store of the stack the command runs on (the embedded or local
 * stack's S3 store by default; --address / NTML_TEMPORAL_ADDRESS with NTML_STORE for a remote
 * one). report.json is rewritten after every model, and a rerun skips the models it holds.
 * `clean-data` writes the files bench/specs/clean-cpu.yaml trains on (bench/cleanCounterpart.ts).
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Client } from '@temporalio/client';
import type { ArtifactRef, ArtifactStore } from '../store';
import type { AuditOutcome, AuditReport } from '../core/audit/report';
import type { AuditInput, PurifyReport, SweepCellRecord } from '../workflows/contract';
import type { TriggerParameters } from '../core/attacks/base';
import { prepareData } from '../core/experiment/prepareData';
import { parseAttackConfig } from '../core/attacks/registry';
import { AuditPolicy } from '../schemas/audit';
import { formatIssues, parsePurifyConfig, type PurifyConfig } from '../schemas/purify';
import { decodeDataset, decodeDatasetWithMeta, encodeDataset } from '../core/data/codec';
import { stratifiedSubset } from '../core/data/splits';
import { subsetDataset, type ImageDataset } from '../core/data/dataset';
import { decodeClassifier } from '../core/models/layersFormat';
import { predictProbabilities } from '../core/models/classifier';
import { stripDetection, type StripBlend } from '../core/audit/strip';
import { Rng } from '../core/rng';
import { parseBenchArgs, type BenchArgs, type OptionSpecs } from './args';
import { detectionMarkdown, detectionRow, type DetectionReport, type DetectionRow, type DetectionRun, type ModelRole, type RowSource } from './auditDetectionRows';

export class DetectionInputError extends Error {}

/** One model to audit: where its row's facts come from, and the clean test split of its cell. */
export interface DetectionTarget {
  source: RowSource;
  model: ArtifactRef;
  test: ArtifactRef;
  /** the cell's triggered test images (non-target images with the trigger), for STRIP */
  backdoorTest?: ArtifactRef;
}

/**
 * STRIP beside the audit (core/audit/strip.ts): the reference set's even images are the
 * overlays, its odd ones set the threshold, and up to `suspects` of the cell's triggered test
 * images are the inputs to judge. 16 overlays per input keeps it to seconds per model; fewer
 * overlays make an input's mean entropy noisier, not biased. Both superimpositions are
 * measured: the 50/50 blend halves a low-amplitude trigger (Blended at ci tier: 12 of 200
 * flagged, against 200 of 200 for BadNets), the saturated sum keeps it but washes bright
 * images out.
 */
export const STRIP_SETTINGS = { overlaysPerInput: 16, falseRejectionRate: 0.05, seed: 0, suspects: 200, blends: ['average', 'sum'] as StripBlend[] };

async function json<T>(store: ArtifactStore, ref: ArtifactRef): Promise<T> {
  return JSON.parse(Buffer.from(await store.get(ref)).toString('utf8')) as T;
}

/**
 * The completed cells of `sweep`, each with its f_std (the report's standard model) and the
 * clean test split of its prepareData stage (the stage-cache entry the cell names).
 */
export async function sweepTargets(store: ArtifactStore, sweep: string, role: ModelRole): Promise<{ targets: DetectionTarget[]; unfinished: string[] }> {
  const keys = await store.listRecords(`sweeps/${sweep}/cells/`);
  if (keys.length === 0) throw new DetectionInputError(`no cells of sweep ${JSON.stringify(sweep)} in the store ${store.location} (sweeps/${sweep}/cells/ is empty)`);
  // records under cell ids the stored spec no longer lists are superseded (an older protocol's
  // cells, as the sweep report leaves them out): their models are not the sweep's
  const spec = await store.getRecord<{ cellIds?: unknown }>(`sweeps/${sweep}/spec`);
  const current = Array.isArray(spec?.cellIds) ? new Set(spec.cellIds.filter((c): c is string => typeof c === 'string')) : undefined;
  const targets: DetectionTarget[] = [];
  const unfinished: string[] = [];
  for (const key of keys) {
    const cell = await store.getRecord<SweepCellRecord>(key);
    if (cell && current && !current.has(cell.cellId)) continue;
    if (cell?.status !== 'completed' || !cell.report) {
      unfinished.push(`${sweep}/${cell?.cellId ?? key} (${cell ? `${cell.axes.attack} seed ${cell.axes.seed}, ${cell.status}` : 'no record'})`);
      continue;
    }
    const report = await json<PurifyReport>(store, cell.report);
    const prepare = cell.stages?.find((s) => s.stage === 'prepareData')?.cacheKey;
    const standard = cell.stages?.find((s) => s.stage === 'standardTraining')?.cacheKey;
    if (!prepare) throw new DetectionInputError(`sweep ${sweep}, cell ${cell.cellId}: names no prepareData stage-cache key, so its clean test split cannot be found`);
    const entry = await store.getRecord<{ output?: { test?: ArtifactRef; backdoorTest?: ArtifactRef } }>(`cache/prepareData/${prepare}`);
    // a training-controlled attack (Input-Aware, WaNet) makes its triggered test set in standard training
    const trained = standard ? await store.getRecord<{ output?: { data?: { backdoorTest?: ArtifactRef } } }>(`cache/standardTraining/${standard}`) : undefined;
    const cfg = parsePurifyConfig(cell.config);
    const attack = cfg.attack;
    if (role === 'clean' && attack) throw new DetectionInputError(`--clean-sweep ${sweep}: cell ${cell.cellId} trains with attack ${attack.name}; a clean sweep has none (protection mode, defense none)`);
    if (role === 'backdoored' && !attack) throw new DetectionInputError(`--sweep ${sweep}: cell ${cell.cellId} has no attack; pass a sweep of clean models as --clean-sweep`);
    let splits: { test: ArtifactRef; backdoorTest?: ArtifactRef };
    if (entry?.output?.test) splits = { test: entry.output.test, backdoorTest: trained?.output?.data?.backdoorTest ?? entry.output.backdoorTest };
    else if (cfg.mode === 'evaluation') splits = await regeneratedSplits(store, sweep, cell, cfg);
    else throw new DetectionInputError(`sweep ${sweep}, cell ${cell.cellId}: its prepareData entry cache/prepareData/${prepare} is missing or has no clean test split (protection-mode cells need a testSet)`);
    targets.push({
      source: {
        sweep,
        cellId: cell.cellId,
        role,
        attack: attack?.name ?? 'none',
        ...(attack && nonDefaultSettings(attack) ? { settings: nonDefaultSettings(attack) } : {}),
        seed: cfg.seed,
        trueTarget: attack && attack.labelMap !== 'allToAll' ? attack.target : undefined,
        model: { uri: report.models.standard.uri, sha256: report.models.standard.sha256 },
      },
      model: report.models.standard,
      ...splits,
    });
  }
  return { targets, unfinished };
}

/** The attack's fields that differ from the library's defaults, target aside, as "k=v,k=v" (undefined when none). */
export function nonDefaultSettings(attack: NonNullable<PurifyConfig['attack']>): string | undefined {
  const defaults = parseAttackConfig({ name: attack.name, target: attack.target }) as unknown as Record<string, unknown>;
  const fields = Object.entries(attack as unknown as Record<string, unknown>).filter(([k, v]) => k !== 'name' && JSON.stringify(v) !== JSON.stringify(defaults[k]));
  return fields.length ? fields.map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(',') : undefined;
}

/**
 * An evaluation cell's clean test split and triggered test set when its prepareData entry is not
 * in this store: bundles carry no data sets (bench/state/README.md), so a store that imported the
 * sweep has the models but not the splits. prepareData regenerates both from the cell's config
 * and seed, deterministically; a learned trigger (Narcissus) comes from its cache entry and is
 * never learned again here. A training-controlled attack's triggered set needs its attacker's
 * generators (made in standard training), so it stays absent and the row has no STRIP.
 */
async function regeneratedSplits(store: ArtifactStore, sweep: string, cell: SweepCellRecord, cfg: PurifyConfig): Promise<{ test: ArtifactRef; backdoorTest?: ArtifactRef }> {
  const { hasLearnedTrigger, storedTriggerOfCell } = await import('../activities/learnedTriggerCache');
  let learnedTrigger: TriggerParameters | undefined;
  if (hasLearnedTrigger(cfg)) {
    const { key, trigger } = await storedTriggerOfCell(store, cfg, cell.config);
    learnedTrigger = trigger;
    if (!learnedTrigger) {
      throw new DetectionInputError(
        `sweep ${sweep}, cell ${cell.cellId}: neither its prepareData entry nor its learned trigger (cache/learnedTrigger/${key}) is in the store, and the trigger is not learned again here; run \`node dist/bench/learnedTriggers.js backfill --sweep ${sweep}\` on the store the sweep ran in, or import a bundle exported after it`,
      );
    }
  }
  const data = await prepareData(cfg, undefined, learnedTrigger ? { learnedTrigger } : undefined);
  if (!data.test) throw new DetectionInputError(`sweep ${sweep}, cell ${cell.cellId}: its config gives no test split`);
  return {
    test: await store.put(encodeDataset(data.test)),
    backdoorTest: data.backdoorTest ? await store.put(encodeDataset(data.backdoorTest.images)) : undefined,
  };
}

/** A class-stratified subset of a cell's test split, stored as an ntml data set (one per split). */
export async function referenceSet(store: ArtifactStore, test: ArtifactRef, size: number, seed: number): Promise<{ ref: ArtifactRef; images: ImageDataset }> {
  const split = decodeDataset(await store.get(test), test.uri);
  if (size > split.labels.length) throw new DetectionInputError(`--reference-size ${size} is more than the ${split.labels.length} images of the test split ${test.uri}`);
  const images = { ...stratifiedSubset(split, size, seed), name: `${split.name}[stratified ${size}, seed=${seed}]` };
  return { ref: await store.put(encodeDataset(images)), images };
}

/** STRIP on the cell's triggered test images with the audited model (undefined without them). */
async function stripOn(store: ArtifactStore, t: DetectionTarget, reference: ImageDataset): Promise<DetectionRow['strip']> {
  if (!t.backdoorTest) return undefined;
  const t0 = Date.now();
  const triggered = decodeDatasetWithMeta(await store.get(t.backdoorTest), t.backdoorTest.uri).dataset;
  const n = triggered.labels.length;
  const picked = n <= STRIP_SETTINGS.suspects ? Array.from({ length: n }, (_, i) => i) : Array.from(new Rng(STRIP_SETTINGS.seed).permutation(n).subarray(0, STRIP_SETTINGS.suspects)).sort((a, b) => a - b);
  const every = (odd: number) => Array.from({ length: Math.floor((reference.labels.length + 1 - odd) / 2) }, (_, i) => 2 * i + odd);
  const sets = { overlays: subsetDataset(reference, every(0)), clean: subsetDataset(reference, every(1)), suspect: subsetDataset(triggered, picked) };
  const classifier = await decodeClassifier(await store.get(t.model), t.model.uri);
  try {
    const results = [];
    for (const blend of STRIP_SETTINGS.blends) {
      const result = await stripDetection((ds) => predictProbabilities(classifier, ds), sets, { ...STRIP_SETTINGS, blend });
      results.push({ ...result, seconds: (Date.now() - t0) / 1000 });
    }
    return results;
  } finally {
    classifier.model.dispose();
  }
}

export interface DetectionOptions {
  client: Client;
  queues: { orchestration: string; training?: string };
  store: ArtifactStore;
  sweeps: { backdoored: string; clean?: string };
  policy: unknown;
  referenceSize: number;
  referenceSeed: number;
  outDir: string;
  command: string;
  log?: (line: string) => void;
}

/** The audit of one model by the audit workflow; returns its stored report and the seconds it took. */
async function auditModel(o: DetectionOptions, t: DetectionTarget, reference: ArtifactRef): Promise<{ report: AuditReport; seconds: number }> {
  const modelId = `detection-${t.source.sweep}-${t.source.cellId}`.slice(0, 64);
  const request = { modelId, model: { artifact: t.model }, referenceSet: { format: 'ntml', location: reference.uri }, policy: o.policy };
  const t0 = Date.now();
  const outcome = (await o.client.workflow.execute('audit', {
    taskQueue: o.queues.orchestration,
    workflowId: `${modelId}-${Date.now().toString(36)}`,
    args: [{ request, options: o.queues.training ? { trainingTaskQueue: o.queues.training } : undefined } satisfies AuditInput],
  })) as AuditOutcome;
  const seconds = (Date.now() - t0) / 1000;
  return { report: await json<AuditReport>(o.store, outcome.report), seconds };
}

async function readExisting(file: string): Promise<DetectionReport> {
  try {
    const parsed = JSON.parse(await fs.readFile(file, 'utf8')) as DetectionReport;
    if (!Array.isArray(parsed.rows) || !Array.isArray(parsed.runs)) throw new DetectionInputError(`${file}: not an audit-detection report (no rows/runs); move it away to start afresh`);
    return parsed;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { runs: [], rows: [] };
    if (err instanceof SyntaxError) throw new DetectionInputError(`${file}: not valid JSON (${err.message}); move it away to start afresh`);
    throw err;
  }
}

async function writeReport(dir: string, report: DetectionReport): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await fs.writeFile(path.join(dir, 'report.md'), detectionMarkdown(report));
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    logicalCores: cpus.length,
    memoryGiB: Number((os.totalmem() / 1024 ** 3).toFixed(1)),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
  };
}

/**
 * Audits every finished model of the sweeps not already in `outDir`/report.json (same cell,
 * same model digest), appending a row and rewriting report.json and report.md after each.
 */
/**
 * The order models are audited in: seed by seed, and within a seed every attack, then the clean
 * models. A full run audits the same set either way; a run stopped part way (the scans take
 * minutes a model, and sittings end) then holds one model of every attack and a clean one,
 * instead of three seeds of the first attacks and nothing of the last.
 */
export function auditOrder<T extends { source: Pick<RowSource, 'role' | 'seed' | 'attack'> }>(targets: T[]): T[] {
  const roleRank = (r: ModelRole) => (r === 'backdoored' ? 0 : 1);
  // a stable sort: within one seed and role the sweep's own cell order stands
  return [...targets].sort((a, b) => a.source.seed - b.source.seed || roleRank(a.source.role) - roleRank(b.source.role));
}

export async function runAuditDetection(o: DetectionOptions): Promise<{ report: DetectionReport; audited: number; skipped: number; stripFilled: number }> {
  const parsedPolicy = AuditPolicy.safeParse(o.policy ?? {});
  if (!parsedPolicy.success) throw new DetectionInputError(`--policy is invalid:\n  ${formatIssues(parsedPolicy.error).join('\n  ')}`);
  const log = o.log ?? (() => undefined);
  const file = path.join(o.outDir, 'report.json');
  const report = await readExisting(file);
  // rows of one report are comparable only under one policy and one reference-set draw
  const earlier = report.runs[0];
  const settings = (r: { policy: unknown; referenceSet: { size: number; seed: number } }) => JSON.stringify([r.policy ?? {}, r.referenceSet.size, r.referenceSet.seed]);
  if (earlier && settings(earlier) !== settings({ policy: o.policy ?? {}, referenceSet: { size: o.referenceSize, seed: o.referenceSeed } })) {
    throw new DetectionInputError(
      `${file} holds audits made with another policy or reference set (${settings(earlier)}); give this run another --out, or the same --policy, --reference-size and --reference-seed`,
    );
  }
  const found = [await sweepTargets(o.store, o.sweeps.backdoored, 'backdoored'), ...(o.sweeps.clean ? [await sweepTargets(o.store, o.sweeps.clean, 'clean')] : [])];
  const targets = found.flatMap((f) => f.targets);
  const unfinished = found.flatMap((f) => f.unfinished);
  // a failed cell has no model to audit; the run records which, so a missing row is explained
  if (unfinished.length) log(`not audited (the cell has not completed): ${unfinished.join(', ')}`);
  const done = new Set(report.rows.map((r) => `${r.key} ${r.model.sha256}`));
  const todo = auditOrder(targets.filter((t) => !done.has(`${t.source.sweep}/${t.source.cellId} ${t.model.sha256}`)));
  const run: DetectionRun = {
    command: o.command,
    machine: machine(),
    loadAverage: { start: os.loadavg(), end: os.loadavg() },
    startedAt: new Date().toISOString(),
    finishedAt: new Date().toISOString(),
    sweeps: o.sweeps,
    referenceSet: { size: o.referenceSize, seed: o.referenceSeed, from: "each cell's clean test split" },
    policy: o.policy ?? {},
    unfinishedCells: unfinished,
  };
  log(`${targets.length} models in the sweeps, ${targets.length - todo.length} already in ${file}, ${todo.length} to audit`);
  const references = new Map<string, { ref: ArtifactRef; images: ImageDataset }>();
  const referenceOf = async (t: DetectionTarget) => {
    let reference = references.get(t.test.sha256);
    if (!reference) references.set(t.test.sha256, (reference = await referenceSet(o.store, t.test, o.referenceSize, o.referenceSeed)));
    return reference;
  };
  // rows audited on a store without the cell's triggered set (an attacker run's output that a
  // bundle does not carry) get STRIP once a store has it: STRIP is beside the audit, which stays
  const stripLate = targets.filter((t) => t.backdoorTest && report.rows.some((r) => r.key === `${t.source.sweep}/${t.source.cellId}` && r.model.sha256 === t.model.sha256 && !r.strip));
  for (const t of stripLate) {
    const row = report.rows.find((r) => r.key === `${t.source.sweep}/${t.source.cellId}`)!;
    row.strip = await stripOn(o.store, t, (await referenceOf(t)).images);
    log(`STRIP beside the earlier audit of ${row.key} (${row.attack} seed ${row.seed}): ${row.strip!.map((r) => `${r.flagged}/${r.inputs} (${r.blend})`).join(', ')} triggered inputs flagged`);
    await writeReport(o.outDir, report);
  }
  if (todo.length === 0) return { report, audited: 0, skipped: targets.length, stripFilled: stripLate.length };
  report.runs.push(run);
  for (const [i, t] of todo.entries()) {
    const reference = await referenceOf(t);
    log(`[${i + 1}/${todo.length}] ${t.source.role} ${t.source.attack} seed ${t.source.seed} (${t.source.sweep}/${t.source.cellId}) ...`);
    const { report: audit, seconds } = await auditModel(o, t, reference.ref);
    const row: DetectionRow = { ...detectionRow(t.source, audit, seconds), strip: await stripOn(o.store, t, reference.images) };
    // a model audited again (its cell re-ran with a new f_std) replaces its old row
    report.rows = [...report.rows.filter((r) => r.key !== row.key), row];
    run.finishedAt = new Date().toISOString();
    run.loadAverage.end = os.loadavg();
    await writeReport(o.outDir, report);
    const strip = row.strip ? `; STRIP flags ${row.strip.map((r) => `${r.flagged}/${r.inputs} (${r.blend})`).join(', ')} triggered inputs` : '';
    log(`  ${row.verdict} in ${seconds.toFixed(0)} s${row.flaggedClass === undefined ? '' : `, class ${row.flaggedClass}`}${row.trueTarget === undefined ? '' : ` (target ${row.trueTarget})`}${strip}`);
  }
  return { report, audited: todo.length, skipped: targets.length - todo.length, stripFilled: stripLate.length };
}

// --- command line ------------------------------------------------------------------------

const USAGE = `usage: node dist/bench/auditDetection.js --sweep NAME [--clean-sweep NAME] --out DIR [--policy FILE]
                                        [--reference-size N] [--reference-seed N] [--address HOST:PORT]
       node dist/bench/auditDetection.js clean-data --spec FILE --seed N --out-dir DIR [--attack NAME]`;

const CLEAN_DATA_OPTIONS: OptionSpecs = Object.fromEntries(['spec', 'seed', 'out-dir', 'attack'].map((n) => [n, { type: 'string' }]));
const DETECTION_OPTIONS: OptionSpecs = Object.fromEntries(
  ['sweep', 'clean-sweep', 'out', 'policy', 'reference-size', 'reference-seed', 'address'].map((n) => [n, { type: 'string' }]),
);

/** The options of `clean-data` (argv after the word) or, with command 'detection', of the detection run; a bad one throws UsageError (exit code 2). */
export function parseOptions(command: 'clean-data' | 'detection', argv: string[]): BenchArgs {
  return parseBenchArgs(argv, command === 'clean-data' ? CLEAN_DATA_OPTIONS : DETECTION_OPTIONS, USAGE);
}

/**
 * clean-data: the clean counterpart of a spec's seed (train.ntds with true labels, clean.ntds,
 * test.ntds). With --attack NAME: the protection-mode view of that attack's cells instead, the
 * poisoned training set as their standard training sees it (bench/specs/ntml-protection-dev.yaml).
 */
async function cleanDataCommand(argv: string[]): Promise<void> {
  const a = parseOptions('clean-data', argv);
  for (const n of ['spec', 'seed', 'out-dir']) if (!a.has(n)) throw new DetectionInputError(`clean-data: missing --${n}\n${USAGE}`);
  const o = { spec: a.text('spec', ''), outDir: a.text('out-dir', ''), attack: a.text('attack') };
  const { readConfigFile, substituteAutoData } = await import('../cli/config');
  const raw = readConfigFile(o.spec) as { base?: Record<string, unknown> };
  if (!raw?.base || typeof raw.base !== 'object') throw new DetectionInputError(`${o.spec}: base: required (an evaluation-mode sweep spec)`);
  const { raw: base, choice } = substituteAutoData(raw.base, process.env, `${o.spec}: base`);
  const { cleanCounterpart, poisonedCounterpart, writeCleanCounterpart } = await import('./cleanCounterpart');
  const seed = a.integer('seed', 0, 0);
  const data = o.attack ? await poisonedCounterpart(base, seed, { name: o.attack }) : await cleanCounterpart(base, seed);
  const files = await writeCleanCounterpart(data, o.outDir);
  const what = 'poisoned' in data ? `${o.attack}'s poisoned set (${data.poisoned} poisoned)` : 'clean counterpart';
  process.stderr.write(`${choice ? `${choice}\n` : ''}${what} of ${o.spec}, seed ${seed}: ${data.train.labels.length} training images, ${data.clean.labels.length} clean, ${data.test.labels.length} test\n`);
  process.stdout.write(`${Object.values(files).join('\n')}\n`);
}

async function detectionCommand(argv: string[]): Promise<void> {
  const a = parseOptions('detection', argv);
  const o = { sweep: a.text('sweep'), cleanSweep: a.text('clean-sweep'), out: a.text('out'), policy: a.text('policy'), address: a.text('address') };
  if (!o.sweep || !o.out) throw new DetectionInputError(`missing ${o.sweep ? '--out' : '--sweep'}\n${USAGE}`);
  // half of it are STRIP's overlays, at least its overlays per input
  const referenceSize = a.integer('reference-size', 500, 50);
  const referenceSeed = a.integer('reference-seed', 0, 0);
  const { readConfigFile } = await import('../cli/config');
  const policy = o.policy ? readConfigFile(o.policy) : {};
  const policyCheck = AuditPolicy.safeParse(policy);
  if (!policyCheck.success) throw new DetectionInputError(`${o.policy}: the audit policy is invalid:\n  ${formatIssues(policyCheck.error).join('\n  ')}`);
  const { connect, queueOptions } = await import('../cli/connection');
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const c = await connect({ address: o.address, needsWorkers: true, log });
  try {
    const { storeFromEnv } = await import('../store');
    const result = await runAuditDetection({
      client: c.client,
      queues: { orchestration: c.queues.orchestration, training: queueOptions(c.queues)?.trainingTaskQueue },
      store: storeFromEnv(),
      sweeps: { backdoored: o.sweep, clean: o.cleanSweep },
      policy,
      referenceSize,
      referenceSeed,
      outDir: o.out,
      command: ['node', path.relative(process.cwd(), process.argv[1]), ...process.argv.slice(2)].join(' '),
      log,
    });
    log(`audited ${result.audited}, skipped ${result.skipped} already in the report; ${path.join(o.out, 'report.md')}`);
    process.stdout.write(detectionMarkdown(result.report));
  } finally {
    await c.close();
  }
}

async function main(argv: string[]): Promise<number> {
  try {
    if (argv[0] === 'clean-data') await cleanDataCommand(argv.slice(1));
    else await detectionCommand(argv);
    return 0;
  } catch (err) {
    const { ConfigError } = await import('../schemas/purify');
    const { UsageError } = await import('../cli/errors');
    if (err instanceof DetectionInputError || err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`auditDetection: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`auditDetection: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => process.exit(code));
}

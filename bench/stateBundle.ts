/**
 * The benchmark's own state in git (bench/state/<spec>.ntmlb, bench/state/README.md): a bundle of
 * a cpu-tier sweep's expensive stages (backdoored models, NT-ML's and the baselines' trained
 * models) and its finished cell records, with no data set in it. bench/run-cpu.sh imports it
 * before a sitting and writes it again after (`node dist/bench/stateBundle.js export ...`).
 *
 * What stays out, and why (each is regenerated from the seed with the same digests, so the
 * later stages' cache keys still match):
 * - prepareData: the data sets and poisoned copies (and Narcissus's learned trigger, stored
 *   inline in its poison record). Its key hashes the data's content, not the folder's path, so
 *   a trigger still being optimised (its checkpoint exported with `--in-progress`) continues on
 *   a machine whose CIFAR-10 copy lies elsewhere;
 * - a stage-cache entry whose output carries data (`output.data`): Input-Aware's standard
 *   training is the attacker's run and its entry references the poisoned training set and the
 *   clean splits it materialised. Its backdoored model still comes with the cells' reports, and
 *   the run's final checkpoint comes in its place (store/inProgress.ts finalCheckpoints), cut to
 *   what materialising the outputs needs (bench/finishedCheckpoints.ts: both generators and the
 *   RNG positions at the last epoch, the classifier by reference to that backdoored model, no
 *   optimiser state, no data set), listed in the manifest's `selection.leftOutCheckpoints`. On a fresh store the
 *   stage then resumes at its last epoch: it trains no epoch, materialises the poisoned set
 *   from the restored generators with the same digests, and stores the entry again, so every
 *   later stage's key matches the imported entries.
 * With `--in-progress` (run-cpu.sh passes it) it also holds the newest checkpoint of each stage the
 * sweep's unfinished cells were running (store/inProgress.ts): a stage of 2-3 hours (Input-Aware's
 * attacker run, Narcissus) never ends within one sitting, and a sitting on a fresh machine then
 * continues it instead of starting it again from epoch 0.
 * The bundle is checked before it is written: no artifact may be an encoded data set, and no
 * record or JSON artifact may name a file:// location (a filesystem store's absolute paths).
 *
 * Only the cells the stored spec lists count: records under superseded ids (an older protocol's,
 * path-hashed ids) and whatever only they reach stay out. With `--base FILE` (repeatable) what a
 * base bundle carries is left out and relied on (store/bundleBases.ts); `check DIR` verifies that
 * every bundle's bases still carry it. With `--keep-stages LIST|none` only the cell records and
 * the listed stages go in, and the purified models no kept entry carries are left out
 * (`selection.leftOutModels`): a fresh store still finds those cells finished and reports them,
 * but cannot load their purified models (bench/state/README.md, "Budget").
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { DATASET_MAGIC } from '../core/data/codec';
import {
  assertNoCycle,
  atomicWriteFile,
  baseCarries,
  bundleSetProblems,
  collectBundle,
  decodeBundle,
  encodeBundle,
  leaveOutBases,
  finalCheckpoints,
  inProgressExport,
  sha256Hex,
  sweepRecordKeys,
  type ArtifactStore,
  type BundleContent,
  type InProgressExport,
  type NamedBundle,
} from '../store';
import { cutFinalCheckpoints } from './finishedCheckpoints';

/** The selection: cell records, every stage-cache stage but prepareData, and the learned triggers. */
export const BENCH_STATE_STAGES = [
  'cells',
  'standardTraining',
  'nonTargetLabels',
  'teacherTraining',
  'ntTraining',
  'mutualLearning',
  'splitPlan',
  'splitDistillation',
  'defense',
  // Narcissus's learned trigger (16 KiB inline): a sitting at another rate poisons with it instead of learning it again
  'learnedTrigger',
] as const;

/** The stages `--keep-stages` may name (all of BENCH_STATE_STAGES but the cell records, always kept). */
export const KEEPABLE_STAGES = BENCH_STATE_STAGES.filter((s) => s !== 'cells');

/** The state committed to git must stay under this (issue 21). */
export const BENCH_STATE_BUDGET_BYTES = 60 * 2 ** 20;

export class BenchStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BenchStateError';
  }
}

export interface BenchState {
  content: BundleContent;
  /** cache records left out because their output carries data sets */
  leftOut: string[];
  /** the final checkpoint of each left-out entry's computation, exported in its place */
  leftOutCheckpoints: LeftOutCheckpoint[];
  cells: number;
  /**
   * the data folders the cells' configs name (`data.path`, absolute: `format: auto` resolves
   * NTML_CIFAR10_DIR). Cell ids hash the data's content, not this path, so a sitting finds these
   * cells with the same bytes in any folder (bench/state/README.md).
   */
  dataPaths: string[];
  /** the stages in progress exported (with `inProgress`) */
  inProgress?: InProgressExport;
  /** purified models left out by `keepStages` (no kept entry carries them) */
  leftOutModels: Array<{ cell: string; sha256: string; bytes: number }>;
}

export interface BenchStateOptions {
  /** also the newest checkpoint of each stage the sweep's unfinished cells were running */
  inProgress?: boolean;
  /** leave out what these bundles carry, and name them as bases */
  bases?: NamedBundle[];
  /** keep only the cell records and these stages' entries (undefined: every stage of BENCH_STATE_STAGES) */
  keepStages?: readonly string[];
}

/** A left-out cache entry's final checkpoint, as the manifest lists it. */
export interface LeftOutCheckpoint {
  /** checkpoints/stage/<stage key>/<phase> */
  record: string;
  /** the cache entry it stands for */
  entry: string;
  epoch: number;
  sha256: string;
  bytes: number;
}

const datasetMagic = Buffer.from(DATASET_MAGIC, 'latin1');
const startsWithJson = (b: Uint8Array) => {
  let i = 0;
  while (i < b.length && (b[i] === 0x20 || b[i] === 0x0a || b[i] === 0x0d || b[i] === 0x09)) i++;
  return b[i] === 0x7b || b[i] === 0x5b;
};

/**
 * Reads sweep `sweep`'s portable state from `store` and checks it holds no data and no local paths;
 * `inProgress`: with the newest checkpoint of each stage its unfinished cells were running.
 */
export async function collectBenchState(store: ArtifactStore, sweep: string, options: BenchStateOptions = {}): Promise<BenchState> {
  for (const s of options.keepStages ?? []) {
    if (!(KEEPABLE_STAGES as readonly string[]).includes(s)) throw new BenchStateError(`--keep-stages: unknown stage "${s}" (expected some of ${KEEPABLE_STAGES.join(', ')}, or none)`);
  }
  const stages = options.keepStages ? ['cells', ...options.keepStages] : [...BENCH_STATE_STAGES];
  const selection = await sweepRecordKeys(store, sweep, new Set<string>(stages), { currentCellsOnly: true });
  const keep: string[] = [];
  const leftOut: string[] = [];
  for (const key of selection.recordKeys) {
    if (key.startsWith('cache/')) {
      const entry = await store.getRecord<{ output?: { data?: unknown } }>(key);
      if (entry?.output?.data !== undefined) {
        leftOut.push(key);
        continue;
      }
    }
    keep.push(key);
  }
  const running = options.inProgress ? await inProgressExport(store, new Set(selection.unfinishedCells)) : undefined;
  // what makes a left-out stage cheap on a fresh store: its final checkpoint (no data set in it)
  // an entry the store does not hold is one a bundle left out before (this store imported it) or
  // one the store lost: its final checkpoint, imported with that bundle, stands for it again,
  // else a re-export from a fresh machine would drop what makes the stage cheap there
  const missing = selection.missingCacheEntries.map((m) => m.split(' ')).map(([stage, key]) => `cache/${stage}/${key}`);
  const entryOf = new Map([...leftOut, ...missing].map((k) => [k.split('/')[2], k]));
  const found = await finalCheckpoints(store, new Set(entryOf.keys()));
  // cut to what materialising the run's outputs needs: no optimiser state, the classifier by reference
  const finals = { checkpoints: await cutFinalCheckpoints(store, found.checkpoints, entryOf, selection.recordKeys.filter((k) => k.includes('/cells/'))) };
  const provided = new Map(finals.checkpoints.flatMap((c) => (c.data ? [[c.checkpoint.sha256, c.data] as const] : [])));
  const leftOutCheckpoints: LeftOutCheckpoint[] = finals.checkpoints.map((c) => ({
    record: c.key,
    entry: entryOf.get(c.computation)!,
    epoch: c.epoch,
    sha256: c.checkpoint.sha256,
    bytes: c.checkpoint.bytes,
  }));
  const values = new Map<string, unknown>([...(running?.values ?? []), ...finals.checkpoints.map((c) => [c.key, c.value] as const)]);
  const recordKeys = [...keep, ...(running?.recordKeys ?? []), ...finals.checkpoints.map((c) => c.key)];
  // a model a base carries is relied on, not left out: a fresh store gets it with the base
  const baseArtifacts = new Set((options.bases ?? []).flatMap((b) => [...baseCarries(b.content).artifacts]));
  const leftOutModels = options.keepStages ? (await modelsNoEntryCarries(store, recordKeys, values, provided)).filter((m) => !baseArtifacts.has(m.sha256)) : [];
  const full = await collectBundle(
    store,
    recordKeys,
    {
      sweep,
      stages: [...stages].sort(),
      benchState: true,
      ...(options.keepStages ? { keepStages: [...options.keepStages].sort() } : {}),
      ...(running ? { inProgress: running.manifest } : {}),
      ...(leftOutCheckpoints.length ? { leftOutCheckpoints } : {}),
      ...(leftOutModels.length ? { leftOutModels } : {}),
    },
    values,
    new Set(leftOutModels.map((m) => m.sha256)),
    provided,
  );
  for (const a of full.artifacts) {
    if (Buffer.from(a.data.buffer, a.data.byteOffset, Math.min(a.data.byteLength, datasetMagic.length)).equals(datasetMagic)) {
      throw new BenchStateError(`artifact ${a.sha256} (${a.data.byteLength} bytes) is a data set: bench state never holds data sets or poisoned copies`);
    }
  }
  const named = [...full.records.map((r) => ({ what: `record ${r.key}`, data: r.data })), ...full.artifacts.map((a) => ({ what: `artifact ${a.sha256}`, data: a.data }))];
  for (const { what, data } of named) {
    if (startsWithJson(data) && Buffer.from(data.buffer, data.byteOffset, data.byteLength).includes('file://')) {
      throw new BenchStateError(`${what} names a file:// location: export bench state from the S3 store (the embedded stack's), not a filesystem store`);
    }
  }
  const content = leaveOutBases(full, options.bases ?? []);
  const dataPaths = new Set<string>();
  for (const r of full.records) {
    if (!r.key.includes('/cells/')) continue;
    const path = (JSON.parse(Buffer.from(r.data).toString('utf8')) as { config?: { data?: { path?: unknown } } }).config?.data?.path;
    if (typeof path === 'string') dataPaths.add(path);
  }
  return { content, leftOut, leftOutCheckpoints, leftOutModels, cells: selection.cells, dataPaths: [...dataPaths].sort(), ...(running ? { inProgress: running } : {}) };
}

/**
 * The purified models of the cells among `recordKeys` that no other record of them reaches (a
 * kept stage entry carries the model it produced; a cell without defense's model is the
 * backdoored one). Reads the closure of the non-cell records; a cell's model that is not in the
 * store (left out by an earlier export under the same policy) is left out again.
 */
async function modelsNoEntryCarries(
  store: ArtifactStore,
  recordKeys: string[],
  values: ReadonlyMap<string, unknown>,
  provided: ReadonlyMap<string, Uint8Array>,
): Promise<BenchState['leftOutModels']> {
  const isCell = (k: string) => k.includes('/cells/');
  const carried = await collectBundle(store, recordKeys.filter((k) => !isCell(k)), {}, values, new Set(), provided);
  const reached = new Set(carried.artifacts.map((a) => a.sha256));
  const out = new Map<string, BenchState['leftOutModels'][number]>();
  for (const key of recordKeys.filter(isCell).sort()) {
    const cell = await store.getRecord<{ cellId?: string; purifiedModel?: { sha256?: unknown; bytes?: unknown } }>(key);
    const model = cell?.purifiedModel;
    if (!model || typeof model.sha256 !== 'string' || reached.has(model.sha256) || out.has(model.sha256)) continue;
    out.set(model.sha256, { cell: cell.cellId ?? key.slice(key.lastIndexOf('/') + 1), sha256: model.sha256, bytes: typeof model.bytes === 'number' ? model.bytes : 0 });
  }
  return [...out.values()];
}

/** Every bundle (*.ntmlb) of `dir`, verified, by file name. */
async function readBundleDir(dir: string): Promise<NamedBundle[]> {
  const names = (await fsp.readdir(dir)).filter((n) => n.endsWith('.ntmlb')).sort();
  return Promise.all(names.map(async (name) => ({ name, content: await decodeBundle(await fsp.readFile(path.join(dir, name)), path.join(dir, name)) })));
}

/** Problems of the bundles of `dir` as a set that relies on its bases (store/bundleBases.ts bundleSetProblems). */
export async function checkStateDir(dir: string): Promise<{ bundles: NamedBundle[]; problems: Array<{ bundle: string; message: string }> }> {
  const bundles = await readBundleDir(dir);
  return { bundles, problems: bundleSetProblems(bundles) };
}

/**
 * Writes the state bundle to `out`, replacing the one an earlier sitting wrote (run-cpu.sh re-exports
 * on purpose; `ntml store export` needs --force for that); returns its size and digest.
 */
export async function exportBenchState(
  store: ArtifactStore,
  sweep: string,
  out: string,
  options: BenchStateOptions = {},
): Promise<BenchState & { bytes: number; sha256: string }> {
  const bases = options.bases ?? [];
  await assertNoCycle(path.basename(out), bases, async (file) => {
    const bytes = await fsp.readFile(path.join(path.dirname(out), file)).catch(() => undefined);
    return bytes ? decodeBundle(bytes, file) : undefined;
  });
  const state = await collectBenchState(store, sweep, options);
  const file = encodeBundle(state.content);
  await atomicWriteFile(out, file);
  return { ...state, bytes: file.byteLength, sha256: sha256Hex(file) };
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

const USAGE = 'export --sweep NAME --out FILE [--in-progress] [--base FILE ...] [--keep-stages LIST|none] | check DIR | size DIR';

/** node dist/bench/stateBundle.js export ... | check DIR | size DIR (USAGE) */
async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const opt = (name: string) => {
    const i = rest.indexOf(`--${name}`);
    return i >= 0 ? rest[i + 1] : undefined;
  };
  const opts = (name: string) => rest.flatMap((a, i) => (a === `--${name}` && rest[i + 1] !== undefined ? [rest[i + 1]] : []));
  if (command === 'export') {
    const sweep = opt('sweep');
    const out = opt('out');
    if (!sweep || !out) throw new BenchStateError(`usage: stateBundle ${USAGE}`);
    const keep = opt('keep-stages');
    const keepStages = keep === undefined ? undefined : keep === 'none' ? [] : keep.split(',').map((x) => x.trim()).filter(Boolean);
    const { withStore } = await import('../cli/store');
    const { readBaseBundles, reportBases, reportInProgress } = await import('../cli/storeBundle');
    const bases = await readBaseBundles(opts('base'), path.dirname(out));
    await withStore(process, async (store) => {
      const s = await exportBenchState(store, sweep, out, { inProgress: rest.includes('--in-progress'), bases, keepStages });
      if (s.inProgress) reportInProgress(s.inProgress, process);
      reportBases(s.content.manifest.selection, process);
      if (s.leftOutModels.length) {
        const bytes = s.leftOutModels.reduce((n, m) => n + m.bytes, 0);
        process.stderr.write(`left out ${s.leftOutModels.length} purified models of finished cells (${mib(bytes)}; --keep-stages ${keep}): the cells stay finished and reported, their models are not loadable elsewhere\n`);
      }
      for (const k of s.leftOut) {
        const finals = s.leftOutCheckpoints.filter((c) => c.entry === k);
        const carried = finals.length
          ? `; in its place its final checkpoint${finals.length > 1 ? 's' : ''} ${finals.map((c) => `${c.record} (epoch ${c.epoch}, ${mib(c.bytes)})`).join(', ')}: a fresh store resumes the stage at its last epoch`
          : '; no checkpoint of it is in the store: a fresh store reruns the stage';
        process.stderr.write(`left out ${k}: its output carries data sets (regenerated from the seed)${carried}\n`);
      }
      for (const p of s.dataPaths) process.stderr.write(`note: the cells ran on the data folder ${p}; a later sitting finds them with the same bytes in any folder (cell ids hash the content)\n`);
      process.stdout.write(`wrote ${out}: ${s.cells} cells, ${s.content.records.length} records, ${s.content.artifacts.length} artifacts, ${mib(s.bytes)}, sha256 ${s.sha256}\n`);
    });
    return 0;
  }
  if (command === 'check') {
    const dir = rest[0];
    if (!dir) throw new BenchStateError('usage: stateBundle check DIR');
    const { bundles, problems } = await checkStateDir(dir);
    for (const p of problems) process.stderr.write(`check: ${p.message}\n`);
    // one line per bundle to export again (run-cpu.sh reads them)
    for (const name of new Set(problems.map((p) => p.bundle))) process.stdout.write(`stale: ${name}\n`);
    const withBases = bundles.filter((b) => Array.isArray(b.content.manifest.selection.bases) && (b.content.manifest.selection.bases as unknown[]).length);
    process.stdout.write(`${dir}: ${bundles.length} bundles, ${withBases.length} exported against bases, ${problems.length ? `${problems.length} problems` : 'every relied-on entry is carried by its base'}\n`);
    return problems.length ? 4 : 0;
  }
  if (command === 'size') {
    const dir = rest[0];
    if (!dir) throw new BenchStateError('usage: stateBundle size DIR');
    let total = 0;
    for (const name of await fsp.readdir(dir)) total += (await fsp.stat(`${dir}/${name}`)).size;
    const over = total > BENCH_STATE_BUDGET_BYTES;
    process.stdout.write(`${dir}: ${mib(total)} of the ${mib(BENCH_STATE_BUDGET_BYTES)} budget\n`);
    if (over) process.stderr.write(`\n!!! ${dir} is OVER its ${mib(BENCH_STATE_BUDGET_BYTES)} budget (${mib(total)}): do not commit it; drop stages or cells first (bench/state/README.md) !!!\n\n`);
    return over ? 3 : 0;
  }
  throw new BenchStateError(`unknown command ${JSON.stringify(command)}: ${USAGE}`);
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`stateBundle: ${err instanceof Error && err.name !== 'Error' ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}

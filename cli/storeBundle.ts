/**
 * `ntml store export|import`: a sweep's state (cell records, stage-cache entries and the
 * artifacts they reference) as one bundle file, loaded into any store (docs/bundles.md).
 * The specs are light; the handlers load the store and the bundle code when they run.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { flag, stackDirOption, stringOption, type CommandSpec, type ParsedArgs } from './args';
import { UsageError, UserError } from './errors';
import type { Io } from './purify';
import { withStore } from './store';

export const storeExportSpec: CommandSpec = {
  name: 'store export',
  brief: 'write a sweep (or chosen stages of it) to one bundle file',
  summary: "Write a sweep's cell records, the stage-cache entries its cells used and every artifact they reference to one bundle file.",
  synopsis: ['ntml store export --sweep NAME --out FILE [options]'],
  options: [
    { name: 'sweep', value: 'NAME', help: 'the sweep (its spec name)' },
    { name: 'out', value: 'FILE', help: 'the bundle file to write (e.g. sweep.ntmlb)' },
    {
      name: 'stages',
      value: 'LIST',
      help: 'comma-separated: "cells" (the spec and cell records) and/or stage-cache\nstages (prepareData, standardTraining, ..., learnedTrigger); default: all of them',
    },
    {
      name: 'in-progress',
      help: "also the stages in progress of the sweep's unfinished cells: the newest\ncheckpoint of each, so a sweep started after the import continues them",
    },
    {
      name: 'base',
      value: 'FILES',
      help: 'comma-separated bundles in the folder of FILE: leave out what they carry;\nthe bundle names them, and imports only after them',
    },
    { name: 'force', help: 'replace FILE if it exists (e.g. a newer export of the same sweep)' },
    stackDirOption,
  ],
  details: `The bundle is deterministic: the same records and artifacts give the same bytes.
Only completed cells are exported. With --in-progress, so are the training checkpoints of
stages the unfinished cells were running (only the newest of each; none of a stage that has
finished since, whose output is exported instead). Import it elsewhere with "ntml store import FILE".
An existing FILE is kept unless --force; the file is written whole or not at all.
The store comes from $NTML_STORE / $NTML_S3_* (else the local stack's).`,
};

export const storeImportSpec: CommandSpec = {
  name: 'store import',
  brief: 'load a bundle into the store (verified first; skips what is there)',
  summary: 'Load a bundle written by "ntml store export" into the store (filesystem or S3).',
  positionals: [{ name: 'FILE', help: 'the bundle file' }],
  options: [stackDirOption],
  details: `Every entry's size and sha256 and the manifest are checked before anything is written; a
tampered or truncated bundle is refused, naming the bad entry. Artifacts and records the store
already holds are skipped; a record it holds with other content is kept and listed, except a
stage's checkpoint list that the bundle's reaches further: that one gets the newer checkpoint.
After the import, "ntml sweep start" with the same spec reuses what was imported.`,
};

function parseStages(value: string | undefined, known: readonly string[]): Set<string> | undefined {
  if (value === undefined) return undefined;
  const stages = value.split(',').map((s) => s.trim()).filter(Boolean);
  if (stages.length === 0) throw new UsageError('--stages needs at least one stage');
  for (const s of stages) {
    if (!known.includes(s)) throw new UsageError(`--stages: unknown stage "${s}" (expected ${known.join(', ')})`);
  }
  return new Set(stages);
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

/**
 * Reads the bundle files `files` (verified) as bases of a bundle written to `folder`: they must
 * lie there, since dependents name their bases by file name and are imported from one folder.
 */
export async function readBaseBundles(files: string[], folder: string): Promise<import('../store').NamedBundle[]> {
  const { decodeBundle } = await import('../store/bundle');
  const out: import('../store').NamedBundle[] = [];
  for (const file of files) {
    if (path.resolve(path.dirname(file)) !== path.resolve(folder)) {
      throw new UserError(`--base ${file}: a base must lie in the folder of the bundle it is a base of (${folder}): the bundles are imported from one folder`);
    }
    const bytes = await fsp.readFile(file).catch((err: Error) => {
      throw new UserError(`--base ${file}: cannot read it: ${err.message}`);
    });
    out.push({ name: path.basename(file), content: await decodeBundle(bytes, file) });
  }
  return out;
}

/** One line per base the bundle relies on. */
export function reportBases(selection: Record<string, unknown>, io: Pick<Io, 'stderr'>): void {
  for (const b of (Array.isArray(selection.bases) ? selection.bases : []) as import('../store').BundleBaseReliance[]) {
    io.stderr.write(`relies on ${b.bundle}: ${b.artifacts.length} artifacts and ${b.records.length} records it carries are left out (import ${b.bundle} first)\n`);
  }
}

/** One line per stage in progress that goes into the bundle (and per one that does not, and why). */
export function reportInProgress(running: import('../store').InProgressExport, io: Pick<Io, 'stderr'>): void {
  for (const c of running.selection.checkpoints) {
    io.stderr.write(`in progress: ${c.key} at epoch ${c.epoch} (cell ${c.cellId}, checkpoint ${c.checkpoint.bytes} bytes)\n`);
  }
  for (const k of running.selection.finished) io.stderr.write(`note: ${k} belongs to a stage that has finished since; its output is exported, not the checkpoint\n`);
  for (const k of running.selection.unreadable) io.stderr.write(`note: no checkpoint of ${k} verifies in the store; not exported\n`);
  for (const k of running.learnedTriggers) io.stderr.write(`in progress: ${k}, the learned trigger an unfinished cell made (its later stages had not finished)\n`);
  io.stderr.write(`stages in progress: ${running.selection.checkpoints.length} checkpoints, ${mib(running.bytes)}\n`);
}

export async function storeExport(args: ParsedArgs, io: Io): Promise<number> {
  const sweep = stringOption(args, 'sweep');
  const out = stringOption(args, 'out');
  if (!sweep) throw new UsageError('--sweep NAME is required');
  if (!out) throw new UsageError('--out FILE is required');
  // checked before the store is read: a bundle may be the only copy of a sweep's state
  if (!flag(args, 'force') && (await fsp.stat(out).catch(() => undefined))) throw new UserError(`${out} exists; pass --force to replace it`, 2);
  const { CELLS_SELECTION, LEARNED_TRIGGER_STAGE, sweepRecordKeys, SweepStateError } = await import('../store/sweepState');
  const stagesOption = stringOption(args, 'stages');
  // the stage names are the stage cache's own (its declarations module imports types only)
  const known = stagesOption === undefined ? [] : (await import('../activities/stageDeclarations')).cachedStageNames;
  const stages = parseStages(stagesOption, [CELLS_SELECTION, ...known, LEARNED_TRIGGER_STAGE]);
  const inProgress = flag(args, 'in-progress');
  const { BundleError, collectBundle, encodeBundle } = await import('../store/bundle');
  const { assertNoCycle, atomicWriteFile, BundleBaseError, decodeBundle, inProgressExport, leaveOutBases, sha256Hex } = await import('../store');
  const baseFiles = (stringOption(args, 'base') ?? '').split(',').map((f) => f.trim()).filter(Boolean);
  await withStore(io, async (store) => {
    try {
      const bases = await readBaseBundles(baseFiles, path.dirname(out));
      await assertNoCycle(path.basename(out), bases, async (file) => {
        const bytes = await fsp.readFile(path.join(path.dirname(out), file)).catch(() => undefined);
        return bytes ? decodeBundle(bytes, file) : undefined;
      });
      const selection = await sweepRecordKeys(store, sweep, stages);
      for (const m of selection.missingCacheEntries) io.stderr.write(`note: stage-cache entry ${m} is no longer in the store; not exported\n`);
      const running = inProgress ? await inProgressExport(store, new Set(selection.unfinishedCells)) : undefined;
      if (running) reportInProgress(running, io);
      const content = leaveOutBases(
        await collectBundle(
          store,
          [...selection.recordKeys, ...(running?.recordKeys ?? [])],
          { sweep, stages: stages ? [...stages].sort() : 'all', ...(running ? { inProgress: running.manifest } : {}) },
          running?.values,
        ),
        bases,
      );
      reportBases(content.manifest.selection, io);
      const file = encodeBundle(content);
      await atomicWriteFile(out, file);
      const caches = Object.entries(selection.cacheEntries).map(([s, n]) => `${s} ${n}`).join(', ') || 'none';
      const artifactBytes = content.artifacts.reduce((n, a) => n + a.data.byteLength, 0);
      io.stdout.write(
        `wrote ${out}: ${content.records.length} records (${stages === undefined || stages.has(CELLS_SELECTION) ? selection.cells : 0} cells; ` +
          `stage-cache entries: ${caches}), ${content.artifacts.length} artifacts (${mib(artifactBytes)}), ` +
          `${mib(file.byteLength)} compressed, sha256 ${sha256Hex(file)}\n`,
      );
    } catch (err) {
      if (err instanceof BundleError || err instanceof SweepStateError || err instanceof BundleBaseError) throw new UserError(err.message);
      throw err;
    }
  });
  return 0;
}

export async function storeImport(args: ParsedArgs, io: Io): Promise<number> {
  const file = args.positionals[0];
  let bytes: Buffer;
  try {
    bytes = await fsp.readFile(file);
  } catch (err) {
    throw new UserError(`cannot read bundle ${file}: ${(err as Error).message}`);
  }
  const { BundleError, decodeBundle, importBundle } = await import('../store/bundle');
  // verify the whole file before a store is even opened
  let content;
  try {
    content = await decodeBundle(bytes, file);
  } catch (err) {
    if (err instanceof BundleError) throw new UserError(`${err.message}; nothing was written`);
    throw err;
  }
  await withStore(io, async (store) => {
    let r;
    try {
      r = await importBundle(store, content);
    } catch (err) {
      if (err instanceof BundleError) throw new UserError(err.message);
      throw err;
    }
    io.stdout.write(
      `imported ${file} into ${store.location}: artifacts ${r.artifactsWritten} written, ${r.artifactsSkipped} already there; ` +
        `records ${r.recordsWritten} written, ${r.recordsSkipped} already there (${mib(r.bytesWritten)} written)\n`,
    );
    for (const key of r.recordsKept) io.stderr.write(`kept the store's own record ${key} (the bundle's differs)\n`);
    for (const key of r.checkpointsAdvanced) io.stderr.write(`advanced the checkpoint list ${key} to the bundle's newer checkpoint\n`);
    const leftOut = content.manifest.selection.leftOutModels;
    if (Array.isArray(leftOut) && leftOut.length) {
      io.stderr.write(`note: the bundle left out ${leftOut.length} purified models of finished cells (--keep-stages): those cells count as finished and report, their models are not in this store\n`);
    }
  });
  return 0;
}

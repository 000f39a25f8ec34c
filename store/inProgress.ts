/**
 * A sweep's stages in progress, for `ntml store export --in-progress`: the training checkpoints
 * of the cacheable computations its unfinished cells were running, so that a sitting on another
 * machine continues them instead of starting again from epoch 0.
 *
 * A cacheable computation files its checkpoints under its stage key,
 * `checkpoints/stage/<stage key>/<phase>` (activities/checkpointing.ts), as a list of
 * {epoch, checkpoint, workflowId}. The key is a function of the stage's inputs alone, so after an
 * import the same spec computes the same key on any store and resumes from the list. Each entry
 * names the workflow that wrote it; a sweep cell's child workflow is `<sweep workflow>--<cell id>`,
 * which is how the entries of this sweep's cells are told from other runs'. A cell id hashes the
 * cell's whole config, so the same id in another sweep is the same cell: its work counts too.
 *
 * Only the newest verifying checkpoint of each phase is exported (the list is cut to it: a resume
 * takes the newest anyway), and none of a computation whose stage has finished (its cache entry is
 * in the store): the finished output is what a sweep then reads.
 */
import type { ArtifactRef, ArtifactStore } from './types';
import { isSha256 } from './keys';
import { LEARNED_TRIGGER_STAGE } from './sweepState';

export const STAGE_CHECKPOINT_PREFIX = 'checkpoints/stage/';

interface CheckpointEntryShape {
  epoch: number;
  checkpoint: ArtifactRef;
  workflowId?: string;
  /** bench state's cut of a finished run's final checkpoint (bench/finishedCheckpoints.ts) */
  finished?: boolean;
}

export interface InProgressCheckpoint {
  /** the record, checkpoints/stage/<stage key>/<phase> */
  key: string;
  /** the record as exported: the newest verifying entry alone */
  value: CheckpointEntryShape[];
  /** the stage key of the computation */
  computation: string;
  /** the activity's phase (standard, teacher, nt, student, a learned trigger's name, ...) */
  phase: string;
  epoch: number;
  checkpoint: ArtifactRef;
  /** the sweep cell whose workflow wrote the newest entry of this sweep */
  cellId: string;
}

export interface InProgressSelection {
  checkpoints: InProgressCheckpoint[];
  /** phases of this sweep whose computation has since finished (its cache entry is stored): not exported */
  finished: string[];
  /** phases of this sweep none of whose checkpoints verifies in the store: not exported */
  unreadable: string[];
}

function isEntry(v: unknown): v is CheckpointEntryShape {
  const e = v as Partial<CheckpointEntryShape> | null;
  return (
    !!e &&
    typeof e.epoch === 'number' &&
    !!e.checkpoint &&
    isSha256(e.checkpoint.sha256) &&
    typeof e.checkpoint.bytes === 'number' &&
    typeof e.checkpoint.uri === 'string'
  );
}

/** The cell of `cellIds` whose child workflow `workflowId` is, if any. */
/** The newest entry whose checkpoint verifies: the one a resume would take (undefined when none does). */
async function newestVerifying(store: ArtifactStore, entries: CheckpointEntryShape[]): Promise<CheckpointEntryShape | undefined> {
  for (const e of [...entries].sort((a, b) => b.epoch - a.epoch)) if (await store.verify(e.checkpoint)) return e;
  return undefined;
}

function cellOf(workflowId: string | undefined, cellIds: ReadonlySet<string>): string | undefined {
  if (!workflowId) return undefined;
  const at = workflowId.lastIndexOf('--');
  if (at < 0) return undefined;
  const id = workflowId.slice(at + 2);
  return cellIds.has(id) ? id : undefined;
}

/**
 * The stages in progress of the cells `unfinishedCells` (ids of sweep cells without a completed
 * record). Reads every stage-checkpoint record of the store once, and the cache listing once.
 */
export async function inProgressCheckpoints(store: ArtifactStore, unfinishedCells: ReadonlySet<string>): Promise<InProgressSelection> {
  const out: InProgressSelection = { checkpoints: [], finished: [], unreadable: [] };
  if (unfinishedCells.size === 0) return out;
  const finishedComputations = new Set<string>();
  for (const recordKey of await store.listRecords('cache/')) {
    const key = recordKey.split('/')[2];
    if (key) finishedComputations.add(key);
  }
  for (const key of (await store.listRecords(STAGE_CHECKPOINT_PREFIX)).sort()) {
    const [computation, phase, ...rest] = key.slice(STAGE_CHECKPOINT_PREFIX.length).split('/');
    if (!computation || !phase || rest.length) continue;
    const record = await store.getRecord<unknown>(key);
    if (!Array.isArray(record)) continue;
    const entries = record.filter(isEntry);
    const ours = entries.map((e) => cellOf(e.workflowId, unfinishedCells)).filter((c): c is string => c !== undefined);
    if (ours.length === 0) continue;
    if (finishedComputations.has(computation)) {
      out.finished.push(key);
      continue;
    }
    const chosen = await newestVerifying(store, entries);
    if (!chosen) {
      out.unreadable.push(key);
      continue;
    }
    out.checkpoints.push({
      key,
      value: [chosen],
      computation,
      phase,
      epoch: chosen.epoch,
      checkpoint: chosen.checkpoint,
      cellId: cellOf(chosen.workflowId, unfinishedCells) ?? ours[ours.length - 1],
    });
  }
  return out;
}

/**
 * A checkpoint list the store already holds, advanced by an imported one: the imported entries
 * replace the store's from their first epoch on, when they reach further; otherwise undefined
 * (the store's own list is as far along, and is kept).
 */
export function advanceCheckpointList(existing: unknown, imported: unknown): CheckpointEntryShape[] | undefined {
  if (!Array.isArray(imported)) return undefined;
  const incoming = imported.filter(isEntry);
  if (incoming.length === 0) return undefined;
  const held = Array.isArray(existing) ? existing.filter(isEntry) : [];
  const reach = (l: CheckpointEntryShape[]) => l.reduce((m, e) => Math.max(m, e.epoch), -1);
  if (reach(incoming) <= reach(held)) return undefined;
  const from = Math.min(...incoming.map((e) => e.epoch));
  return [...held.filter((e) => e.epoch < from), ...incoming].sort((a, b) => a.epoch - b.epoch);
}

/** What an export adds for the stages in progress: the records, their cut values, and the manifest's list. */
export interface InProgressExport {
  selection: InProgressSelection;
  /** learned-trigger entries the unfinished cells made (learnedTriggersOfCells), exported as they are */
  learnedTriggers: string[];
  recordKeys: string[];
  values: Map<string, unknown>;
  /** for the manifest's selection (`inProgress`): what each exported checkpoint is, and its size */
  manifest: Array<{ record: string; cell: string; epoch: number; sha256: string; bytes: number }>;
  /** the checkpoints' total size */
  bytes: number;
}

/**
 * The learned-trigger entries (cache/learnedTrigger/...) that the cells `unfinishedCells` made:
 * a cell whose prepareData finished its trigger but whose later stages did not has no checkpoint
 * in progress any more (the trigger's computation finished), and its prepareData output holds
 * data sets, which no bundle carries; the entry is then the only portable form of hours of
 * optimisation. Told by the workflow that made it (`madeBy.workflowId`, the cell's child workflow).
 */
export async function learnedTriggersOfCells(store: ArtifactStore, unfinishedCells: ReadonlySet<string>): Promise<string[]> {
  if (unfinishedCells.size === 0) return [];
  const out: string[] = [];
  for (const key of await store.listRecords(`cache/${LEARNED_TRIGGER_STAGE}/`)) {
    const entry = await store.getRecord<{ madeBy?: { workflowId?: unknown } }>(key);
    const workflowId = entry?.madeBy?.workflowId;
    if (typeof workflowId === 'string' && cellOf(workflowId, unfinishedCells)) out.push(key);
  }
  return out.sort();
}

export async function inProgressExport(store: ArtifactStore, unfinishedCells: ReadonlySet<string>): Promise<InProgressExport> {
  const selection = await inProgressCheckpoints(store, unfinishedCells);
  const c = selection.checkpoints;
  const triggers = await learnedTriggersOfCells(store, unfinishedCells);
  return {
    selection,
    learnedTriggers: triggers,
    recordKeys: [...c.map((x) => x.key), ...triggers],
    values: new Map(c.map((x) => [x.key, x.value])),
    manifest: c.map((x) => ({ record: x.key, cell: x.cellId, epoch: x.epoch, sha256: x.checkpoint.sha256, bytes: x.checkpoint.bytes })),
    bytes: c.reduce((n, x) => n + x.checkpoint.bytes, 0),
  };
}

/**
 * Whether a checkpoint list the store holds already lists every checkpoint of an imported one (its
 * own history, say). A finished run's cut final checkpoint counts as held where the store lists
 * that epoch: the store holds the full checkpoint it was cut from (the same computation's key).
 */
export function checkpointListHolds(existing: unknown, imported: unknown): boolean {
  if (!Array.isArray(existing) || !Array.isArray(imported)) return false;
  const held = existing.filter(isEntry);
  const exact = new Set(held.map((e) => `${e.epoch}:${e.checkpoint.sha256}`));
  const epochs = new Set(held.map((e) => e.epoch));
  const incoming = imported.filter(isEntry);
  return (
    incoming.length > 0 &&
    incoming.length === imported.length &&
    incoming.every((e) => exact.has(`${e.epoch}:${e.checkpoint.sha256}`) || (e.finished === true && epochs.has(e.epoch)))
  );
}

/**
 * The final checkpoints of finished computations whose cache entries a bench bundle leaves out
 * (their output carries data sets: Input-Aware's attacker run). A finished stage keeps its
 * checkpoint list in the store (only `ntml store gc` without keepCheckpoints reclaims it); its
 * newest entry holds everything the run ended with (for Input-Aware the classifier, both
 * generators, every optimiser's buffers and the RNG positions) and no data set. Imported into
 * a fresh store, it makes the same computation resume at its last epoch: it trains no epoch
 * and only materialises its outputs again, deterministically from the seed.
 * `computations`: the stage keys (cache/<stage>/<key>'s key). Returns each phase's record cut
 * to its newest verifying entry; `unreadable` lists records none of whose entries verifies.
 */
export async function finalCheckpoints(
  store: ArtifactStore,
  computations: ReadonlySet<string>,
): Promise<{ checkpoints: Array<Omit<InProgressCheckpoint, 'cellId'>>; unreadable: string[] }> {
  const out: { checkpoints: Array<Omit<InProgressCheckpoint, 'cellId'>>; unreadable: string[] } = { checkpoints: [], unreadable: [] };
  for (const computation of [...computations].sort()) {
    for (const key of (await store.listRecords(`${STAGE_CHECKPOINT_PREFIX}${computation}/`)).sort()) {
      const [, phase, ...rest] = key.slice(STAGE_CHECKPOINT_PREFIX.length).split('/');
      if (!phase || rest.length) continue;
      const record = await store.getRecord<unknown>(key);
      const chosen = await newestVerifying(store, Array.isArray(record) ? record.filter(isEntry) : []);
      if (!chosen) {
        out.unreadable.push(key);
        continue;
      }
      out.checkpoints.push({ key, value: [chosen], computation, phase, epoch: chosen.epoch, checkpoint: chosen.checkpoint });
    }
  }
  return out;
}

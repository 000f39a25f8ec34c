/**
 * What a sweep's state is in the store, for `ntml store export`:
 *   sweeps/<name>/spec            the spec the sweep ran
 *   sweeps/<name>/cells/<cellId>  one record per cell (metrics, report, purified model)
 *   cache/<stage>/<key>           the stage-cache entries its cells read or wrote; each cell
 *                                 record names them by key, stage by stage (StageTiming.cacheKey)
 *   cache/learnedTrigger/<key>    the learned triggers its cells' prepareData stages made or reused
 * The artifacts come with the records (store/bundle.ts follows their references).
 */
import { StoreError } from './errors';
import type { ArtifactStore } from './types';

/** The pseudo-stage that selects the sweep's spec and cell records. */
export const CELLS_SELECTION = 'cells';

/**
 * Learned triggers (activities/learnedTriggerCache.ts) are filed as cache/learnedTrigger/<key>,
 * an entry no cell names: a cell's comes with it through its prepareData key (the entry's
 * `madeBy.key`, or the trigger key the prepareData output names, `poison.triggerKey`).
 */
export const LEARNED_TRIGGER_STAGE = 'learnedTrigger';

interface CellRecordShape {
  cellId?: string;
  status?: string;
  stages?: Array<{ stage: string; cacheKey?: string }>;
}

export interface SweepSelection {
  /** record keys to bundle, sorted */
  recordKeys: string[];
  /** completed cells whose state is exported */
  cells: number;
  /** the spec's cells without a completed record (running, interrupted, failed or not started) */
  unfinishedCells: string[];
  /** stage-cache entries by stage */
  cacheEntries: Record<string, number>;
  /** stage keys the cells name but the store no longer holds (replaced after a version bump, or deleted) */
  missingCacheEntries: string[];
}

export class SweepStateError extends StoreError {}

/**
 * The records of sweep `sweep` to export. `stages` holds stage-cache stage names (the middle
 * segment of cache/<stage>/<key>) and/or CELLS_SELECTION; undefined selects everything.
 * Only completed cells count: a failed cell has nothing worth moving and runs again anyway.
 * `currentCellsOnly`: only the cells the stored spec lists (`cellIds`), not superseded records.
 */
export async function sweepRecordKeys(
  store: ArtifactStore,
  sweep: string,
  stages?: ReadonlySet<string>,
  options: { currentCellsOnly?: boolean } = {},
): Promise<SweepSelection> {
  const wants = (s: string) => stages === undefined || stages.has(s);
  const specKey = `sweeps/${sweep}/spec`;
  const cellKeys = await store.listRecords(`sweeps/${sweep}/cells/`);
  if (cellKeys.length === 0 && (await store.getRecord(specKey)) === undefined) {
    throw new SweepStateError(`no sweep named ${JSON.stringify(sweep)} in the store ${store.location} (no record ${specKey})`);
  }
  const completed: Array<{ key: string; record: CellRecordShape }> = [];
  for (const key of cellKeys) {
    const record = await store.getRecord<CellRecordShape>(key);
    if (record?.status === 'completed') completed.push({ key, record });
  }

  const spec = await store.getRecord<{ cellIds?: unknown }>(specKey);
  const idOf = (c: { key: string; record: CellRecordShape }) => c.record.cellId ?? c.key.slice(c.key.lastIndexOf('/') + 1);
  const specCells = Array.isArray(spec?.cellIds) ? spec.cellIds.filter((c): c is string => typeof c === 'string') : undefined;
  if (options.currentCellsOnly && specCells) {
    // records under ids the spec no longer has (path-hashed ids, an older protocol's cells) are
    // superseded: the report skips them, and what only they reach is of no use to the spec
    const current = new Set(specCells);
    completed.splice(0, completed.length, ...completed.filter((c) => current.has(idOf(c))));
  }
  const done = new Set(completed.map(idOf));
  const allCells = specCells ?? cellKeys.map((k) => k.slice(k.lastIndexOf('/') + 1));
  const unfinishedCells = allCells.filter((c) => !done.has(c)).sort();

  const keys: string[] = [];
  if (wants(CELLS_SELECTION)) {
    if (spec !== undefined) keys.push(specKey);
    keys.push(...completed.map((c) => c.key));
  }

  const cacheEntries: Record<string, number> = {};
  const missing = new Set<string>();
  const wantsCache = stages === undefined || [...stages].some((s) => s !== CELLS_SELECTION);
  if (wantsCache) {
    // stage keys are sha256 of (stage, version, inputs): one listing maps each to its record
    const byKey = new Map<string, { recordKey: string; stage: string }>();
    for (const recordKey of await store.listRecords('cache/')) {
      const [, stage, key] = recordKey.split('/');
      if (stage && key) byKey.set(key, { recordKey, stage });
    }
    const chosen = new Set<string>();
    for (const { key, record } of completed) {
      const named = (record.stages ?? []).filter((s) => typeof s.cacheKey === 'string');
      if (named.length === 0) {
        throw new SweepStateError(
          `cell ${record.cellId ?? key} of sweep ${sweep} names no stage-cache keys (it was recorded by an ntml before they were kept), ` +
            `so its cached stages cannot be found; export only its records with --stages ${CELLS_SELECTION}`,
        );
      }
      for (const s of named) {
        const entry = byKey.get(s.cacheKey!);
        if (!entry) {
          missing.add(`${s.stage} ${s.cacheKey}`);
          continue;
        }
        if (!wants(entry.stage) || chosen.has(entry.recordKey)) continue;
        chosen.add(entry.recordKey);
        cacheEntries[entry.stage] = (cacheEntries[entry.stage] ?? 0) + 1;
      }
    }
    keys.push(...chosen);
    if (wants(LEARNED_TRIGGER_STAGE)) {
      const triggers = await learnedTriggerKeysOf(store, completed.map((c) => c.record));
      keys.push(...triggers);
      if (triggers.length) cacheEntries[LEARNED_TRIGGER_STAGE] = triggers.length;
    }
  }
  return { recordKeys: [...new Set(keys)].sort(), cells: completed.length, unfinishedCells, cacheEntries, missingCacheEntries: [...missing].sort() };
}

/**
 * The learned-trigger records of these cells: those their prepareData computations made
 * (`madeBy.key`, also set by the backfill for cells that ran before the entries existed), and
 * those their prepareData output says it reused (`poison.triggerKey`, learned or reused).
 */
async function learnedTriggerKeysOf(store: ArtifactStore, cells: CellRecordShape[]): Promise<string[]> {
  const entries = await store.listRecords(`cache/${LEARNED_TRIGGER_STAGE}/`);
  if (entries.length === 0) return [];
  const prepareKeys = new Set(cells.flatMap((c) => (c.stages ?? []).filter((s) => s.stage === 'prepareData' && s.cacheKey).map((s) => s.cacheKey!)));
  const out = new Set<string>();
  for (const recordKey of entries) {
    const entry = await store.getRecord<{ madeBy?: { key?: unknown } }>(recordKey);
    if (typeof entry?.madeBy?.key === 'string' && prepareKeys.has(entry.madeBy.key)) out.add(recordKey);
  }
  const present = new Set(entries);
  for (const key of prepareKeys) {
    const prepared = await store.getRecord<{ output?: { poison?: { triggerKey?: unknown } } }>(`cache/prepareData/${key}`);
    const named = prepared?.output?.poison?.triggerKey;
    if (typeof named === 'string' && present.has(`cache/${LEARNED_TRIGGER_STAGE}/${named}`)) out.add(`cache/${LEARNED_TRIGGER_STAGE}/${named}`);
  }
  return [...out].sort();
}

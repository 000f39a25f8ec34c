/**
 * Files the learned triggers of a sweep's completed cells as cache/learnedTrigger/<key>
 * (activities/learnedTriggerCache.ts), for cells whose prepareData ran before those entries
 * existed: a later run of the same attack at another rate (Narcissus) then reuses the trigger
 * instead of optimising it again for hours.
 *   node dist/bench/learnedTriggers.js backfill --sweep NAME [--data-path DIR]
 * For each completed cell whose attack learns its trigger, the trigger key is derived from the
 * cell's config as the activity derives it, and the entry is written from the trigger in the
 * cell's stored prepareData output. The prepareData key derived on the way must be the one the
 * cell recorded (else the data the config names is not the cell's data here, and the cell is
 * skipped); `--data-path` names where that data lies on this machine (keys hash its content, not
 * its path). Idempotent: an entry that is there and verifies is left as it is.
 */
import type { ArtifactStore } from '../store';
import type { SweepCellRecord } from '../workflows/contract';
import type { TriggerParameters } from '../core/attacks/attack';
import { UsageError } from '../cli/errors';
import { parseBenchArgs } from './args';

const USAGE = 'usage: node dist/bench/learnedTriggers.js backfill --sweep NAME [--data-path DIR]';

export interface BackfillLine {
  cellId: string;
  outcome: 'written' | 'present' | 'skipped';
  /** the entry's record key (written, present) or why the cell was skipped */
  detail: string;
}

/** The config as it reads on this machine: its data folder moved to `dataPath` when given. */
function localConfig(config: Record<string, unknown>, dataPath: string | undefined): Record<string, unknown> {
  const data = config.data as Record<string, unknown> | undefined;
  return dataPath && data && typeof data.path === 'string' ? { ...config, data: { ...data, path: dataPath } } : config;
}

export async function backfillLearnedTriggers(store: ArtifactStore, sweep: string, options: { dataPath?: string } = {}): Promise<BackfillLine[]> {
  // loaded here, not at the top: a usage error needs neither the attack registry nor the native backend
  const { parsePurifyConfig } = await import('../schemas/purify');
  const { hasLearnedTrigger, learnedTriggerKeys, learnedTriggerRecordKey, recordLearnedTrigger } = await import('../activities/learnedTriggerCache');
  const keys = await store.listRecords(`sweeps/${sweep}/cells/`);
  if (keys.length === 0) throw new Error(`no cells of sweep ${JSON.stringify(sweep)} in the store ${store.location}`);
  const out: BackfillLine[] = [];
  for (const recordKey of keys.sort()) {
    const cell = await store.getRecord<SweepCellRecord>(recordKey);
    if (cell?.status !== 'completed') continue;
    const raw = localConfig(cell.config, options.dataPath);
    const cfg = parsePurifyConfig(raw);
    if (!hasLearnedTrigger(cfg)) continue;
    const skip = (detail: string) => out.push({ cellId: cell.cellId, outcome: 'skipped', detail });
    const recorded = cell.stages?.find((s) => s.stage === 'prepareData')?.cacheKey;
    if (!recorded) {
      skip('its record names no prepareData key');
      continue;
    }
    const derived = await learnedTriggerKeys(cfg, { config: raw });
    if (derived.prepareData !== recorded) {
      const where = (cfg.data as { path?: string } | undefined)?.path;
      skip(`its config gives prepareData key ${derived.prepareData.slice(0, 12)}, not the recorded ${recorded.slice(0, 12)}: the data${where ? ` at ${where}` : ''} is not the cell's here (--data-path DIR)`);
      continue;
    }
    const entry = await store.getRecord<{ output?: { poison?: { attack?: string; triggerParameters?: TriggerParameters } } }>(`cache/prepareData/${recorded}`);
    const poison = entry?.output?.poison;
    if (!poison?.triggerParameters || !poison.attack) {
      skip(`its prepareData entry cache/prepareData/${recorded.slice(0, 12)}... is not in the store or holds no trigger`);
      continue;
    }
    const wrote = await recordLearnedTrigger(store, derived.trigger, poison.attack, poison.triggerParameters, {
      stage: 'prepareData',
      key: recorded,
      workflowId: cell.workflowId,
      sweep,
      cellId: cell.cellId,
    });
    out.push({ cellId: cell.cellId, outcome: wrote ? 'written' : 'present', detail: learnedTriggerRecordKey(derived.trigger) });
  }
  return out;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command !== 'backfill') throw new UsageError(`unknown command ${JSON.stringify(command ?? '')}\n${USAGE}`);
  const a = parseBenchArgs(rest, { sweep: { type: 'string' }, 'data-path': { type: 'string' } }, USAGE);
  const sweep = a.text('sweep');
  if (!sweep) throw new UsageError(`--sweep is required\n${USAGE}`);
  const { withStore } = await import('../cli/store');
  await withStore({ stderr: process.stderr }, async (store) => {
    const lines = await backfillLearnedTriggers(store, sweep, { dataPath: a.text('data-path') });
    for (const l of lines) process.stdout.write(`${l.cellId}: ${l.outcome === 'written' ? 'wrote' : l.outcome === 'present' ? 'already there:' : 'skipped:'} ${l.detail}\n`);
    const count = (o: BackfillLine['outcome']) => lines.filter((l) => l.outcome === o).length;
    process.stdout.write(`sweep ${sweep}: ${count('written')} learned-trigger entries written, ${count('present')} already there, ${count('skipped')} cells skipped\n`);
  });
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`learnedTriggers: ${(e as Error).message}\n`);
      process.exit(e instanceof UsageError ? 2 : 1);
    },
  );
}

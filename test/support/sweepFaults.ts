/**
 * What the tests that strike a running sweep (a killed worker, killed servers) share: the
 * sweep's cell records in the store, the moment to strike (one cell done, another running),
 * and the check that no cell finished before the fault was run again after it.
 */
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import { storeFromEnv } from '../../store';
import type { SweepCellRecord, SweepProgress } from '../../workflows/contract';
import { sleep } from './processes';

/** The cell records of sweep `name` in the environment's store. */
export async function cellRecords(name: string): Promise<SweepCellRecord[]> {
  const store = storeFromEnv();
  const keys = await store.listRecords(`sweeps/${name}/cells/`);
  return Promise.all(keys.map(async (k) => (await store.getRecord<SweepCellRecord>(k))!));
}

/** Polls the sweep's progress (every 250 ms, for up to 10 minutes) until one cell is done and another is running. */
export async function midSweep(handle: WorkflowHandle): Promise<SweepProgress> {
  let progress: SweepProgress | undefined;
  for (let i = 0; i < 2400 && !(progress && progress.done >= 1 && progress.running.length >= 1); i++) {
    await sleep(250);
    progress = await handle.query<SweepProgress>('progress');
  }
  assert.ok(progress && progress.done >= 1 && progress.running.length >= 1, `no mid-sweep moment seen: ${JSON.stringify(progress)}`);
  return progress;
}

/** Every cell of `finishedBefore` (records read before the fault) still has the record it had: it was not redone. */
export async function assertFinishedNotRedone(name: string, finishedBefore: SweepCellRecord[]): Promise<void> {
  const after = new Map((await cellRecords(name)).map((r) => [r.cellId, r]));
  assert.ok(finishedBefore.length >= 1);
  for (const r of finishedBefore) {
    assert.equal(after.get(r.cellId)!.startedAt, r.startedAt, `finished cell ${r.cellId} was not redone`);
  }
}

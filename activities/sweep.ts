/** Sweep bookkeeping in the store: one record per cell, so reports are built from stored results only. */
import { artifactStore } from './context';
import { activity } from './stageActivity';
import type { SweepCellRecord } from '../workflows/contract';
import { dataContentFingerprint } from '../core/data/contentFingerprint';

const cellKey = (sweep: string, cellId: string) => `sweeps/${sweep}/cells/${cellId}`;

export async function readSweepCell(input: { sweep: string; cellId: string }): Promise<SweepCellRecord | null> {
  return activity(async () => (await artifactStore().getRecord<SweepCellRecord>(cellKey(input.sweep, input.cellId))) ?? null);
}

export async function writeSweepCell(input: { record: SweepCellRecord }): Promise<void> {
  return activity(() => artifactStore().putRecord(cellKey(input.record.sweep, input.record.cellId), input.record));
}

export async function writeSweepSpec(input: { sweep: string; spec: unknown; cellIds: string[] }): Promise<void> {
  return activity(async () => {
    const key = `sweeps/${input.sweep}/spec`;
    // a resumed sweep keeps the record it first wrote: the same state then exports the same bytes (bench/state)
    const stored = await artifactStore().getRecord<{ spec?: unknown; cellIds?: unknown }>(key);
    const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
    if (stored && same(stored.spec, input.spec) && same(stored.cellIds, input.cellIds)) return;
    await artifactStore().putRecord(key, { spec: input.spec, cellIds: input.cellIds, writtenAt: new Date().toISOString() });
  });
}

/**
 * The content digest of a sweep's data (the base's `data`), which its cell ids hash instead of
 * the folder's path; null when the data names no local location or it is not on this worker.
 * Runs on a training worker: those are the machines that read the data.
 */
export async function sweepDataContent(input: { data: unknown }): Promise<string | null> {
  return activity(async () => (await dataContentFingerprint(input.data)) ?? null);
}

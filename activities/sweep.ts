/** Sweep bookkeeping in the store: one record per cell, so reports are built from stored results only. */
import { artifactStore } from './context';
import { activity } from './stageActivity';
import type { SweepCellRecord } from '../workflows/contract';

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

/**
 * The audit history of a model id in the store's records: one record per audit under
 * audits/<modelId>/history/<start time>--<audit id>, so a sorted listing is chronological
 * and the previous audit is the last key before the current one.
 */
import type { ArtifactStore } from '../../store/types';
import type { AuditHistoryRecord } from './report';

export const historyPrefix = (modelId: string) => `audits/${modelId}/history/`;

/** Record keys allow [A-Za-z0-9._-/]: the ISO time loses its colons, the id anything else. */
export function historyKey(modelId: string, startedAt: string, auditId: string): string {
  const time = startedAt.replace(/:/g, '-');
  const id = auditId.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^[.]+/, '_').slice(0, 200);
  return `${historyPrefix(modelId)}${time}--${id}`;
}

/** Every recorded audit of the model, oldest first. */
export async function readHistory(store: ArtifactStore, modelId: string): Promise<Array<AuditHistoryRecord & { key: string }>> {
  const keys = await store.listRecords(historyPrefix(modelId));
  const records = await Promise.all(keys.map(async (key) => ({ key, record: await store.getRecord<AuditHistoryRecord>(key) })));
  return records.flatMap(({ key, record }) => (record ? [{ ...record, key }] : []));
}

/** The most recent record before `beforeKey` (all of them when undefined) that satisfies `accept`. */
export function lastRecord<T extends { key: string }>(records: T[], accept: (r: T) => boolean, beforeKey?: string): T | undefined {
  for (let i = records.length - 1; i >= 0; i--) {
    const r = records[i];
    if (beforeKey !== undefined && r.key >= beforeKey) continue;
    if (accept(r)) return r;
  }
  return undefined;
}

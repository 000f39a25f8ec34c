/**
 * A poisoned training set's record as it is stored: the JSON-able meta of the data set codec,
 * and the PoisonResult rebuilt from it with its consistency checked.
 */
import { z } from 'zod';
import type { ImageDataset } from '../data/dataset';
import { AttackConfigError, type PoisonResult } from './base';
import { parseAttackConfig } from './registry';

/** The JSON-able form of a PoisonResult (without the data set), for the codec's `meta`. */
export function poisonResultToMeta(result: PoisonResult): Record<string, unknown> {
  const meta: Record<string, unknown> = {
    record: result.record,
    poisonedIndices: Array.from(result.poisonedIndices),
    originalLabels: Array.from(result.originalLabels),
  };
  if (result.crossIndices) meta.crossIndices = Array.from(result.crossIndices);
  return meta;
}

const poisonMetaSchema = z.object({
  record: z.object({
    attack: z.string(),
    kind: z.enum(['dirty-label', 'clean-label', 'training-controlled']),
    config: z.looseObject({ name: z.string() }),
    seed: z.number(),
    triggerParameters: z.record(z.string(), z.unknown()),
    poisonedCount: z.number().int().nonnegative(),
    trainSize: z.number().int().nonnegative(),
  }),
  poisonedIndices: z.array(z.number().int().nonnegative()),
  originalLabels: z.array(z.number().int().nonnegative()),
  crossIndices: z.array(z.number().int().nonnegative()).optional(),
});

/** Rebuilds a PoisonResult from a decoded poisoned data set and its meta; checks consistency. */
export function poisonResultFromMeta(dataset: ImageDataset, meta: unknown, source: string): PoisonResult {
  const parsed = poisonMetaSchema.safeParse(meta);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new AttackConfigError(`meta.${issue.path.map(String).join('.')}`, `${source}: ${issue.message}`);
  }
  const m = parsed.data;
  const n = dataset.labels.length;
  if (m.originalLabels.length !== m.poisonedIndices.length || m.record.poisonedCount !== m.poisonedIndices.length) {
    throw new AttackConfigError('meta.poisonedIndices', `${source}: ${m.poisonedIndices.length} indices, ${m.originalLabels.length} original labels, poisonedCount ${m.record.poisonedCount}`);
  }
  if (m.record.trainSize !== n || m.poisonedIndices.some((i) => i >= n) || (m.crossIndices ?? []).some((i) => i >= n)) {
    throw new AttackConfigError('meta.poisonedIndices', `${source}: indices do not fit the ${n} images of the data set (record says ${m.record.trainSize})`);
  }
  const config = parseAttackConfig(m.record.config);
  const result: PoisonResult = {
    dataset,
    poisonedIndices: Int32Array.from(m.poisonedIndices),
    originalLabels: Int32Array.from(m.originalLabels),
    record: { ...m.record, config },
  };
  if (m.crossIndices) result.crossIndices = Int32Array.from(m.crossIndices);
  return result;
}

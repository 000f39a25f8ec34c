/**
 * Stage caching: a stage's output is keyed by the hash of everything it depends on: the
 * stage's implementation version (bump it when the stage's behaviour changes), the config
 * fields it reads, and the digests of its input artifacts. A later run (or sweep cell) with
 * the same key reuses the stored output, as long as every artifact it references still
 * verifies; otherwise the stage runs again and the entry is replaced.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { canonicalJson } from '../core/data/codec';
import { artifactStore } from './context';
import type { ArtifactRef } from '../store';

/** Bump a stage's version whenever its behaviour (and so its output) changes. */
export const STAGE_VERSIONS = {
  // 2: D_c drawn inside a clean reserve (cleanReserve)
  // 3: Narcissus `triggerStep: adam` on the checkpointable core Adam (was tf.train.adam)
  // 4: the training set excludes the clean reserve (D_c is the defender's own data); the
  //    poisoning rate is a fraction of that training set
  prepareData: 4,
  standardTraining: 1,
  importStandardModel: 1,
  nonTargetLabels: 1,
  teacherTraining: 1,
  ntTraining: 1,
  mutualLearning: 1,
  // 2: t^ ties broken by a draw among the tied classes (was: the lowest class index)
  splitPlan: 2,
  // 2: the output records the epoch the held-out selection kept (refitOnAllClean replays it)
  // 3: the history records per-epoch test diagnostics
  splitDistillation: 3,
  // 2: I-BAU's forward and ANP's neuron forward on the fused fast path (float rounding differs)
  // 3: NAD's epoch is never shorter than one pass over the fitting set (a shorter index list had
  //    left images unused), so an explicit stepsPerEpoch config can train differently
  defense: 3,
} as const;
export type CachedStage = keyof typeof STAGE_VERSIONS;

export interface CacheEntry<T> {
  stage: CachedStage;
  version: number;
  key: string;
  createdAt: string;
  output: T;
}

export function stageKey(stage: CachedStage, dependsOn: unknown): string {
  return createHash('sha256')
    .update(canonicalJson({ stage, version: STAGE_VERSIONS[stage], dependsOn }))
    .digest('hex');
}

function refsIn(value: unknown, out: ArtifactRef[] = []): ArtifactRef[] {
  if (Array.isArray(value)) value.forEach((v) => refsIn(v, out));
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if (typeof o.sha256 === 'string' && typeof o.bytes === 'number' && typeof o.uri === 'string') out.push(o as unknown as ArtifactRef);
    else Object.values(o).forEach((v) => refsIn(v, out));
  }
  return out;
}

const computations = new WeakMap<Context, string>();

/**
 * The stage key of the cacheable computation this activity is running, if any. Its
 * checkpoints are filed under it (activities/checkpointing.ts), so any later run of the same
 * computation (a sweep started again after Ctrl-C, whose runs are new) continues from them.
 */
export function runningComputation(): string | undefined {
  return computations.get(Context.current());
}

/**
 * Returns the cached output of `stage` for `dependsOn`, or computes, stores and returns it.
 * `enabled: false` always computes (and still records the result).
 */
export async function cachedStage<T extends object>(
  stage: CachedStage,
  dependsOn: unknown,
  enabled: boolean,
  compute: () => Promise<T>,
): Promise<T & { cached: boolean; cacheKey: string }> {
  const store = artifactStore();
  const key = stageKey(stage, dependsOn);
  const recordKey = `cache/${stage}/${key}`;
  if (enabled) {
    const entry = await store.getRecord<CacheEntry<T>>(recordKey);
    if (entry && entry.version === STAGE_VERSIONS[stage]) {
      const checks = await Promise.all(refsIn(entry.output).map((r) => store.verify(r)));
      if (checks.every(Boolean)) return { ...entry.output, cached: true, cacheKey: key };
    }
  }
  // the checkpoints of a computation whose inputs are not content-addressed stay with their run
  if (enabled) computations.set(Context.current(), key);
  const output = await compute();
  const entry: CacheEntry<T> = { stage, version: STAGE_VERSIONS[stage], key, createdAt: new Date().toISOString(), output };
  await store.putRecord(recordKey, entry);
  return { ...output, cached: false, cacheKey: key };
}

/** Digest-only view of a reference, for cache keys (the URI depends on where the store is). */
export const digestOf = (ref: ArtifactRef | undefined) => (ref ? ref.sha256 : null);

/**
 * Stage caching: a stage's output is keyed by the hash of everything it depends on: the
 * stage's implementation version (bump it when the stage's behaviour changes), the values of
 * the config fields it declares it reads, and the digests of its input artifacts. A later run (or sweep cell) with
 * the same key reuses the stored output, as long as every artifact it references still
 * verifies; otherwise the stage runs again and the entry is replaced.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { canonicalJson } from '../core/data/codec';
import { declaredValues, type ConfigRead } from '../core/pipeline/configReads';
import { artifactStore } from './context';
import type { ArtifactRef } from '../store';
import type { PurifyConfig } from '../schemas/purify';

/**
 * A cached stage: its implementation version (bump it whenever the stage's behaviour, and so
 * its output, changes), the config fields it reads, the artifacts it reads, and any other
 * keyed input. The key is derived from exactly this declaration, and the stage runs on a view
 * of the config that refuses reads outside `reads` (core/pipeline/configReads.ts).
 */
export interface StageDeclaration<I> {
  stage: string;
  version: number;
  reads: readonly ConfigRead[];
  /** the input artifacts, keyed by their digests (an absent one as null) */
  inputs(input: I): Record<string, ArtifactRef | undefined>;
  /** keyed inputs that are neither config nor artifacts (a refit's epoch count) */
  params?(input: I): Record<string, unknown>;
  /** false when an input is read from a place whose content may change under the same name */
  cacheable?(config: PurifyConfig): boolean;
  /**
   * declared reads keyed by the content of what they name instead of the name (a data folder's
   * files, not its path): the values here replace those of `reads` in the key. Asynchronous
   * because it reads files; the stage activity awaits it before deriving the key.
   */
  contentKeyed?(config: PurifyConfig): Promise<Record<string, unknown>>;
}

export interface CacheEntry<T> {
  stage: string;
  version: number;
  key: string;
  createdAt: string;
  output: T;
}

/** `content`: what `declaration.contentKeyed` gave for this config (it replaces those reads' values). */
export function stageKey<I>(declaration: StageDeclaration<I>, config: PurifyConfig, input: I, content: Record<string, unknown> = {}): string {
  const inputs = Object.fromEntries(Object.entries(declaration.inputs(input)).map(([name, ref]) => [name, digestOf(ref)]));
  const material = {
    stage: declaration.stage,
    version: declaration.version,
    config: { ...declaredValues(config, declaration.reads), ...content },
    inputs,
    params: declaration.params?.(input) ?? {},
  };
  return createHash('sha256').update(canonicalJson(material)).digest('hex');
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
const formerComputations = new WeakMap<Context, string>();

/**
 * The stage key of the cacheable computation this activity is running, if any. Its
 * checkpoints are filed under it (activities/checkpointing.ts), so any later run of the same
 * computation (a sweep started again after Ctrl-C, whose runs are new) continues from them.
 */
export function runningComputation(): string | undefined {
  return computations.get(Context.current());
}

/**
 * The key the running computation had before its declaration keyed some reads by content
 * (prepareData's key hashed the data folder's path): a stage with no checkpoint under its key
 * resumes from those filed under this one, so a trigger optimised before the change goes on.
 */
export function formerComputation(): string | undefined {
  return formerComputations.get(Context.current());
}

/**
 * Returns the cached output of the stage for `key`, or computes, stores and returns it.
 * `enabled: false` always computes (and still records the result).
 */
export async function cachedStage<T extends object>(
  stage: { stage: string; version: number },
  key: string,
  enabled: boolean,
  compute: () => Promise<T>,
  /** the key before content keys (see formerComputation), when it differs */
  formerKey?: string,
): Promise<T & { cached: boolean; cacheKey: string }> {
  const store = artifactStore();
  const recordKey = `cache/${stage.stage}/${key}`;
  if (enabled) {
    const entry = await store.getRecord<CacheEntry<T>>(recordKey);
    if (entry && entry.version === stage.version) {
      const checks = await Promise.all(refsIn(entry.output).map((r) => store.verify(r)));
      if (checks.every(Boolean)) return { ...entry.output, cached: true, cacheKey: key };
    }
  }
  // the checkpoints of a computation whose inputs are not content-addressed stay with their run
  if (enabled) computations.set(Context.current(), key);
  if (enabled && formerKey && formerKey !== key) formerComputations.set(Context.current(), formerKey);
  const output = await compute();
  const entry: CacheEntry<T> = { stage: stage.stage, version: stage.version, key, createdAt: new Date().toISOString(), output };
  await store.putRecord(recordKey, entry);
  return { ...output, cached: false, cacheKey: key };
}

/** Digest-only view of a reference, for cache keys (the URI depends on where the store is). */
export const digestOf = (ref: ArtifactRef | undefined) => (ref ? ref.sha256 : null);

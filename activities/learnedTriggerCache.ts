/**
 * A learned trigger (Narcissus's: 1.5-3 hours at the cpu tier) filed under a key of what it
 * reads, cache/learnedTrigger/<key>, apart from the prepareData entry whose key reads the whole
 * attack config. A run that differs only in fields the trigger does not read (the poisoning
 * rate) then poisons with the stored trigger instead of optimising it again.
 *
 * The key is derived as stage keys are (stageCache.ts stageKey), from prepareData's declaration
 * with the attack config minus the fields the plugin lists in `learnedTriggerIgnores`: a denylist,
 * so a field added to an attack's config enters the key unless someone says it may not.
 * The trigger's in-progress checkpoints stay under the prepareData key (a half-learned trigger
 * resumes as before); only the finished trigger is filed here.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../core/data/codec';
import { getAttack } from '../core/attacks/registry';
import type { TriggerParameters } from '../core/attacks/attack';
import type { PurifyConfig } from '../schemas/purify';
import type { ArtifactStore } from '../store';
import type { LearnedTriggerOrigin } from '../workflows/contract';
import { LEARNED_TRIGGER_STAGE } from '../store/sweepState';
import { stageKey, type StageDeclaration } from './stageCache';
import { prepareDataStage, type StageInput } from './stageDeclarations';

export { LEARNED_TRIGGER_STAGE, type LearnedTriggerOrigin };

export interface LearnedTriggerEntry {
  stage: typeof LEARNED_TRIGGER_STAGE;
  version: number;
  key: string;
  createdAt: string;
  attack: string;
  /**
   * The prepareData record's trigger parameters; their per-rate counts (Narcissus's
   * requestedCount) are replaced when a run poisons with them.
   */
  triggerParameters: TriggerParameters;
  /** sha256 of the canonical JSON of `triggerParameters`: a lookup uses the entry only if it matches */
  triggerSha256: string;
  madeBy: LearnedTriggerOrigin;
}

/** The attack config as the learned trigger reads it: without the fields its plugin says it ignores. */
function triggerReadOfAttack(attack: unknown): unknown {
  const fields = attack as Record<string, unknown> | undefined;
  const name = fields?.name;
  const ignored = typeof name === 'string' ? (getAttack(name).learnedTriggerIgnores ?? []) : [];
  return fields && Object.fromEntries(Object.entries(fields).filter(([k]) => !ignored.includes(k)));
}

// 1: keyed by prepareData's reads and version, the attack config minus learnedTriggerIgnores
export const learnedTriggerDeclaration: StageDeclaration<StageInput> = {
  stage: LEARNED_TRIGGER_STAGE,
  version: 1,
  reads: prepareDataStage.reads.map((r) => (r === 'attack' ? { path: 'attack', keyedAs: triggerReadOfAttack } : r)),
  inputs: prepareDataStage.inputs,
  // what prepareData does to the data before learning (its clean reserve) is in its version
  params: () => ({ prepareDataVersion: prepareDataStage.version }),
  cacheable: prepareDataStage.cacheable,
  contentKeyed: prepareDataStage.contentKeyed,
};

/** True when the config's attack learns its trigger in prepareData (evaluation mode only). */
export function hasLearnedTrigger(cfg: PurifyConfig): boolean {
  const name = (cfg.attack as { name?: unknown } | undefined)?.name;
  return cfg.mode === 'evaluation' && typeof name === 'string' && getAttack(name).preparePoison !== undefined;
}

/**
 * The trigger key and the prepareData key of `cfg` (the latter names who learned it). Content
 * keys (the data folder's files) are computed once for both; `content` may pass them in.
 */
export async function learnedTriggerKeys(cfg: PurifyConfig, input: StageInput, content?: Record<string, unknown>): Promise<{ trigger: string; prepareData: string }> {
  const c = content ?? (await prepareDataStage.contentKeyed?.(cfg)) ?? {};
  return { trigger: stageKey(learnedTriggerDeclaration, cfg, input, c), prepareData: stageKey(prepareDataStage, cfg, input, c) };
}

export const learnedTriggerRecordKey = (key: string) => `cache/${LEARNED_TRIGGER_STAGE}/${key}`;

const triggerDigest = (t: TriggerParameters) => createHash('sha256').update(canonicalJson(t)).digest('hex');

/** Why a stored entry cannot be used for `key`, or undefined when it can. */
export function learnedTriggerProblem(entry: unknown, key: string): string | undefined {
  const e = entry as Partial<LearnedTriggerEntry> | undefined;
  if (!e || typeof e !== 'object') return 'not an object';
  if (e.stage !== LEARNED_TRIGGER_STAGE || e.key !== key) return `it names stage ${String(e.stage)}, key ${String(e.key)}`;
  if (e.version !== learnedTriggerDeclaration.version) return `version ${String(e.version)}, expected ${learnedTriggerDeclaration.version}`;
  if (!e.triggerParameters || typeof e.triggerParameters !== 'object') return 'no triggerParameters';
  if (e.triggerSha256 !== triggerDigest(e.triggerParameters)) return 'its triggerParameters do not match their triggerSha256';
  return undefined;
}

/** The stored trigger of `key` if there is one that verifies (else undefined: the caller learns it). */
export async function findLearnedTrigger(store: ArtifactStore, key: string): Promise<LearnedTriggerEntry | undefined> {
  const entry = await store.getRecord<LearnedTriggerEntry>(learnedTriggerRecordKey(key));
  return entry !== undefined && learnedTriggerProblem(entry, key) === undefined ? entry : undefined;
}

/**
 * The stored learned trigger of a sweep cell's config (`raw`: the cell record's config), looked up
 * under the key the prepareData activity would file it under: what a store that imported the
 * sweep's bundle holds in place of the cell's prepareData output. `trigger` is undefined when no
 * entry that verifies is there; `key` names the record either way.
 */
export async function storedTriggerOfCell(store: ArtifactStore, cfg: PurifyConfig, raw: Record<string, unknown>): Promise<{ key: string; trigger?: TriggerParameters }> {
  const key = (await learnedTriggerKeys(cfg, { config: raw })).trigger;
  return { key, trigger: (await findLearnedTrigger(store, key))?.triggerParameters };
}

/**
 * Files `triggerParameters` under `key` unless an entry that verifies is there already (the first
 * maker stays named). Returns whether it wrote.
 */
export async function recordLearnedTrigger(
  store: ArtifactStore,
  key: string,
  attack: string,
  triggerParameters: TriggerParameters,
  madeBy: LearnedTriggerOrigin,
): Promise<boolean> {
  if (await findLearnedTrigger(store, key)) return false;
  const entry: LearnedTriggerEntry = {
    stage: LEARNED_TRIGGER_STAGE,
    version: learnedTriggerDeclaration.version,
    key,
    createdAt: new Date().toISOString(),
    attack,
    triggerParameters,
    triggerSha256: triggerDigest(triggerParameters),
    madeBy,
  };
  await store.putRecord(learnedTriggerRecordKey(key), entry);
  return true;
}

/** One line for reports: which computation the reused trigger came from. */
export function describeOrigin(key: string, from: LearnedTriggerOrigin): string {
  const who = from.cellId ? `cell ${from.cellId}${from.sweep ? ` of sweep ${from.sweep}` : ''}` : from.workflowId ? `run ${from.workflowId}` : 'another run';
  return `the trigger ${who} learned (learnedTrigger ${key.slice(0, 12)}, prepareData ${from.key.slice(0, 12)})`;
}

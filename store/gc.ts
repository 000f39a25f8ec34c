/**
 * Garbage collection of the content-addressed objects of an ArtifactStore (mark and sweep).
 *
 * Mark: the roots are the records (every key of listRecords('')); every ArtifactRef-shaped value
 * ({uri, sha256, bytes}) anywhere in a record is referenced, and so, transitively, is every ref
 * inside a referenced artifact that is JSON (a purify report references its models, a model
 * manifest its weights...). An artifact is parsed only when it is stored, smaller than 8 MiB and
 * its first non-blank byte is '{' or '['.
 * Sweep: every stored object (store.list()) that is not marked is deleted, unless dryRun.
 *
 * keepCheckpoints: false drops the checkpoints/ records from the roots and (unless dryRun)
 * deletes those records too, so the per-epoch checkpoints of finished runs are reclaimed; a
 * checkpoint that another record still references is kept.
 *
 * A record that cannot be read aborts the collection before anything is deleted: what it
 * references is unknown. Run it while no workflow is writing to the store: an object written just
 * before the listing whose record appears only after the records were read would look unreferenced
 * (objects written after the listing are never touched), and with keepCheckpoints: false a running
 * training's checkpoints would go.
 */
import { isSha256 } from './keys';
import type { ArtifactRef, ArtifactStore } from './types';

export const CHECKPOINT_RECORD_PREFIX = 'checkpoints/';
/** Artifacts at least this large are never parsed for references. */
export const MAX_JSON_SCAN_BYTES = 8 * 1024 * 1024;

export interface GcOptions {
  /** Report only; delete nothing. */
  dryRun: boolean;
  /** Treat checkpoints/ records as roots (default true). false reclaims checkpoints. */
  keepCheckpoints?: boolean;
  /** Progress lines (deletions, skipped artifacts). */
  log?: (message: string) => void;
}

export interface GcResult {
  /** distinct sha256 referenced by the roots, directly or through referenced JSON artifacts */
  referenced: number;
  /** stored objects no root references: deleted (or, in a dry run, what would be), by sha256 */
  unreferenced: Array<{ sha256: string; bytes: number }>;
  /** bytes of the unreferenced objects: freed, or freed by a real run */
  freedBytes: number;
  /** objects actually deleted (0 in a dry run) */
  deleted: number;
  /** referenced sha256 that the store does not hold (dangling references; nothing to delete) */
  missing: string[];
  /** records read as roots */
  roots: number;
  /** checkpoints/ records not used as roots (keepCheckpoints: false): deleted unless dryRun */
  checkpointRecords: string[];
  /** JSON artifacts scanned for further references */
  scannedArtifacts: number;
}

export class GcError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'GcError';
  }
}

/** Whether value looks like an ArtifactRef: {uri: string, sha256: 64 hex, bytes: number}. */
export function isArtifactRefShaped(value: unknown): value is ArtifactRef {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return false;
  const o = value as Record<string, unknown>;
  return typeof o.uri === 'string' && isSha256(o.sha256) && typeof o.bytes === 'number' && Number.isFinite(o.bytes);
}

/** Every ArtifactRef-shaped object in a JSON value (iterative, so deep values cannot overflow the stack). */
export function findArtifactRefs(root: unknown): ArtifactRef[] {
  const out: ArtifactRef[] = [];
  const stack: unknown[] = [root];
  while (stack.length) {
    const v = stack.pop();
    if (!v || typeof v !== 'object') continue;
    if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
      continue;
    }
    if (isArtifactRefShaped(v)) out.push(v);
    // Keep descending: a ref may carry other fields (conservative: more marked, never fewer).
    for (const x of Object.values(v as Record<string, unknown>)) stack.push(x);
  }
  return out;
}

/** Parses bytes as JSON when the first non-blank byte opens an object or array; undefined otherwise. */
function parseJsonArtifact(data: Uint8Array): unknown {
  let i = 0;
  if (data[0] === 0xef && data[1] === 0xbb && data[2] === 0xbf) i = 3; // UTF-8 BOM
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x09 || data[i] === 0x0a || data[i] === 0x0d)) i++;
  if (data[i] !== 0x7b && data[i] !== 0x5b) return undefined; // '{' or '['
  try {
    return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(data.subarray(i)));
  } catch {
    return undefined;
  }
}

export async function collectGarbage(store: ArtifactStore, opts: GcOptions): Promise<GcResult> {
  const keepCheckpoints = opts.keepCheckpoints ?? true;
  const log = opts.log ?? (() => undefined);

  // List first: an object written after this point is not in the listing and so never deleted.
  const stored = new Map<string, number>();
  for await (const o of store.list()) stored.set(o.sha256, o.bytes);

  const keys = await store.listRecords('');
  const checkpointRecords: string[] = [];
  const marked = new Set<string>();
  const queue: ArtifactRef[] = [];
  const mark = (value: unknown) => {
    for (const ref of findArtifactRefs(value)) {
      if (marked.has(ref.sha256)) continue;
      marked.add(ref.sha256);
      queue.push(ref);
    }
  };

  let roots = 0;
  for (const key of keys) {
    if (!keepCheckpoints && key.startsWith(CHECKPOINT_RECORD_PREFIX)) {
      checkpointRecords.push(key);
      continue;
    }
    let value: unknown;
    try {
      value = await store.getRecord(key);
    } catch (err) {
      throw new GcError(`cannot read record ${JSON.stringify(key)}, so what it references is unknown; nothing was deleted: ${(err as Error).message}`, {
        cause: err,
      });
    }
    roots++;
    mark(value);
  }

  const missing: string[] = [];
  let scannedArtifacts = 0;
  while (queue.length) {
    const ref = queue.pop()!;
    const size = stored.get(ref.sha256);
    if (size === undefined) {
      missing.push(ref.sha256);
      continue;
    }
    if (size >= MAX_JSON_SCAN_BYTES) continue;
    let data: Uint8Array;
    try {
      // The stored size, not the ref's claim: a ref with a wrong size still protects the object.
      data = await store.get({ uri: ref.uri, sha256: ref.sha256, bytes: size });
    } catch (err) {
      log(`gc: cannot read ${ref.sha256.slice(0, 12)} to look for references (${(err as Error).message}); keeping it`);
      continue;
    }
    const parsed = parseJsonArtifact(data);
    if (parsed === undefined) continue;
    scannedArtifacts++;
    mark(parsed);
  }

  const unreferenced = [...stored]
    .filter(([sha]) => !marked.has(sha))
    .map(([sha256, bytes]) => ({ sha256, bytes }))
    .sort((a, b) => (a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0));
  const freedBytes = unreferenced.reduce((s, o) => s + o.bytes, 0);

  let deleted = 0;
  if (!opts.dryRun) {
    // Records first: a crash midway leaves orphaned objects (the next run frees them), never a
    // checkpoint record pointing at deleted objects it was meant to keep.
    for (const key of checkpointRecords) {
      await store.deleteRecord(key);
      log(`gc: deleted record ${key}`);
    }
    for (const o of unreferenced) {
      await store.delete(o.sha256);
      deleted++;
      log(`gc: deleted ${o.sha256} (${o.bytes} bytes)`);
    }
  }

  return {
    referenced: marked.size,
    unreferenced,
    freedBytes,
    deleted,
    missing: missing.sort(),
    roots,
    checkpointRecords,
    scannedArtifacts,
  };
}

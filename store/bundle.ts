/**
 * Bundles: a chosen set of store records and every artifact they reference, in one file that
 * any store (filesystem or S3) can import. The format (docs/bundles.md):
 *
 *   file  = gzip(body)                         node:zlib, no file name, mtime 0
 *   body  = "NTMLBNDL"                         8 bytes, ASCII
 *           version                            uint32 big-endian (1)
 *           manifest length M                  uint32 big-endian
 *           manifest                           M bytes of canonical JSON (UTF-8)
 *           entry bytes, in manifest order     records (sorted by key), then artifacts (by sha256)
 *
 * The manifest lists each entry with its size and sha256; the body ends exactly after the last
 * entry. A record entry is the record's JSON as JSON.stringify writes it. Nothing in the file
 * depends on when or where it was written, so the same content always gives the same bytes.
 *
 * Import reads and checks everything first (the manifest's shape, every entry's size and
 * sha256, that every reference resolves) and writes nothing unless all of it holds.
 */
import { createGunzip, gzipSync } from 'node:zlib';
import { StoreError } from './errors';
import { findArtifactRefs, MAX_JSON_SCAN_BYTES } from './gc';
import { basesOf, basesProblem } from './bundleBases';
import { advanceCheckpointList, checkpointListHolds } from './inProgress';
import { assertRecordKey, isSha256, sha256Hex } from './keys';
import type { ArtifactRef, ArtifactStore } from './types';

export const BUNDLE_MAGIC = 'NTMLBNDL';
export const BUNDLE_VERSION = 1;
const HEADER_BYTES = 16;
/** A manifest larger than this is not one we wrote (about a million entries). */
const MAX_MANIFEST_BYTES = 256 * 1024 * 1024;

export interface BundleRecordEntry {
  key: string;
  sha256: string;
  bytes: number;
}

export interface BundleArtifactEntry {
  sha256: string;
  bytes: number;
}

export interface BundleManifest {
  format: 'ntml-bundle';
  version: number;
  /** what was asked for (e.g. the sweep and stages), for people reading the manifest */
  selection: Record<string, unknown>;
  records: BundleRecordEntry[];
  artifacts: BundleArtifactEntry[];
}

/** A bundle that cannot be read or does not verify; `entry` names the bad entry when there is one. */
export class BundleError extends StoreError {
  constructor(
    message: string,
    readonly entry?: string,
  ) {
    super(message);
  }
}

export interface BundleContent {
  manifest: BundleManifest;
  records: Array<{ key: string; data: Uint8Array }>;
  artifacts: Array<{ sha256: string; data: Uint8Array }>;
}

const byString = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** JSON with object keys sorted at every level, so equal manifests are equal bytes. */
function canonicalJson(value: unknown): string {
  const sorted = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sorted);
    if (v && typeof v === 'object') {
      return Object.fromEntries(Object.keys(v).sort(byString).map((k) => [k, sorted((v as Record<string, unknown>)[k])]));
    }
    return v;
  };
  return JSON.stringify(sorted(value));
}

/**
 * Digests that name an artifact without a full reference: a field whose name ends in "sha256"
 * ({generators: uri, generatorsSha256: sha} of an Input-Aware run). Exported only if stored.
 */
function digestFields(root: unknown): string[] {
  const out: string[] = [];
  const stack: unknown[] = [root];
  while (stack.length) {
    const v = stack.pop();
    if (!v || typeof v !== 'object') continue;
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      if (/sha256$/i.test(k) && isSha256(x)) out.push(x);
      else if (x && typeof x === 'object') stack.push(x);
    }
  }
  return out;
}

function parseJsonBytes(data: Uint8Array): unknown {
  if (data.byteLength >= MAX_JSON_SCAN_BYTES) return undefined;
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09)) i++;
  if (data[i] !== 0x7b && data[i] !== 0x5b) return undefined; // only '{' or '[' can hold references
  try {
    return JSON.parse(Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Reads the records and the closure of artifacts they reference (through referenced JSON
 * artifacts too, as garbage collection marks them) from `store`. A reference to an artifact the
 * store does not hold, or holds corrupted, is an error naming the record: the bundle would be
 * incomplete. `values` replaces the stored value of some records (a checkpoint list cut to its
 * newest entry, store/inProgress.ts); those records' keys must be in `recordKeys` too.
 * `leaveOut`: artifacts not to export nor follow even when referenced (a policy's choice, such as
 * purified models left out of bench state; the caller lists them in the selection as
 * `leftOutModels`, which lets import accept the references). `provided`: artifacts the export
 * made and the store does not hold (a final checkpoint cut for bench state), by sha256.
 */
export async function collectBundle(
  store: ArtifactStore,
  recordKeys: string[],
  selection: Record<string, unknown> = {},
  values: ReadonlyMap<string, unknown> = new Map(),
  leaveOut: ReadonlySet<string> = new Set(),
  provided: ReadonlyMap<string, Uint8Array> = new Map(),
): Promise<BundleContent> {
  const keys = [...new Set(recordKeys.map((k) => assertRecordKey(k)))].sort(byString);
  const records: BundleContent['records'] = [];
  const artifacts = new Map<string, Uint8Array>();
  const queue: Array<{ sha256: string; bytes?: number; from: string }> = [];
  const enqueue = (value: unknown, from: string, optionalDigests: boolean) => {
    for (const r of findArtifactRefs(value)) if (!artifacts.has(r.sha256)) queue.push({ sha256: r.sha256, bytes: r.bytes, from });
    if (optionalDigests) for (const sha of digestFields(value)) if (!artifacts.has(sha)) queue.push({ sha256: sha, from });
  };
  for (const key of keys) {
    const value = values.has(key) ? values.get(key) : await store.getRecord(key);
    if (value === undefined) throw new BundleError(`record ${key} is not in the store ${store.location}`, key);
    records.push({ key, data: Buffer.from(JSON.stringify(value), 'utf8') });
    enqueue(value, `record ${key}`, true);
  }
  let sizes: Map<string, number> | undefined;
  while (queue.length) {
    const item = queue.pop()!;
    if (artifacts.has(item.sha256) || leaveOut.has(item.sha256)) continue;
    let bytes = item.bytes;
    if (bytes === undefined) {
      // a bare digest: export it when the store has it (its size comes from the listing)
      if (!sizes) {
        sizes = new Map();
        for await (const o of store.list()) sizes.set(o.sha256, o.bytes);
      }
      bytes = sizes.get(item.sha256);
      if (bytes === undefined) continue;
    }
    let data: Uint8Array;
    try {
      data = provided.get(item.sha256) ?? (await store.get({ uri: item.sha256, sha256: item.sha256, bytes }));
    } catch (err) {
      throw new BundleError(`${item.from} references artifact ${item.sha256} (${bytes} bytes), which the store ${store.location} cannot provide: ${(err as Error).message}`, item.sha256);
    }
    artifacts.set(item.sha256, data);
    const parsed = parseJsonBytes(data);
    if (parsed !== undefined) enqueue(parsed, `artifact ${item.sha256}`, true);
  }
  const sortedArtifacts = [...artifacts].sort(([a], [b]) => byString(a, b)).map(([sha256, data]) => ({ sha256, data }));
  const manifest: BundleManifest = {
    format: 'ntml-bundle',
    version: BUNDLE_VERSION,
    selection,
    records: records.map((r) => ({ key: r.key, sha256: sha256Hex(r.data), bytes: r.data.byteLength })),
    artifacts: sortedArtifacts.map((a) => ({ sha256: a.sha256, bytes: a.data.byteLength })),
  };
  return { manifest, records, artifacts: sortedArtifacts };
}

/** The bundle file's bytes (deterministic for the same content). */
export function encodeBundle(content: BundleContent): Buffer {
  const manifest = Buffer.from(canonicalJson(content.manifest), 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header.write(BUNDLE_MAGIC, 0, 'ascii');
  header.writeUInt32BE(BUNDLE_VERSION, 8);
  header.writeUInt32BE(manifest.byteLength, 12);
  const body = Buffer.concat([header, manifest, ...content.records.map((r) => r.data), ...content.artifacts.map((a) => a.data)]);
  return gzipSync(body, { level: 9 });
}

/** Inflates as much as the stream allows; a damaged or cut stream still yields its good prefix. */
async function inflate(file: Uint8Array): Promise<{ body: Buffer; streamError?: string }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const gunzip = createGunzip();
    gunzip.on('data', (c: Buffer) => chunks.push(c));
    gunzip.on('error', (err) => resolve({ body: Buffer.concat(chunks), streamError: err.message }));
    gunzip.on('end', () => resolve({ body: Buffer.concat(chunks) }));
    // fed in pieces so that what precedes a damaged spot comes out (one write yields nothing on error)
    for (let i = 0; i < file.byteLength; i += 1 << 12) gunzip.write(file.subarray(i, i + (1 << 12)));
    gunzip.end();
  });
}

function manifestProblem(m: unknown): string | undefined {
  if (!m || typeof m !== 'object' || Array.isArray(m)) return 'is not a JSON object';
  const o = m as Record<string, unknown>;
  if (o.format !== 'ntml-bundle') return `format must be "ntml-bundle", got ${JSON.stringify(o.format)}`;
  if (o.version !== BUNDLE_VERSION) return `version must be ${BUNDLE_VERSION}, got ${JSON.stringify(o.version)}`;
  if (!o.selection || typeof o.selection !== 'object') return 'selection must be an object';
  if (!Array.isArray(o.records)) return 'records must be an array';
  if (!Array.isArray(o.artifacts)) return 'artifacts must be an array';
  const size = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  const keys = new Set<string>();
  for (const [i, r] of (o.records as unknown[]).entries()) {
    const e = r as Partial<BundleRecordEntry> | null;
    if (!e || typeof e.key !== 'string' || !isSha256(e.sha256) || !size(e.bytes)) return `records[${i}] must be {key, sha256, bytes}`;
    try {
      assertRecordKey(e.key);
    } catch (err) {
      return `records[${i}]: ${(err as Error).message}`;
    }
    if (keys.has(e.key)) return `records[${i}]: record ${e.key} is listed twice`;
    keys.add(e.key);
  }
  const shas = new Set<string>();
  for (const [i, a] of (o.artifacts as unknown[]).entries()) {
    const e = a as Partial<BundleArtifactEntry> | null;
    if (!e || !isSha256(e.sha256) || !size(e.bytes)) return `artifacts[${i}] must be {sha256, bytes}`;
    if (shas.has(e.sha256)) return `artifacts[${i}]: artifact ${e.sha256} is listed twice`;
    shas.add(e.sha256);
  }
  const bases = basesProblem((o.selection as Record<string, unknown>).bases);
  if (bases) return bases;
  const leftOut = (o.selection as Record<string, unknown>).leftOutModels;
  if (leftOut !== undefined && (!Array.isArray(leftOut) || !leftOut.every((m) => m && isSha256((m as { sha256?: unknown }).sha256)))) {
    return 'selection.leftOutModels must be a list of {sha256, ...}';
  }
  return undefined;
}

/** sha256s of the models a policy left out (selection.leftOutModels): references to them may stay dangling. */
function leftOutModels(selection: Record<string, unknown>): Set<string> {
  const list = selection.leftOutModels;
  return new Set(Array.isArray(list) ? (list as Array<{ sha256: string }>).map((m) => m.sha256) : []);
}

/**
 * Refuses a bundle whose bases (selection.bases) carry something it relies on that the store
 * does not hold: its base must be imported first. Reads only; names the base.
 */
async function assertBasesImported(store: ArtifactStore, content: BundleContent): Promise<void> {
  const inBundle = new Set(content.manifest.artifacts.map((a) => a.sha256));
  for (const base of basesOf(content.manifest.selection)) {
    const missingArtifacts: string[] = [];
    for (const sha of base.artifacts) if (!inBundle.has(sha) && !(await store.has(sha))) missingArtifacts.push(sha);
    const missingRecords: string[] = [];
    for (const r of base.records) if ((await store.getRecord(r.key)) === undefined) missingRecords.push(r.key);
    if (missingArtifacts.length || missingRecords.length) {
      const first = missingArtifacts.length ? `artifact ${missingArtifacts[0]}` : `record ${missingRecords[0]}`;
      throw new BundleError(
        `the bundle relies on its base ${base.bundle}${base.sweep ? ` (sweep ${base.sweep})` : ''} for ${missingArtifacts.length} artifacts and ${missingRecords.length} records ` +
          `that the store ${store.location} does not hold (first: ${first}): import ${base.bundle} first; nothing was written`,
        base.bundle,
      );
    }
  }
}

/** checkpoint sha256 -> "the epoch N checkpoint of <record>", from a selection's `inProgress` list */
function checkpointNames(selection: Record<string, unknown>): Map<string, string> {
  const names = new Map<string, string>();
  const name = (list: unknown, what: string) => {
    if (!Array.isArray(list)) return;
    for (const c of list as Array<{ record?: unknown; epoch?: unknown; sha256?: unknown }>) {
      if (c && isSha256(c.sha256) && typeof c.record === 'string') names.set(c.sha256, `the epoch ${String(c.epoch)} ${what} of ${c.record}`);
    }
  };
  name(selection.inProgress, 'checkpoint');
  // bench state's final checkpoints of the entries it leaves out (bench/finishedCheckpoints.ts)
  name(selection.leftOutCheckpoints, 'final checkpoint');
  return names;
}

/**
 * Reads a bundle file's bytes and checks all of it: the stream, the header, the manifest, and the
 * size and sha256 of every entry. `name` (the file) goes into the messages. Throws BundleError
 * naming the first bad entry; returns the verified content otherwise.
 */
export async function decodeBundle(file: Uint8Array, name: string): Promise<BundleContent> {
  const { body, streamError } = await inflate(file);
  const fail = (what: string, entry?: string): never => {
    throw new BundleError(`bundle ${name}: ${what}${streamError ? ` (the gzip stream is damaged: ${streamError})` : ''}`, entry);
  };
  if (body.byteLength < HEADER_BYTES) fail(streamError ? 'unreadable before the end of its header' : 'too short to be a bundle');
  if (body.toString('ascii', 0, 8) !== BUNDLE_MAGIC) fail('not an ntml bundle (bad magic)');
  const version = body.readUInt32BE(8);
  if (version !== BUNDLE_VERSION) fail(`format version ${version} is not supported (this ntml reads version ${BUNDLE_VERSION})`);
  const manifestBytes = body.readUInt32BE(12);
  if (manifestBytes > MAX_MANIFEST_BYTES) fail(`manifest length ${manifestBytes} is implausible`, 'manifest');
  if (HEADER_BYTES + manifestBytes > body.byteLength) fail(`truncated inside the manifest (${body.byteLength - HEADER_BYTES} of ${manifestBytes} bytes)`, 'manifest');
  let manifest: BundleManifest;
  try {
    manifest = JSON.parse(body.toString('utf8', HEADER_BYTES, HEADER_BYTES + manifestBytes)) as BundleManifest;
  } catch (err) {
    return fail(`manifest is not valid JSON: ${(err as Error).message}`, 'manifest');
  }
  const problem = manifestProblem(manifest);
  if (problem) fail(`manifest ${problem}`, 'manifest');

  let offset = HEADER_BYTES + manifestBytes;
  // a stage in progress's checkpoint is named by its record and epoch too (the selection lists them)
  const checkpoints = checkpointNames(manifest.selection);
  const take = (entry: string, e: { sha256: string; bytes: number }): Uint8Array => {
    const label = checkpoints.has(e.sha256) ? `${entry} (${checkpoints.get(e.sha256)})` : entry;
    if (offset + e.bytes > body.byteLength) {
      const present = `${Math.max(0, body.byteLength - offset)} of ${e.bytes} bytes`;
      // zlib's words for input that stops early; any other stream error is damage
      const cut = !streamError || /unexpected end of file/.test(streamError);
      fail(cut ? `${label} is truncated: ${present} present` : `${label} is damaged: only ${present} readable`, entry);
    }
    const data = body.subarray(offset, offset + e.bytes);
    offset += e.bytes;
    const actual = sha256Hex(data);
    if (actual !== e.sha256) fail(`${label} does not match its sha256 (manifest ${e.sha256}, content ${actual})`, entry);
    return data;
  };
  const records = manifest.records.map((r) => ({ key: r.key, data: take(`record ${r.key}`, r) }));
  const artifacts = manifest.artifacts.map((a) => ({ sha256: a.sha256, data: take(`artifact ${a.sha256}`, a) }));
  if (offset !== body.byteLength) fail(`${body.byteLength - offset} bytes after the last entry`);
  if (streamError) fail('the entries verify but the stream does not end cleanly');
  for (const r of records) {
    try {
      JSON.parse(Buffer.from(r.data).toString('utf8'));
    } catch {
      fail(`record ${r.key} is not valid JSON`, `record ${r.key}`);
    }
  }
  return { manifest, records, artifacts };
}

export interface ImportResult {
  /** artifacts written / already present (verified) */
  artifactsWritten: number;
  artifactsSkipped: number;
  /** records written / already present with the same content */
  recordsWritten: number;
  recordsSkipped: number;
  /** records the target already holds with other content: kept as they are, not overwritten */
  recordsKept: string[];
  /**
   * checkpoint lists (checkpoints/...) the target held, which the bundle's reach further:
   * the bundle's newer entries were added, so a resume starts from them
   */
  checkpointsAdvanced: string[];
  bytesWritten: number;
}

async function inPool<T>(items: T[], width: number, f: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await f(items[next++]);
  });
  await Promise.all(lanes);
}

/**
 * Writes a verified bundle into `store`. Before writing anything it checks that what the bundle
 * relies on its bases for is in the store (else: import that base first), and that every
 * reference in the bundle's records (and its JSON artifacts) resolves to an artifact of the bundle
 * or of the store, or is a model the bundle's policy left out (selection.leftOutModels). Artifacts go first and records last, so an interrupted import never leaves a record
 * pointing at a missing artifact. What the store already holds is skipped; a record it holds
 * with other content is kept and listed in `recordsKept`, except a checkpoint list that the
 * bundle's reaches further: that one gets the newer entries (`checkpointsAdvanced`).
 */
export async function importBundle(store: ArtifactStore, content: BundleContent): Promise<ImportResult> {
  await assertBasesImported(store, content);
  const inBundle = new Set(content.artifacts.map((a) => a.sha256));
  const leftOut = leftOutModels(content.manifest.selection);
  const needed = new Map<string, { ref: ArtifactRef; from: string }>();
  const note = (value: unknown, from: string) => {
    for (const ref of findArtifactRefs(value)) if (!inBundle.has(ref.sha256) && !leftOut.has(ref.sha256) && !needed.has(ref.sha256)) needed.set(ref.sha256, { ref, from });
  };
  for (const r of content.records) note(JSON.parse(Buffer.from(r.data).toString('utf8')), `record ${r.key}`);
  for (const a of content.artifacts) {
    const parsed = parseJsonBytes(a.data);
    if (parsed !== undefined) note(parsed, `artifact ${a.sha256}`);
  }
  for (const [sha, { from }] of needed) {
    if (!(await store.has(sha))) {
      throw new BundleError(`${from} references artifact ${sha}, which is neither in the bundle nor in the store ${store.location}; nothing was written`, from);
    }
  }

  const result: ImportResult = { artifactsWritten: 0, artifactsSkipped: 0, recordsWritten: 0, recordsSkipped: 0, recordsKept: [], checkpointsAdvanced: [], bytesWritten: 0 };
  await inPool(content.artifacts, 8, async (a) => {
    if (await store.verify({ uri: a.sha256, sha256: a.sha256, bytes: a.data.byteLength })) {
      result.artifactsSkipped++;
      return;
    }
    await store.put(a.data);
    result.artifactsWritten++;
    result.bytesWritten += a.data.byteLength;
  });
  await inPool(content.records, 8, async (r) => {
    const text = Buffer.from(r.data).toString('utf8');
    const existing = await store.getRecord(r.key);
    if (existing !== undefined) {
      if (JSON.stringify(existing) === text) {
        result.recordsSkipped++;
        return;
      }
      const isCheckpointList = r.key.startsWith('checkpoints/');
      // the store's own history of the stage, which the bundle's newest entry was cut from
      if (isCheckpointList && checkpointListHolds(existing, JSON.parse(text))) {
        result.recordsSkipped++;
        return;
      }
      const advanced = isCheckpointList ? advanceCheckpointList(existing, JSON.parse(text)) : undefined;
      if (!advanced) {
        result.recordsKept.push(r.key);
        return;
      }
      await store.putRecord(r.key, advanced);
      result.checkpointsAdvanced.push(r.key);
      result.bytesWritten += r.data.byteLength;
      return;
    }
    await store.putRecord(r.key, JSON.parse(text));
    result.recordsWritten++;
    result.bytesWritten += r.data.byteLength;
  });
  result.recordsKept.sort(byString);
  result.checkpointsAdvanced.sort(byString);
  return result;
}

/**
 * Binary (de)serialisation of an ImageDataset for the artifact store.
 *
 * Layout (all integers little-endian):
 *   8 bytes   magic "NTMLDS1\n"
 *   4 bytes   uint32 length L of the JSON header
 *   L bytes   UTF-8 JSON header {format, name, height, width, channels, numClasses, count, classNames?, meta?}
 *   4*count   labels, int32
 *   count*H*W*C  pixels, uint8, HWC per image, images back to back
 * The file must end exactly there. JSON keys are written in a fixed (sorted) order, so the
 * encoding of a given data set and meta is canonical.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DatasetError, imageBytes, validateDataset, type ImageDataset } from './dataset';

export const DATASET_MAGIC = 'NTMLDS1\n';
const MAGIC_BYTES = new TextEncoder().encode(DATASET_MAGIC);
const PREFIX = MAGIC_BYTES.length + 4;

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

const headerSchema = z.strictObject({
  format: z.literal(1),
  name: z.string(),
  height: z.number().int().positive(),
  width: z.number().int().positive(),
  channels: z.union([z.literal(1), z.literal(3)]),
  numClasses: z.number().int().positive(),
  count: z.number().int().nonnegative(),
  classNames: z.array(z.string()).optional(),
  meta: z.record(z.string(), z.unknown()).optional(),
});

/** JSON.stringify with object keys sorted recursively; rejects non-finite numbers. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(sortKeys(value, '$'));
}

function sortKeys(value: unknown, where: string): unknown {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new DatasetError(`dataset meta: ${where} is ${value}, not a finite number`);
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => sortKeys(v, `${where}[${i}]`));
  if (ArrayBuffer.isView(value)) return Array.from(value as unknown as ArrayLike<number>);
  if (typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value as object).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortKeys(v, `${where}.${key}`);
    }
    return out;
  }
  throw new DatasetError(`dataset meta: ${where} has type ${typeof value}, which JSON cannot hold`);
}

function headerOf(ds: ImageDataset, meta: Record<string, unknown> | undefined, includeName: boolean): string {
  const header: Record<string, unknown> = {
    format: 1,
    name: includeName ? ds.name : '',
    height: ds.height,
    width: ds.width,
    channels: ds.channels,
    numClasses: ds.numClasses,
    count: ds.labels.length,
  };
  if (ds.classNames) header.classNames = ds.classNames;
  if (meta !== undefined) header.meta = meta;
  return canonicalJson(header);
}

function labelBytes(labels: Int32Array): Uint8Array {
  const out = new Uint8Array(labels.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < labels.length; i++) view.setInt32(i * 4, labels[i], true);
  return out;
}

/** Encodes a data set (validated first) and an optional JSON-able `meta` object. */
export function encodeDataset(ds: ImageDataset, meta?: Record<string, unknown>): Uint8Array {
  validateDataset(ds);
  const header = new TextEncoder().encode(headerOf(ds, meta, true));
  const n = ds.labels.length;
  const out = new Uint8Array(PREFIX + header.length + 4 * n + ds.images.length);
  out.set(MAGIC_BYTES, 0);
  new DataView(out.buffer).setUint32(MAGIC_BYTES.length, header.length, true);
  out.set(header, PREFIX);
  out.set(labelBytes(ds.labels), PREFIX + header.length);
  out.set(ds.images, PREFIX + header.length + 4 * n);
  return out;
}

export interface DecodedDataset {
  dataset: ImageDataset;
  meta?: Record<string, unknown>;
}

/** Decodes and validates; every error is a DatasetError naming `source`. */
export function decodeDatasetWithMeta(bytes: Uint8Array, source: string): DecodedDataset {
  if (bytes.length < PREFIX) {
    throw new DatasetError(`${source}: ${bytes.length} bytes, too short for an ntml dataset (expected the "NTMLDS1" magic and a header)`);
  }
  for (let i = 0; i < MAGIC_BYTES.length; i++) {
    if (bytes[i] !== MAGIC_BYTES[i]) {
      throw new DatasetError(`${source}: not an ntml dataset file (expected the magic "NTMLDS1\\n" at the start)`);
    }
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(MAGIC_BYTES.length, true);
  if (PREFIX + headerLength > bytes.length) {
    throw new DatasetError(
      `${source}: truncated: header declares ${headerLength} bytes of JSON but only ${bytes.length - PREFIX} bytes follow`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREFIX, PREFIX + headerLength)));
  } catch (err) {
    throw new DatasetError(`${source}: header is not valid UTF-8 JSON (${(err as Error).message})`);
  }
  const result = headerSchema.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    const field = issue.path.length ? issue.path.join('.') : issue.code === 'unrecognized_keys' ? (issue as { keys: string[] }).keys.join(', ') : 'header';
    throw new DatasetError(`${source}: invalid header field ${field}: ${issue.message}`);
  }
  const h = result.data;
  if (h.classNames && h.classNames.length !== h.numClasses) {
    throw new DatasetError(`${source}: header lists ${h.classNames.length} classNames, expected numClasses = ${h.numClasses}`);
  }
  const per = imageBytes(h);
  const expected = PREFIX + headerLength + 4 * h.count + h.count * per;
  if (bytes.length < expected) {
    throw new DatasetError(
      `${source}: truncated: ${bytes.length} bytes, expected ${expected} for ${h.count} images of ${h.height}x${h.width}x${h.channels}`,
    );
  }
  if (bytes.length > expected) {
    throw new DatasetError(`${source}: ${bytes.length - expected} unexpected trailing bytes after ${h.count} images (expected ${expected} bytes)`);
  }
  const labels = new Int32Array(h.count);
  const lo = PREFIX + headerLength;
  for (let i = 0; i < h.count; i++) labels[i] = view.getInt32(lo + 4 * i, true);
  const pixStart = lo + 4 * h.count;
  const images = bytes.slice(pixStart, pixStart + h.count * per);
  const dataset: ImageDataset = {
    name: h.name,
    height: h.height,
    width: h.width,
    channels: h.channels,
    numClasses: h.numClasses,
    images,
    labels,
  };
  if (h.classNames) dataset.classNames = h.classNames;
  validateDataset(dataset, source);
  return h.meta === undefined ? { dataset } : { dataset, meta: h.meta };
}

export function decodeDataset(bytes: Uint8Array, source: string): ImageDataset {
  return decodeDatasetWithMeta(bytes, source).dataset;
}

/**
 * sha256 (hex) of the canonical encoding of the data set's content: dims, numClasses,
 * classNames, labels and pixels. The name and any meta are left out, so the same pixels
 * and labels loaded from different places have the same digest.
 */
export function datasetDigest(ds: ImageDataset): string {
  validateDataset(ds);
  const header = new TextEncoder().encode(headerOf(ds, undefined, false));
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, header.length, true);
  const hash = createHash('sha256');
  hash.update(MAGIC_BYTES);
  hash.update(len);
  hash.update(header);
  hash.update(labelBytes(ds.labels));
  hash.update(ds.images);
  return hash.digest('hex');
}

/**
 * What every activity shares: the artifact store (configured by the worker's environment,
 * never by workflow input), typed load/save helpers, and the translation of bad-input
 * errors into non-retryable failures so a bad file fails once instead of retrying forever.
 */
import { promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ApplicationFailure, Context } from '@temporalio/activity';
import { storeFromEnv, s3OptionsFromEnv, readArtifactUri, ArtifactNotFoundError, ArtifactIntegrityError, S3RequestError, StoreConfigError } from '../store';
import type { ArtifactRef, ArtifactStore } from '../store';
import { DatasetError, type ImageDataset } from '../core/data/dataset';
import { decodeDatasetWithMeta, encodeDataset } from '../core/data/codec';
import { decodeClassifier, encodeClassifier, ModelFormatError } from '../core/models/layersFormat';
import type { Classifier } from '../core/models/classifier';
import { AttackConfigError } from '../core/attacks/base';
import { ConfigError, parsePurifyConfig, type PurifyConfig } from '../schemas/purify';
import { CheckpointFormatError } from '../core/train/checkpoint';
import { UndeclaredConfigReadError } from '../core/pipeline/configReads';
import { AuditModelError } from '../core/audit/deployedModel';
import { WebhookSecretError } from '../core/audit/webhookSecret';
import { WebhookRejectedError } from '../core/audit/webhook';
import type { BackdoorTestSet } from '../core/attacks/testSet';

let store: ArtifactStore | undefined;
export function artifactStore(): ArtifactStore {
  store ??= storeFromEnv();
  return store;
}

/** Overrides the store (tests, in-process workers). */
export function useArtifactStore(s: ArtifactStore): void {
  store = s;
}

/**
 * Errors that retrying cannot fix: bad configs, files, models; missing or corrupt inputs; a
 * stage reading a config field its cache key does not cover (a bug: the next attempt reads it too).
 */
// an S3 request the server refused (4xx) or a bad store setting fails at once; an outage
// (StoreOutageError, after the store's own outage budget) stays retryable
const permanent = [
  ConfigError,
  DatasetError,
  ModelFormatError,
  AttackConfigError,
  ArtifactNotFoundError,
  ArtifactIntegrityError,
  UndeclaredConfigReadError,
  S3RequestError,
  StoreConfigError,
  // the audit's: a deployed model that cannot be read, a webhook without its signing secret or refused (4xx)
  AuditModelError,
  WebhookSecretError,
  WebhookRejectedError,
];

export async function nonRetryableOnBadInput<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    if (permanent.some((cls) => err instanceof cls)) {
      throw ApplicationFailure.nonRetryable((err as Error).message, (err as Error).name);
    }
    throw err;
  }
}

const lastDetails = new WeakMap<Context, unknown>();

/** A heartbeat whose details withKeepAlive repeats (a bare keep-alive beat would replace them on the server). */
export function heartbeatDetails(details: unknown, ctx: Context = Context.current()): void {
  lastDetails.set(ctx, details);
  ctx.heartbeat(details);
}

/** The details of the activity's last `heartbeatDetails` (what its keep-alive repeats). */
export function lastHeartbeatDetails(ctx: Context = Context.current()): unknown {
  return lastDetails.get(ctx);
}

/**
 * Heartbeats every second while a stage without its own regular beats runs, so a worker killed
 * mid-stage is noticed after the heartbeat timeout instead of the start-to-close timeout. It
 * repeats the details of the stage's last `heartbeatDetails` (a learned trigger's checkpoint).
 */
export async function withKeepAlive<T>(f: () => Promise<T>): Promise<T> {
  const ctx = Context.current();
  const timer = setInterval(() => ctx.heartbeat(lastDetails.get(ctx)), 1000);
  try {
    return await f();
  } finally {
    clearInterval(timer);
  }
}

export function config(raw: unknown): PurifyConfig {
  try {
    return parsePurifyConfig(raw, 'workflow config');
  } catch (err) {
    if (err instanceof ConfigError) throw ApplicationFailure.nonRetryable(err.message, 'InvalidConfig');
    throw err;
  }
}

export async function saveDataset(ds: ImageDataset, meta?: Record<string, unknown>): Promise<ArtifactRef> {
  return artifactStore().put(encodeDataset(ds, meta));
}

export async function loadDataset(ref: ArtifactRef): Promise<ImageDataset> {
  return decodeDatasetWithMeta(await artifactStore().get(ref), ref.uri).dataset;
}

export async function saveBackdoorTest(b: BackdoorTestSet): Promise<ArtifactRef> {
  return saveDataset(b.images, {
    targetLabels: Array.from(b.targetLabels),
    sourceIndices: Array.from(b.sourceIndices),
  });
}

export async function loadBackdoorTest(ref: ArtifactRef): Promise<BackdoorTestSet> {
  const { dataset, meta } = decodeDatasetWithMeta(await artifactStore().get(ref), ref.uri);
  const m = meta as { targetLabels: number[]; sourceIndices: number[] };
  return {
    images: dataset,
    trueLabels: dataset.labels,
    targetLabels: Int32Array.from(m.targetLabels),
    sourceIndices: Int32Array.from(m.sourceIndices),
  };
}

export async function saveModel(c: Classifier): Promise<ArtifactRef> {
  return artifactStore().put(await encodeClassifier(c));
}

export async function loadModel(ref: ArtifactRef): Promise<Classifier> {
  return decodeClassifier(await artifactStore().get(ref), ref.uri);
}

export async function saveJson(value: unknown): Promise<ArtifactRef> {
  return artifactStore().put(Buffer.from(JSON.stringify(value)));
}

export async function loadJson<T>(ref: ArtifactRef): Promise<T> {
  return JSON.parse(Buffer.from(await artifactStore().get(ref)).toString('utf8')) as T;
}

/**
 * Resolves a user-given location to a local file: plain paths and file:// as they are,
 * s3:// downloaded to a temporary file (same base name, so sibling files like weights.bin
 * can be fetched next to a model.json).
 */
export async function localFile(location: string, dir?: string): Promise<string> {
  if (location.startsWith('s3://')) {
    const artifact = await readArtifactUri(location, { s3: s3OptionsFromEnv() });
    const target = path.join(dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'ntml-input-'))), path.basename(location));
    await fs.writeFile(target, artifact.data);
    return target;
  }
  if (location.startsWith('file://')) return new URL(location).pathname;
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new DatasetError(`${location}: unsupported location; expected a path, file:// or s3:// URI`);
  }
  return location;
}

export { CheckpointFormatError, Context };

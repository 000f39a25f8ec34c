/**
 * Artifact store: content-addressed (sha256) blobs verified on read, plus small mutable JSON
 * records, on a local directory or an S3 bucket. Workflows pass ArtifactRefs; activities use a
 * store built by storeFromEnv() so credentials never travel through workflow inputs.
 */
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { StoreConfigError } from './errors';
import { FileArtifactStore } from './fsStore';
import { findRepoRoot } from './repoRoot';
import { S3ArtifactStore } from './s3Store';
import type { ArtifactStore, S3Credentials, S3Options } from './types';

export * from './errors';
export type { ArtifactRef, ArtifactStore, S3Credentials, S3Options } from './types';
export { FileArtifactStore, atomicWriteFile } from './fsStore';
export { S3ArtifactStore, createS3Client, parseS3Location } from './s3Store';
export { parseArtifactUri, readArtifactUri, type ExternalArtifact, type ParsedArtifactUri } from './uri';
export { assertRecordKey, assertRecordPrefix, assertSha256, isSha256, sha256Hex } from './keys';
export { findRepoRoot } from './repoRoot';
export { classifyStoreError, describeStoreError, isTransientStoreError, type FailureKind } from './transient';
export {
  DEFAULT_OUTAGE_BUDGET_SECONDS,
  OutageTracker,
  outagePolicyFromEnv,
  type OutageListener,
  type OutagePolicy,
  type OutageState,
} from './outage';
export { BundleError, collectBundle, decodeBundle, encodeBundle, importBundle, type BundleContent, type BundleManifest, type ImportResult } from './bundle';
export {
  assertNoCycle,
  baseCarries,
  basesOf,
  BundleBaseError,
  bundleSetProblems,
  leaveOutBases,
  type BundleBaseReliance,
  type NamedBundle,
} from './bundleBases';
export { CELLS_SELECTION, LEARNED_TRIGGER_STAGE, SweepStateError, sweepRecordKeys, type SweepSelection } from './sweepState';
export { advanceCheckpointList, checkpointListHolds, finalCheckpoints, inProgressCheckpoints, inProgressExport, STAGE_CHECKPOINT_PREFIX, type InProgressCheckpoint, type InProgressExport, type InProgressSelection } from './inProgress';

/**
 * Opens a store at "s3://bucket[/prefix]", "file:///abs/dir", or a plain directory path
 * (relative paths resolve against the current directory).
 */
export function openStore(location: string, opts: { s3?: S3Options } = {}): ArtifactStore {
  if (typeof location !== 'string' || location.trim() === '') throw new StoreConfigError('store location must be a non-empty string');
  if (location.startsWith('s3://')) return new S3ArtifactStore(location, opts.s3);
  if (location.startsWith('file:')) {
    let dir: string;
    try {
      dir = fileURLToPath(location);
    } catch (err) {
      throw new StoreConfigError(`invalid file store location ${JSON.stringify(location)}: ${(err as Error).message}`, { cause: err });
    }
    return new FileArtifactStore(dir);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(location)) {
    throw new StoreConfigError(`unsupported store location ${JSON.stringify(location)} (expected s3://bucket/prefix, file:///dir or a directory path)`);
  }
  return new FileArtifactStore(path.resolve(location));
}

/** Default local store: <repo root>/.ntml/store, or ./.ntml/store outside a checkout. */
export function defaultStoreLocation(): string {
  return path.join(findRepoRoot() ?? process.cwd(), '.ntml', 'store');
}

/**
 * S3 client options from the environment: NTML_S3_ENDPOINT, NTML_S3_REGION (default us-east-1),
 * credentials from NTML_S3_CREDENTIALS_FILE (JSON {accessKeyId, secretAccessKey[, sessionToken]})
 * or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN]; otherwise the AWS SDK's default chain.
 */
export function s3OptionsFromEnv(env: NodeJS.ProcessEnv = process.env): S3Options {
  const opts: S3Options = { region: env.NTML_S3_REGION || 'us-east-1' };
  if (env.NTML_S3_ENDPOINT) {
    try {
      new URL(env.NTML_S3_ENDPOINT);
    } catch {
      throw new StoreConfigError(`NTML_S3_ENDPOINT is not a URL: ${JSON.stringify(env.NTML_S3_ENDPOINT)}`);
    }
    opts.endpoint = env.NTML_S3_ENDPOINT;
  }
  if (env.NTML_S3_CREDENTIALS_FILE) {
    opts.credentials = readCredentialsFile(env.NTML_S3_CREDENTIALS_FILE);
  } else if (env.AWS_ACCESS_KEY_ID && env.AWS_SECRET_ACCESS_KEY) {
    opts.credentials = {
      accessKeyId: env.AWS_ACCESS_KEY_ID,
      secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
      ...(env.AWS_SESSION_TOKEN ? { sessionToken: env.AWS_SESSION_TOKEN } : {}),
    };
  }
  return opts;
}

export function readCredentialsFile(file: string): S3Credentials {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new StoreConfigError(`cannot read S3 credentials file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const c = parsed as Partial<S3Credentials> | null;
  if (!c || typeof c.accessKeyId !== 'string' || !c.accessKeyId || typeof c.secretAccessKey !== 'string' || !c.secretAccessKey) {
    throw new StoreConfigError(`S3 credentials file ${file} must hold JSON {"accessKeyId": "...", "secretAccessKey": "..."}`);
  }
  return {
    accessKeyId: c.accessKeyId,
    secretAccessKey: c.secretAccessKey,
    ...(typeof c.sessionToken === 'string' && c.sessionToken ? { sessionToken: c.sessionToken } : {}),
  };
}

/** The store named by NTML_STORE (default: a local folder .ntml/store in the checkout). */
export function storeFromEnv(env: NodeJS.ProcessEnv = process.env): ArtifactStore {
  const location = env.NTML_STORE?.trim() || defaultStoreLocation();
  return location.startsWith('s3://') ? openStore(location, { s3: s3OptionsFromEnv(env) }) : openStore(location);
}

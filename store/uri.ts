import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { ArtifactIntegrityError, ArtifactNotFoundError, S3RequestError, StoreConfigError, StoreError } from './errors';
import { assertRecordPrefix, assertSha256, sha256Hex } from './keys';
import { s3BucketProblem, s3KeyProblem } from '../schemas/location';
import { OutageTracker, outagePolicyFromEnv, type OutagePolicy } from './outage';
import { createS3Client, s3ErrorName, s3ErrorStatus } from './s3Store';
import { describeStoreError } from './transient';
import type { S3Options } from './types';

export type ParsedArtifactUri =
  | { scheme: 's3'; bucket: string; key: string }
  | { scheme: 'file'; path: string };

/** Parses "s3://bucket/key" or "file:///abs/path" (absolute only). */
export function parseArtifactUri(uri: string): ParsedArtifactUri {
  if (typeof uri !== 'string' || uri.length === 0) throw new StoreConfigError(`artifact URI must be a non-empty string`);
  if (uri.startsWith('s3://')) {
    const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
    if (!m || m[2].endsWith('/')) throw new StoreConfigError(`invalid S3 URI ${JSON.stringify(uri)} (expected s3://bucket/key)`);
    // the same rules as the config schemas: S3 would answer a ".." key with a bare 400 after the retries
    const problem = s3BucketProblem(m[1]) ?? s3KeyProblem(m[2]);
    if (problem) throw new StoreConfigError(`invalid S3 URI ${JSON.stringify(uri)}: ${problem}`);
    return { scheme: 's3', bucket: m[1], key: m[2] };
  }
  if (uri.startsWith('file:')) {
    let p: string;
    try {
      p = fileURLToPath(uri);
    } catch (err) {
      throw new StoreConfigError(`invalid file URI ${JSON.stringify(uri)}: ${(err as Error).message}`, { cause: err });
    }
    if (!path.isAbsolute(p)) throw new StoreConfigError(`file URI must be absolute: ${JSON.stringify(uri)}`);
    return { scheme: 'file', path: p };
  }
  throw new StoreConfigError(`unsupported artifact URI ${JSON.stringify(uri)} (expected s3://bucket/key or file:///path)`);
}

/**
 * Why `location` cannot be a store location (NTML_STORE): "s3://bucket[/prefix]", "file:///abs/dir"
 * or a directory path; undefined when it can. The S3 prefix follows the record-key rules, as
 * S3ArtifactStore checks them when it opens (this says so before anything starts).
 */
export function storeLocationProblem(location: string): string | undefined {
  if (location.trim() === '') return 'must not be empty';
  const s3 = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(location);
  if (s3) {
    const prefix = s3[2] ?? '';
    // the store creates its bucket: AWS's minimum of 3 characters applies (parseS3Location checks it too)
    const short = s3[1].length > 0 && s3[1].length < 3 ? `S3 bucket name ${JSON.stringify(s3[1])} is shorter than 3 characters` : undefined;
    const problem = short ?? s3BucketProblem(s3[1]) ?? (prefix ? s3KeyProblem(prefix, { prefix: true }) : undefined);
    if (problem) return problem;
    try {
      if (prefix) assertRecordPrefix(prefix.replace(/\/+$/, ''));
    } catch (err) {
      return (err as Error).message;
    }
    return undefined;
  }
  if (location.startsWith('file:')) {
    try {
      fileURLToPath(location);
    } catch (err) {
      return `not a valid file URI: ${(err as Error).message}`;
    }
    return undefined;
  }
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(location)?.[1];
  if (scheme && (location.includes('://') || scheme.toLowerCase() === 's3')) {
    return `unsupported store location ${JSON.stringify(location)} (expected s3://bucket/prefix, file:///dir or a directory path)`;
  }
  return undefined;
}

export interface ExternalArtifact {
  uri: string;
  data: Uint8Array;
  sha256: string;
  bytes: number;
}

/**
 * Reads a plain, not content-addressed object (a user-provided input such as a deployed model)
 * and returns its bytes with their computed sha256. For s3:// URIs the S3 options (endpoint,
 * credentials) come from `opts.s3`, typically s3OptionsFromEnv(). Pass `expectedSha256` to pin the
 * content: a mismatch throws ArtifactIntegrityError.
 */
export async function readArtifactUri(
  uri: string,
  opts: { s3?: S3Options; expectedSha256?: string; outagePolicy?: OutagePolicy } = {},
): Promise<ExternalArtifact> {
  const parsed = parseArtifactUri(uri);
  if (opts.expectedSha256 !== undefined) assertSha256(opts.expectedSha256, 'expectedSha256');
  let data: Uint8Array;
  if (parsed.scheme === 'file') {
    try {
      data = await fsp.readFile(parsed.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new ArtifactNotFoundError(uri, { cause: err });
      throw err;
    }
  } else {
    const client = createS3Client(opts.s3);
    // an outage of the server holding the input is waited out like the store's (store/outage.ts)
    const outage = new OutageTracker(uri, opts.outagePolicy ?? outagePolicyFromEnv());
    try {
      data = await outage.run('GetObject', uri, async () => {
        const out = await client.send(new GetObjectCommand({ Bucket: parsed.bucket, Key: parsed.key }));
        if (!out.Body) throw new ArtifactNotFoundError(uri);
        return out.Body.transformToByteArray();
      });
    } catch (err) {
      const name = s3ErrorName(err);
      if (name === 'NoSuchKey' || name === 'NoSuchBucket' || s3ErrorStatus(err) === 404) throw new ArtifactNotFoundError(uri, { cause: err });
      if (err instanceof StoreError) throw err;
      throw new S3RequestError('GetObject', uri, name, s3ErrorStatus(err), describeStoreError(err), { cause: err });
    } finally {
      client.destroy();
    }
  }
  const sha256 = sha256Hex(data);
  if (opts.expectedSha256 !== undefined && sha256 !== opts.expectedSha256) {
    throw new ArtifactIntegrityError(uri, { sha256: opts.expectedSha256, bytes: data.byteLength }, { sha256, bytes: data.byteLength });
  }
  return { uri, data, sha256, bytes: data.byteLength };
}

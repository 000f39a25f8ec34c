import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type PutObjectCommandInput,
} from '@aws-sdk/client-s3';
import { ArtifactNotFoundError, S3RequestError, StoreConfigError, StoreError } from './errors';
import { artifactIntact, checkArtifactBytes } from './integrity';
import { assertRecordKey, assertRecordPrefix, assertSha256, casKey, isSha256, sha256Base64, sha256Hex } from './keys';
import { OutageTracker, outagePolicyFromEnv, type OutageListener, type OutagePolicy, type OutageState } from './outage';
import { describeStoreError } from './transient';
import type { ArtifactRef, ArtifactStore, S3Options } from './types';

/** The HTTP status of an S3 error (also through an S3RequestError). */
export function s3ErrorStatus(err: unknown): number | undefined {
  if (err instanceof S3RequestError) return err.status;
  return (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** The S3 error code, e.g. NoSuchKey (also through an S3RequestError). */
export function s3ErrorName(err: unknown): string | undefined {
  if (err instanceof S3RequestError) return err.code;
  const e = err as { name?: string; Code?: string } | undefined;
  return e?.Code ?? e?.name;
}

function isNotFound(err: unknown): boolean {
  const name = s3ErrorName(err);
  return name === 'NoSuchKey' || name === 'NotFound' || (s3ErrorStatus(err) === 404 && name !== 'NoSuchBucket');
}

/** 412 PreconditionFailed, or 409 ConditionalRequestConflict when a concurrent conditional write is in flight. */
function isConditionFailure(err: unknown): boolean {
  const status = s3ErrorStatus(err);
  const name = s3ErrorName(err);
  return status === 412 || name === 'PreconditionFailed' || name === 'ConditionalRequestConflict' || (status === 409 && name !== 'BucketAlreadyOwnedByYou');
}

/**
 * A server may answer a conditional PUT of an existing object (412) before it has read the
 * body and close the connection; the client then sees its upload reset instead of the 412.
 */
function isUploadReset(err: unknown): boolean {
  const code = (err as { code?: string } | undefined)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE' || /\b(ECONNRESET|EPIPE)\b/.test(String((err as Error | undefined)?.message));
}

function isAuthFailure(err: unknown): boolean {
  const name = s3ErrorName(err);
  return s3ErrorStatus(err) === 403 || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch' || name === 'AccessDenied';
}

export function createS3Client(opts: S3Options = {}): S3Client {
  return new S3Client({
    region: opts.region ?? 'us-east-1',
    ...(opts.endpoint ? { endpoint: opts.endpoint } : {}),
    forcePathStyle: opts.forcePathStyle ?? Boolean(opts.endpoint),
    ...(opts.credentials ? { credentials: opts.credentials } : {}),
    // We send ChecksumSHA256 ourselves and verify sha256 on read; no extra CRC32 / aws-chunked framing.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    // A server that accepts the connection and then hangs (stopped, not killed) would otherwise
    // hold a request forever; these turn it into a TimeoutError, which the store retries.
    requestHandler: { connectionTimeout: 10_000, socketTimeout: 120_000 },
  });
}

/** Parses "s3://bucket" or "s3://bucket/some/prefix" into bucket and a prefix that is '' or ends with '/'. */
export function parseS3Location(location: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(location);
  if (!m) throw new StoreConfigError(`not an S3 location: ${JSON.stringify(location)} (expected s3://bucket[/prefix])`);
  const bucket = m[1];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new StoreConfigError(`invalid S3 bucket name ${JSON.stringify(bucket)} in ${location}`);
  }
  const rawPrefix = (m[2] ?? '').replace(/\/+$/, '');
  if (rawPrefix) assertRecordPrefix(rawPrefix); // same character rules as record keys
  return { bucket, prefix: rawPrefix ? `${rawPrefix}/` : '' };
}

/**
 * Content-addressed store in an S3 bucket: <prefix>/cas/ab/<sha>, <prefix>/records/<key>.json.
 * Uploads carry ChecksumSHA256 so the server rejects bytes damaged in transit, and use
 * If-None-Match: * so a good object is never overwritten; a corrupt one is replaced with If-Match
 * on its ETag.
 */
export class S3ArtifactStore implements ArtifactStore {
  readonly location: string;
  readonly bucket: string;
  /** '' or ends with '/'. */
  readonly prefix: string;
  /** The underlying client (exposed for tooling and tests). */
  readonly client: S3Client;
  private readonly endpoint: string;
  private readonly createBucket: boolean;
  private bucketReady: Promise<void> | undefined;
  private readonly outage: OutageTracker;

  /** `policy`: how long transient failures are retried (default: outagePolicyFromEnv()). */
  constructor(location: string, opts: S3Options & { outagePolicy?: OutagePolicy } = {}) {
    const { bucket, prefix } = parseS3Location(location);
    this.bucket = bucket;
    this.prefix = prefix;
    this.location = `s3://${bucket}${prefix ? `/${prefix.slice(0, -1)}` : ''}`;
    this.client = createS3Client(opts);
    this.endpoint = opts.endpoint ?? 'AWS S3';
    this.createBucket = opts.createBucket ?? true;
    this.outage = new OutageTracker(`${this.location} at ${this.endpoint}`, opts.outagePolicy ?? outagePolicyFromEnv());
  }

  /** The outage in progress (requests failing with transient errors and being retried), if any. */
  outageState(): OutageState | undefined {
    return this.outage.current();
  }

  /** Calls `listener` after each failed attempt of an outage, and with undefined once requests succeed again. */
  onOutage(listener: OutageListener): () => void {
    return this.outage.onOutage(listener);
  }

  /**
   * One S3 request: transient failures are retried within the outage budget; the answers the
   * store interprets itself (not found, precondition failed, conflict) are rethrown as they
   * came; any other refusal becomes an S3RequestError naming the operation and the object.
   */
  private async request<T>(operation: string, key: string, op: () => Promise<T>): Promise<T> {
    const uri = `s3://${this.bucket}/${key}`;
    try {
      return await this.outage.run(operation, uri, op);
    } catch (err) {
      if (err instanceof StoreError || isNotFound(err) || isConditionFailure(err)) throw err;
      throw new S3RequestError(operation, uri, s3ErrorName(err), s3ErrorStatus(err), describeStoreError(err), { cause: err });
    }
  }

  objectKey(sha: string): string {
    return `${this.prefix}${casKey(assertSha256(sha))}`;
  }

  private uri(sha: string): string {
    return `s3://${this.bucket}/${this.objectKey(sha)}`;
  }

  private recordObjectKey(key: string): string {
    return `${this.prefix}records/${assertRecordKey(key)}.json`;
  }

  /** Checks that the bucket is reachable, creating it when missing (once per store; retried after a failure). */
  ensureBucket(): Promise<void> {
    this.bucketReady ??= this.doEnsureBucket().catch((err) => {
      this.bucketReady = undefined;
      throw err;
    });
    return this.bucketReady;
  }

  private async doEnsureBucket(): Promise<void> {
    // With createBucket: false the bucket is assumed to exist (least-privilege credentials may not
    // be allowed to HeadBucket); errors then surface on the first object operation.
    if (!this.createBucket) return;
    const where = `bucket ${this.bucket} at ${this.endpoint}`;
    try {
      await this.request('HeadBucket', '', () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
      return;
    } catch (err) {
      if (err instanceof StoreError && !(err instanceof S3RequestError)) throw err; // outage budget spent, named already
      if (isAuthFailure(err)) {
        throw new StoreConfigError(`access to ${where} denied (${s3ErrorName(err)}): check the S3 credentials`, { cause: err });
      }
      if (s3ErrorStatus(err) !== 404) {
        throw new StoreError(`cannot reach ${where}: ${(err as Error).message}`, { cause: err });
      }
    }
    try {
      await this.request('CreateBucket', '', () => this.client.send(new CreateBucketCommand({ Bucket: this.bucket })));
    } catch (err) {
      const name = s3ErrorName(err);
      if (name === 'BucketAlreadyOwnedByYou') return; // created concurrently
      if (isAuthFailure(err) || name === 'BucketAlreadyExists') {
        throw new StoreConfigError(`cannot create ${where} (${name}): ${(err as Error).message}`, { cause: err });
      }
      throw err;
    }
  }

  private async putObject(input: Omit<PutObjectCommandInput, 'Bucket' | 'Body'> & { Body: Uint8Array }): Promise<void> {
    const command = new PutObjectCommand({
      Bucket: this.bucket,
      ContentLength: input.Body.byteLength,
      ChecksumSHA256: sha256Base64(input.Body),
      ...input,
    });
    await this.request('PutObject', input.Key!, () => this.client.send(command));
  }

  /** The object's bytes and ETag, or undefined when it does not exist. */
  private async fetch(key: string): Promise<{ data: Uint8Array; etag?: string } | undefined> {
    try {
      // the body is read inside the retried request: a server lost mid-download is retried too
      return await this.request('GetObject', key, async () => {
        const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
        if (!out.Body) throw new StoreError(`empty response body for s3://${this.bucket}/${key}`);
        return { data: await out.Body.transformToByteArray(), etag: out.ETag };
      });
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  async put(data: Uint8Array): Promise<ArtifactRef> {
    if (!(data instanceof Uint8Array)) throw new TypeError('put() expects a Uint8Array');
    await this.ensureBucket();
    const sha = sha256Hex(data);
    const key = this.objectKey(sha);
    const ref: ArtifactRef = { uri: this.uri(sha), sha256: sha, bytes: data.byteLength };
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        // content-addressed: an object already there is the common case for shared stages; a
        // HEAD costs far less than uploading the body only to have the condition refuse it
        if (!(await this.objectExists(key))) {
          await this.putObject({ Key: key, Body: data, IfNoneMatch: '*', ContentType: 'application/octet-stream' });
          return ref;
        }
      } catch (err) {
        if (!isConditionFailure(err) && !isUploadReset(err)) throw err;
      }
      // Something is already there (or being written concurrently): keep it if it is good.
      const existing = await this.fetch(key);
      if (!existing) continue; // deleted meanwhile: try the create again
      if (existing.data.byteLength === ref.bytes && sha256Hex(existing.data) === sha) return ref;
      // Corrupt: replace it, but only if it is still the same corrupt object we just read.
      try {
        await this.putObject({
          Key: key,
          Body: data,
          ContentType: 'application/octet-stream',
          ...(existing.etag ? { IfMatch: existing.etag } : {}),
        });
        return ref;
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
      await new Promise((resolve) => setTimeout(resolve, 50 * (attempt + 1)));
    }
    throw new StoreError(`put of ${ref.uri} kept conflicting with concurrent writers; giving up`);
  }

  async get(ref: ArtifactRef): Promise<Uint8Array> {
    const sha = assertSha256(ref?.sha256, 'ref.sha256');
    await this.ensureBucket();
    const uri = this.uri(sha);
    const found = await this.fetch(this.objectKey(sha));
    if (!found) throw new ArtifactNotFoundError(uri);
    checkArtifactBytes(uri, ref, sha, found.data);
    return found.data;
  }

  async has(ref: ArtifactRef | string): Promise<boolean> {
    const sha = assertSha256(typeof ref === 'string' ? ref : ref?.sha256);
    await this.ensureBucket();
    return this.objectExists(this.objectKey(sha));
  }

  private async objectExists(key: string): Promise<boolean> {
    try {
      await this.request('HeadObject', key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key })));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  verify(ref: ArtifactRef): Promise<boolean> {
    return artifactIntact(this, ref);
  }

  async delete(sha256: string): Promise<void> {
    const key = this.objectKey(sha256);
    await this.ensureBucket();
    await this.request('DeleteObject', key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key })));
  }

  private async *listKeys(prefix: string): AsyncIterable<{ key: string; size: number }> {
    await this.ensureBucket();
    let token: string | undefined;
    do {
      const command = new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token });
      const out = await this.request('ListObjectsV2', prefix, () => this.client.send(command));
      for (const obj of out.Contents ?? []) {
        if (obj.Key !== undefined) yield { key: obj.Key, size: obj.Size ?? 0 };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async *list(): AsyncIterable<{ sha256: string; bytes: number }> {
    const base = `${this.prefix}cas/`;
    for await (const { key, size } of this.listKeys(base)) {
      const parts = key.slice(base.length).split('/');
      if (parts.length === 2 && isSha256(parts[1]) && parts[1].startsWith(parts[0])) {
        yield { sha256: parts[1], bytes: size };
      }
    }
  }

  async putRecord(key: string, value: unknown): Promise<void> {
    const objectKey = this.recordObjectKey(key);
    const json = JSON.stringify(value);
    if (json === undefined) throw new StoreError(`record ${JSON.stringify(key)}: value is not JSON-serialisable`);
    await this.ensureBucket();
    await this.putObject({ Key: objectKey, Body: Buffer.from(json, 'utf8'), ContentType: 'application/json' });
  }

  async getRecord<T = unknown>(key: string): Promise<T | undefined> {
    const objectKey = this.recordObjectKey(key);
    await this.ensureBucket();
    const found = await this.fetch(objectKey);
    if (!found) return undefined;
    try {
      return JSON.parse(Buffer.from(found.data).toString('utf8')) as T;
    } catch (err) {
      throw new StoreError(`record ${JSON.stringify(key)} at s3://${this.bucket}/${objectKey} is not valid JSON`, { cause: err });
    }
  }

  async listRecords(prefix: string): Promise<string[]> {
    assertRecordPrefix(prefix);
    const base = `${this.prefix}records/`;
    const out: string[] = [];
    for await (const { key } of this.listKeys(`${base}${prefix}`)) {
      if (!key.endsWith('.json')) continue;
      out.push(key.slice(base.length, -'.json'.length));
    }
    return out.sort();
  }

  async deleteRecord(key: string): Promise<void> {
    const objectKey = this.recordObjectKey(key);
    await this.ensureBucket();
    await this.request('DeleteObject', objectKey, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: objectKey })));
  }
}

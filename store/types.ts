import type { OutageListener, OutageState } from './outage';

/** A content-addressed artifact: where it lives, its sha256 (64 lowercase hex) and its size in bytes. */
export interface ArtifactRef {
  uri: string;
  sha256: string;
  bytes: number;
}

export interface ArtifactStore {
  /** "s3://bucket/prefix" or "file:///abs/dir". */
  readonly location: string;
  /** Stores the bytes under cas/<sha[0:2]>/<sha>. Idempotent: an existing object that verifies is left alone. */
  put(data: Uint8Array): Promise<ArtifactRef>;
  /**
   * Reads the object with ref.sha256 from this store and checks its size and sha256.
   * Missing -> ArtifactNotFoundError; mismatch -> ArtifactIntegrityError.
   */
  get(ref: ArtifactRef): Promise<Uint8Array>;
  /** Whether an object with that sha256 exists (does not read or verify its bytes). */
  has(ref: ArtifactRef | string): Promise<boolean>;
  /** Reads and checks the object; false when it is missing or does not match. */
  verify(ref: ArtifactRef): Promise<boolean>;
  /** Removes the object; no error when it is already gone. */
  delete(sha256: string): Promise<void>;
  /** Every stored object (for garbage collection). */
  list(): AsyncIterable<{ sha256: string; bytes: number }>;
  /** Small mutable JSON records (run records, stage-cache index, audit history). Atomic replace. */
  putRecord(key: string, value: unknown): Promise<void>;
  getRecord<T = unknown>(key: string): Promise<T | undefined>;
  /** Keys (without the .json suffix) starting with prefix ('' lists all), sorted. */
  listRecords(prefix: string): Promise<string[]>;
  /** No error when it is already gone. */
  deleteRecord(key: string): Promise<void>;
  /**
   * Stores that talk to a server (S3) retry its outages within a budget (store/outage.ts);
   * these report the outage in progress, for heartbeats and status displays.
   */
  outageState?(): OutageState | undefined;
  onOutage?(listener: OutageListener): () => void;
}

export interface S3Credentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface S3Options {
  /** Custom endpoint, e.g. http://127.0.0.1:7070 (path-style addressing is used for custom endpoints). */
  endpoint?: string;
  /** Default us-east-1. */
  region?: string;
  /** Explicit credentials; when absent the AWS SDK's default provider chain is used (env, profile, instance role). */
  credentials?: S3Credentials;
  /** Defaults to true when an endpoint is given. */
  forcePathStyle?: boolean;
  /** Create the bucket on first use when it does not exist (default true). */
  createBucket?: boolean;
}

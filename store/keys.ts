import { createHash } from 'node:crypto';
import { InvalidKeyError } from './errors';

const SHA256_RE = /^[0-9a-f]{64}$/;
const KEY_CHARS_RE = /^[A-Za-z0-9._/-]+$/;
const MAX_KEY_LENGTH = 512;

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export function sha256Base64(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('base64');
}

export function isSha256(value: unknown): value is string {
  return typeof value === 'string' && SHA256_RE.test(value);
}

/** Throws InvalidKeyError unless `sha` is 64 lowercase hex characters. */
export function assertSha256(sha: unknown, what = 'sha256'): string {
  if (!isSha256(sha)) {
    throw new InvalidKeyError(`${what} must be 64 lowercase hex characters, got ${JSON.stringify(sha)}`);
  }
  return sha;
}

function describe(key: unknown): string {
  // JSON.stringify escapes control characters, so the message shows exactly what was passed.
  return JSON.stringify(key);
}

/**
 * Record keys are relative, '/'-separated paths over [A-Za-z0-9._-]. Rejected: empty keys, absolute
 * keys, empty segments ('a//b', trailing '/'), segments starting with '.' (which covers '.' and '..'
 * and keeps keys clear of the stores' temporary files), backslashes, control characters, anything
 * else outside the allowed set, and keys over 512 characters.
 */
export function assertRecordKey(key: unknown): string {
  const problem = recordKeyProblem(key, false);
  if (problem) throw new InvalidKeyError(`invalid record key ${describe(key)}: ${problem}`);
  return key as string;
}

/** Like assertRecordKey, but '' and a trailing '/' or partial last segment are allowed (a listing prefix). */
export function assertRecordPrefix(prefix: unknown): string {
  if (prefix === '') return prefix;
  const problem = recordKeyProblem(prefix, true);
  if (problem) throw new InvalidKeyError(`invalid record prefix ${describe(prefix)}: ${problem}`);
  return prefix as string;
}

function recordKeyProblem(key: unknown, isPrefix: boolean): string | undefined {
  if (typeof key !== 'string') return 'must be a string';
  if (key.length === 0) return 'must not be empty';
  if (key.length > MAX_KEY_LENGTH) return `must be at most ${MAX_KEY_LENGTH} characters`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(key)) return 'must not contain control characters';
  if (key.includes('\\')) return 'must not contain backslashes';
  if (key.startsWith('/')) return 'must be relative (no leading "/")';
  if (!KEY_CHARS_RE.test(key)) return 'may only contain A-Z a-z 0-9 . _ - /';
  const segments = key.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    const last = i === segments.length - 1;
    if (seg === '') {
      if (isPrefix && last) continue; // "runs/" lists everything under runs/
      return 'must not contain empty path segments';
    }
    if (seg === '..' || seg === '.') return `must not contain "${seg}" segments`;
    if (seg.startsWith('.')) return 'path segments must not start with "."';
  }
  return undefined;
}

/** Shard layout shared by both stores: cas/<sha[0:2]>/<sha>. */
export function casKey(sha: string): string {
  return `cas/${sha.slice(0, 2)}/${sha}`;
}

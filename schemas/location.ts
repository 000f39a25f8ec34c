/**
 * The rules for every location a user writes in a config, spec or request: which schemes are
 * read, what a well-formed S3 bucket and key are, and no `.`/`..` segments where a server or
 * URL parser would resolve them behind the user's back (S3 answers `s3://b/../x` with a bare
 * 400 after the retries; `new URL` quietly turns `file:///a/../b` into `/b`). Pure string
 * checks, no Node APIs: the workflows parse their inputs with the schemas that use these.
 */
import { z } from 'zod';

const SCHEME_RE = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//;
// S3's rules for bucket names: [a-z0-9.-], a letter or digit at each end, no "..", not an IP
// address, at most 63. AWS also wants at least 3, which S3-compatible servers need not: the
// store's own location (parseS3Location) insists on it, a location only on what is malformed.
const BUCKET_RE = /^[a-z0-9](?:[a-z0-9.-]{0,61}[a-z0-9])?$/;

/** Why `bucket` is not a valid S3 bucket name, or undefined when it is. */
export function s3BucketProblem(bucket: string): string | undefined {
  if (bucket === '') return 'the S3 bucket name is empty';
  if (!BUCKET_RE.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    return `invalid S3 bucket name ${JSON.stringify(bucket)} (at most 63 lower-case letters, digits, "." and "-", starting and ending with a letter or digit)`;
  }
  return undefined;
}

/** Why `key` is not a usable S3 object key (or, with `prefix`, key prefix), or undefined. */
export function s3KeyProblem(key: string, opts: { prefix?: boolean } = {}): string | undefined {
  const segments = key.split('/');
  // a prefix may end in "/" (s3://bucket/runs/); an object key may not (that names a "folder")
  if (opts.prefix && segments.length > 1 && segments[segments.length - 1] === '') segments.pop();
  for (const seg of segments) {
    if (seg === '') return `s3 ${opts.prefix ? 'prefix' : 'key'} must not contain empty segments ("//" or a trailing "/")`;
    if (seg === '.' || seg === '..') return `s3 ${opts.prefix ? 'prefix' : 'key'} must not contain '${seg}' segments`;
  }
  return undefined;
}

function decodedSegments(p: string): string[] | undefined {
  try {
    return decodeURIComponent(p).split('/');
  } catch {
    return undefined;
  }
}

export interface LocationRules {
  /** s3://bucket/key is read (data set files, models); folders and outputs are local only */
  s3: boolean;
  /** file:///abs/path is read (the activities turn it into a path) */
  fileUri: boolean;
  /** what the field must be, for the message when a scheme is refused */
  what: string;
  /** said after that message (e.g. how to get such a thing onto S3) */
  hint?: string;
}

/** Why `value` is not an acceptable location under `rules`, or undefined when it is. */
export function locationProblem(value: string, rules: LocationRules): string | undefined {
  if (value.trim() === '') return 'must not be empty';
  if (value !== value.trim()) return `${JSON.stringify(value)} starts or ends with white space`;
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(value)) return `${JSON.stringify(value)} contains control characters`;
  const allowed = [...(rules.s3 ? ['s3://bucket/key'] : []), ...(rules.fileUri ? ['file:///absolute/path'] : []), 'a local path'];
  const expected = `expected ${allowed.join(', ').replace(/, ([^,]*)$/, ' or $1')}`;
  const scheme = SCHEME_RE.exec(value)?.[1];
  // "s3:/bucket/key" and "s3:bucket/key" would otherwise be read as a relative local path
  if (scheme === undefined && /^(s3|file):/i.test(value)) return `${JSON.stringify(value)} is not a well-formed URI (${expected})`;
  if (scheme === undefined) return undefined;
  if (scheme === 's3' && rules.s3) {
    const m = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(value)!;
    const bucketProblem = s3BucketProblem(m[1]);
    if (bucketProblem) return bucketProblem;
    if (!m[2]) return `${JSON.stringify(value)} names no object (expected s3://bucket/key)`;
    return s3KeyProblem(m[2]);
  }
  if (scheme === 'file' && rules.fileUri) {
    const m = /^file:\/\/([^/]*)(\/.*)?$/.exec(value)!;
    if ((m[1] !== '' && m[1] !== 'localhost') || !m[2]) return `${JSON.stringify(value)}: a file URI must be file:///absolute/path`;
    if (/[?#]/.test(m[2])) return `${JSON.stringify(value)}: a file URI must not have a query or fragment`;
    const segments = decodedSegments(m[2]);
    if (!segments) return `${JSON.stringify(value)}: malformed percent-encoding`;
    if (segments.some((s) => s === '..' || s === '.')) return `file URI must not contain '.' or '..' segments (write the absolute path)`;
    return undefined;
  }
  if (scheme === 's3' || scheme === 'file') return `must be ${rules.what}, not ${scheme === 's3' ? 'an' : 'a'} ${scheme}:// URI${rules.hint ? ` (${rules.hint})` : ''}`;
  return `unsupported scheme "${scheme}://" (${expected})`;
}

/** A zod string checked with locationProblem; the issue's path is the field's. */
export function locationSchema(rules: LocationRules) {
  return z
    .string()
    .min(1)
    .superRefine((value, ctx) => {
      const problem = locationProblem(value, rules);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    });
}

export const FILE_RULES: LocationRules = { s3: true, fileUri: true, what: 'a file location' };
/** A file the workers read: a local path, file:// or s3:// URI. */
export const fileLocation = locationSchema(FILE_RULES).describe(
  'a local path readable by the workers, an s3://bucket/key URI, or a file:// URI',
);
/** A folder the workers read in place (image folders): S3 has no folders to read, pack one with `ntml data pack`. */
export const folderLocation = locationSchema({
  s3: false,
  fileUri: true,
  what: 'a local folder of the workers',
  hint: 'pack it into an .ntds file with `ntml data pack` to read it from S3',
});
/** A plain local path (data set folders the loaders open directly, the CLI's output folder). */
export const localPath = locationSchema({ s3: false, fileUri: false, what: 'a local path' });

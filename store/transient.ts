/**
 * Which store failures are the infrastructure's (retry them: the server will come back) and
 * which are the request's (retrying returns the same answer: fail at once, naming the object).
 *
 * Transient: the connection failed (refused, reset, timed out, host or network unreachable),
 * the server answered 5xx, or it asked us to slow down (429, SlowDown, throttling codes).
 * Permanent: every other answer the server gave (4xx: Bad Request, NoSuchBucket, AccessDenied,
 * invalid keys...), and our own errors (bad arguments, integrity failures, missing objects).
 */
import { StoreError } from './errors';

export type FailureKind = 'transient' | 'permanent';

/** Socket-level codes that mean the server (or the path to it) is down for now, not that the request is wrong. */
const TRANSIENT_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'EAI_AGAIN', // DNS answered "try again"; ENOTFOUND (no such host) is a configuration error
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** S3 error codes that say "later", whatever the HTTP status that carried them. */
const TRANSIENT_NAMES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'ProvisionedThroughputExceededException',
  'BandwidthLimitExceeded',
  'TransactionInProgressException',
  'RequestTimeout', // S3's 400 "socket not read from or written to within the timeout period"
  'RequestTimeoutException',
  'TimeoutError', // the SDK's connection or request timeout
  'InternalError',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'ServerError',
  'EC2ThrottledException',
]);

const TRANSIENT_MESSAGE = /\b(socket hang up|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|EHOSTUNREACH|ENETUNREACH|EAI_AGAIN|other side closed|connect ETIMEDOUT)\b/i;

interface ErrorShape {
  name?: string;
  Code?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
  $retryable?: { throttling?: boolean };
  cause?: unknown;
  errors?: unknown[];
}

function httpStatus(e: ErrorShape): number | undefined {
  return e.$metadata?.httpStatusCode;
}

/** The error itself, its cause chain and the members of an AggregateError (Node's happy-eyeballs connect), depth-limited. */
function* related(err: unknown, depth = 0): Iterable<ErrorShape> {
  if (!err || typeof err !== 'object' || depth > 5) return;
  const e = err as ErrorShape;
  yield e;
  if (e.cause) yield* related(e.cause, depth + 1);
  if (Array.isArray(e.errors)) for (const inner of e.errors) yield* related(inner, depth + 1);
}

/**
 * transient or permanent (see the module comment). Errors this project raises itself
 * (StoreError and its subclasses: bad keys, integrity, not found, exhausted outage budgets)
 * are permanent here: whoever raised them already decided.
 */
export function classifyStoreError(err: unknown): FailureKind {
  if (err instanceof StoreError) return err.transient ? 'transient' : 'permanent';
  for (const e of related(err)) {
    const status = httpStatus(e);
    const name = e.Code ?? e.name;
    if (name && TRANSIENT_NAMES.has(name)) return 'transient';
    if (e.$retryable?.throttling) return 'transient';
    if (status !== undefined) {
      // an answer from the server: only 5xx and 429 mean "later"
      if (status >= 500 || status === 429) return 'transient';
      return 'permanent';
    }
    if (e.code && TRANSIENT_CODES.has(e.code)) return 'transient';
    if (typeof e.message === 'string' && TRANSIENT_MESSAGE.test(e.message)) return 'transient';
  }
  return 'permanent';
}

export function isTransientStoreError(err: unknown): boolean {
  return classifyStoreError(err) === 'transient';
}

/** A one-line description of an S3/network error: code, HTTP status, message. */
export function describeStoreError(err: unknown): string {
  const e = (err ?? {}) as ErrorShape;
  const code = e.code ?? e.Code ?? (e.name && e.name !== 'Error' ? e.name : undefined);
  const status = httpStatus(e);
  let message = typeof e.message === 'string' ? e.message.split('\n')[0] : String(err);
  // AggregateError (several addresses refused) carries no message of its own
  if (!message && Array.isArray(e.errors) && e.errors.length) message = describeStoreError(e.errors[0]);
  const head = [code, status !== undefined ? `HTTP ${status}` : undefined].filter(Boolean).join(', ');
  return head && !message.includes(head) ? `${head}: ${message || '(no message)'}` : message || head || 'unknown error';
}

/** Errors raised by the artifact store. All extend StoreError so callers can catch the family. */

export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  /** Whether the failure is the infrastructure's (worth retrying later) rather than the request's. */
  get transient(): boolean {
    return false;
  }
}

/** The object (or the bucket holding it) does not exist. */
export class ArtifactNotFoundError extends StoreError {
  constructor(
    readonly uri: string,
    options?: { cause?: unknown },
  ) {
    super(`artifact not found: ${uri}`, options);
  }
}

/** The stored bytes do not match the reference: size or sha256 differ (corruption, tampering, truncation). */
export class ArtifactIntegrityError extends StoreError {
  constructor(
    readonly uri: string,
    readonly expected: { sha256: string; bytes: number },
    readonly actual: { sha256: string; bytes: number },
  ) {
    super(
      `artifact integrity check failed for ${uri}: expected sha256 ${expected.sha256} (${expected.bytes} bytes), ` +
        `got sha256 ${actual.sha256} (${actual.bytes} bytes)`,
    );
  }
}

/** The store is misconfigured: bad location, missing credentials, unreachable or refusing endpoint. */
export class StoreConfigError extends StoreError {}

/** A record key, record prefix or sha256 argument is malformed. Never retryable. */
export class InvalidKeyError extends StoreError {}

/**
 * An S3 request failed for a reason retrying cannot fix: the server refused it (a 4xx other
 * than the answers the store handles itself: Bad Request, NoSuchBucket, AccessDenied...) or
 * the client could not make it (e.g. an endpoint whose host does not exist). The message
 * names the operation and the object's URI; `code` and `status` are the server's.
 */
export class S3RequestError extends StoreError {
  constructor(
    readonly operation: string,
    readonly uri: string,
    readonly code: string | undefined,
    readonly status: number | undefined,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`S3 ${operation} of ${uri} failed (a permanent error, not retried): ${detail}`, options);
  }
}

/**
 * The S3 server stayed unreachable (connection refused or reset, timeouts, 5xx, throttling)
 * for longer than the outage budget. An infrastructure failure, so `transient`: a later
 * attempt may succeed once the server is back.
 */
export class StoreOutageError extends StoreError {
  constructor(
    readonly operation: string,
    readonly uri: string,
    readonly since: string,
    readonly attempts: number,
    readonly lastError: string,
    budgetSeconds: number,
    options?: { cause?: unknown },
  ) {
    super(
      `S3 ${operation} of ${uri}: the store has been unreachable since ${since} (${attempts} attempts, ` +
        `outage budget ${budgetSeconds} s, NTML_OUTAGE_BUDGET_SECONDS); last error: ${lastError}`,
      options,
    );
  }

  override get transient(): boolean {
    return true;
  }
}

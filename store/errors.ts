/** Errors raised by the artifact store. All extend StoreError so callers can catch the family. */

export class StoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
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

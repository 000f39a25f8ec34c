/**
 * Errors the CLI reports as one line (or a few) without a stack trace, and how a Temporal
 * failure chain becomes one readable message.
 */

/** Wrong command line or config: the fix is in what the user typed. Exit code 2. */
export class UsageError extends Error {
  readonly exitCode = 2;
  constructor(
    message: string,
    /** usage text printed after the message */
    readonly usage?: string,
  ) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A problem the user can act on (unreachable server, missing run, failed run). Exit code 1 unless given. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

interface ChainLink {
  message?: string;
  name?: string;
  type?: string | null;
  activityType?: string;
  cause?: unknown;
}

/**
 * One message for a Temporal failure chain such as WorkflowFailedError -> ActivityFailure ->
 * ApplicationFailure: the stage (activity type) it failed in and the innermost message,
 * with the failure type (e.g. DatasetError) when the application named one.
 */
export function failureMessage(err: unknown): string {
  let stage: string | undefined;
  let innermost: ChainLink | undefined;
  let node: unknown = err;
  for (let depth = 0; node && typeof node === 'object' && depth < 20; depth++) {
    const link = node as ChainLink;
    if (link.activityType && !stage) stage = link.activityType;
    if (link.message) innermost = link;
    node = link.cause;
  }
  if (!innermost) return String(err);
  const type = innermost.type && !/^(Error|ApplicationFailure)$/.test(innermost.type) ? `${innermost.type}: ` : '';
  const message = innermost.message ?? '';
  return `${stage ? `stage ${stage}: ` : ''}${message.startsWith(type) ? '' : type}${message}`;
}

const t0 = Date.now();
/** Timing notes on stderr when NTML_DEBUG is set. */
export function debug(message: string): void {
  if (process.env.NTML_DEBUG) process.stderr.write(`[debug +${((Date.now() - t0) / 1000).toFixed(1)}s] ${message}\n`);
}

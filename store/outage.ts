/**
 * Riding out an S3 outage inside the store: a transient failure (store/transient.ts) is retried
 * with capped exponential backoff until the outage budget is spent, so a server that is
 * restarted (or a network that comes back) within the budget costs the run nothing but the wait.
 * While requests fail, the store is "in an outage": listeners see when it began, how many
 * attempts failed and the last error, so the activity layer can heartbeat it and `status` can
 * say "S3 unreachable since 12:03, retrying". The first success ends the outage.
 */
import { StoreConfigError, StoreOutageError } from './errors';
import { describeStoreError, isTransientStoreError } from './transient';

/** The default budget: half an hour, long enough for a server restart or a short network partition. */
export const DEFAULT_OUTAGE_BUDGET_SECONDS = 1800;
export const DEFAULT_OUTAGE_MAX_BACKOFF_SECONDS = 30;

export interface OutagePolicy {
  /** How long one operation keeps retrying transient failures; 0: never retry. */
  budgetMs: number;
  /** First backoff; doubled after each failure... */
  initialDelayMs: number;
  /** ...up to this cap. */
  maxDelayMs: number;
}

function seconds(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) {
    throw new StoreConfigError(`${name} must be a number of seconds >= ${min}, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/**
 * NTML_OUTAGE_BUDGET_SECONDS (default 1800; 0 disables retrying) and
 * NTML_OUTAGE_MAX_BACKOFF_SECONDS (default 30, at least 0.1): the backoff starts at 0.5 s
 * (or the cap, if smaller) and doubles up to the cap.
 */
export function outagePolicyFromEnv(env: NodeJS.ProcessEnv = process.env): OutagePolicy {
  const budget = seconds(env, 'NTML_OUTAGE_BUDGET_SECONDS', DEFAULT_OUTAGE_BUDGET_SECONDS, 0);
  const cap = seconds(env, 'NTML_OUTAGE_MAX_BACKOFF_SECONDS', DEFAULT_OUTAGE_MAX_BACKOFF_SECONDS, 0.1);
  return { budgetMs: budget * 1000, initialDelayMs: Math.min(500, cap * 1000), maxDelayMs: cap * 1000 };
}

/** What listeners see while a store's requests fail for infrastructure reasons. */
export interface OutageState {
  /** the store's location, e.g. s3://ntml/ntml at http://127.0.0.1:9000 */
  store: string;
  /** ISO time of the first failure of this outage */
  since: string;
  /** failed attempts so far, over all operations */
  attempts: number;
  /** the last failure, one line (e.g. "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9000") */
  lastError: string;
  lastErrorAt: string;
  /** one line for a status display: "S3 unreachable since 12:03:07Z, retrying (7 attempts; last: ...)" */
  summary: string;
}

/** Called after each failed attempt with the state, and with undefined when a request succeeds again. */
export type OutageListener = (state: OutageState | undefined) => void;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class OutageTracker {
  private state: OutageState | undefined;
  private readonly listeners = new Set<OutageListener>();

  constructor(
    private readonly storeName: string,
    readonly policy: OutagePolicy,
  ) {}

  /** The outage in progress, if any. */
  current(): OutageState | undefined {
    return this.state ? { ...this.state } : undefined;
  }

  /** Subscribes; returns the unsubscribe function. */
  onOutage(listener: OutageListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    const snapshot = this.current();
    for (const listener of this.listeners) {
      try {
        listener(snapshot);
      } catch {
        // a listener's bug must not turn a recoverable outage into a failed write
      }
    }
  }

  private failed(err: unknown): void {
    const now = new Date().toISOString();
    const since = this.state?.since ?? now;
    const attempts = (this.state?.attempts ?? 0) + 1;
    const lastError = describeStoreError(err);
    this.state = {
      store: this.storeName,
      since,
      attempts,
      lastError,
      lastErrorAt: now,
      summary: `S3 unreachable since ${since.slice(11, 19)}Z, retrying (${attempts} attempt${attempts === 1 ? '' : 's'} failed; last: ${lastError})`,
    };
    this.notify();
  }

  private succeeded(): void {
    if (!this.state) return;
    this.state = undefined;
    this.notify();
  }

  /**
   * Runs `op`, retrying transient failures until this operation has been failing for longer
   * than the budget (then StoreOutageError). Permanent failures are rethrown at once, untouched.
   */
  async run<T>(operation: string, uri: string, op: () => Promise<T>): Promise<T> {
    let firstFailure: number | undefined;
    let delay = this.policy.initialDelayMs;
    for (;;) {
      try {
        const result = await op();
        this.succeeded();
        return result;
      } catch (err) {
        if (!isTransientStoreError(err)) {
          // the server answered (404, 4xx): it is reachable again, whatever it said
          this.succeeded();
          throw err;
        }
        const now = Date.now();
        firstFailure ??= now;
        this.failed(err);
        const left = firstFailure + this.policy.budgetMs - now;
        if (left <= 0) {
          const s = this.state!;
          throw new StoreOutageError(operation, uri, s.since, s.attempts, s.lastError, this.policy.budgetMs / 1000, { cause: err });
        }
        // full jitter on the upper half, so workers that lost the server together do not return in lockstep
        await sleep(Math.min(left, delay * (0.5 + Math.random() / 2)));
        delay = Math.min(this.policy.maxDelayMs, delay * 2);
      }
    }
  }
}

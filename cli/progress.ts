/**
 * Live progress of a purify run: the workflow's `progress` query gives the stage, the pending
 * activity's last heartbeat gives epoch/epochs, loss and batch. Polled once a second; one line
 * per change (a terminal gets one line rewritten in place per stage).
 */
import type { Client, WorkflowHandle } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { PurifyOutcome, PurifyProgress } from '../workflows/contract';
import { clock } from './format';

export interface Heartbeat {
  stage?: string;
  epoch?: number;
  epochs?: number;
  loss?: number;
  batch?: number;
  batches?: number;
  model?: string;
  /** a learned trigger's optimisation (Narcissus): the round under way, of `epochs` rounds */
  round?: number;
  /** the last epoch's diagnostics, e.g. an IAD mask phase's meanMask / emptyMasks */
  diagnostics?: Record<string, number>;
  /** the worker's store is riding out an S3 outage (activities/checkpointing.ts) */
  storeOutage?: { since?: string; attempts?: number; lastError?: string; summary?: string };
}

export interface RunSnapshot {
  status: string;
  startTime: Date;
  closeTime?: Date;
  progress?: PurifyProgress;
  /** the pending activity; `started` is false while it waits for a worker to pick it up */
  activity?: { type: string; attempt: number; started: boolean; lastFailure?: string; heartbeat?: Heartbeat };
}

export async function snapshot(client: Client, handle: WorkflowHandle, opts: { query?: boolean } = {}): Promise<RunSnapshot> {
  const d = await handle.describe();
  const s: RunSnapshot = { status: d.status.name, startTime: d.startTime, closeTime: d.closeTime };
  const pending = d.raw.pendingActivities ?? [];
  const a = pending[0];
  if (a) {
    let heartbeat: Heartbeat | undefined;
    const payload = a.heartbeatDetails?.payloads?.[0];
    if (payload) {
      try {
        heartbeat = defaultPayloadConverter.fromPayload<Heartbeat>(payload);
      } catch {
        heartbeat = undefined;
      }
    }
    s.activity = {
      type: a.activityType?.name ?? '?',
      attempt: a.attempt ?? 1,
      // PENDING_ACTIVITY_STATE_SCHEDULED = 1: no worker has picked it up yet
      started: a.state !== 1,
      lastFailure: a.lastFailure?.message ?? undefined,
      heartbeat,
    };
  }
  // the query needs a worker to answer; a closed run or a missing worker must not hang the display
  if ((opts.query ?? true) && s.status === 'RUNNING') {
    try {
      s.progress = await client.connection.withDeadline(Date.now() + 3_000, () => handle.query<PurifyProgress>('progress'));
    } catch {
      s.progress = undefined;
    }
  }
  return s;
}

/** Activity type -> the workflow's name for the stage (workflows/purify.ts). */
const STAGE_OF_ACTIVITY: Record<string, string> = {
  prepareData: 'prepareData',
  trainStandardModel: 'standardTraining',
  importStandardModel: 'standardTraining',
  computeNonTargetLabels: 'nonTargetLabels',
  trainTeacher: 'teacherTraining',
  trainNonTargetStudent: 'ntTraining',
  mutualLearning: 'mutualLearning',
  planSplit: 'splitPlan',
  splitDistillation: 'splitDistillation',
  runDefense: 'defense',
  evaluateModels: 'evaluation',
  writePurifyReport: 'report',
};

/**
 * The stage a snapshot is in: the running activity's stage (always known to the server), else the
 * workflow's own word from the query (between activities), else what the run is waiting for.
 */
export function stageOf(s: RunSnapshot): string {
  if (s.activity) return STAGE_OF_ACTIVITY[s.activity.type] ?? s.activity.type;
  return s.progress?.stage ?? (s.status === 'RUNNING' ? 'waiting for a worker' : s.status.toLowerCase());
}

/**
 * "epoch 3/6  loss 1.2345" from the heartbeat. Training heartbeats carry the number of finished
 * epochs (and that epoch's loss); batch heartbeats add batch/batches of the epoch under way,
 * which `live` shows as "epoch 4/6  batch 12/31".
 */
export function epochText(h: Heartbeat | undefined, live: boolean): string {
  if (!h) return '';
  const parts: string[] = [];
  if (h.round !== undefined && h.epochs !== undefined) {
    // rounds are short: the finished-round count would print a line a second; show checkpoints instead
    parts.push(live ? `trigger round ${h.round}/${h.epochs}` : `trigger rounds ${h.epoch ?? 0}/${h.epochs} checkpointed`);
  } else if (h.epochs !== undefined) {
    const finished = h.epoch ?? 0;
    if (live && h.batch !== undefined && h.batches !== undefined && finished < h.epochs) {
      parts.push(`epoch ${finished + 1}/${h.epochs}  batch ${h.batch}/${h.batches}`);
    } else if (finished === 0) {
      parts.push(`${h.epochs} epoch${h.epochs === 1 ? '' : 's'}`);
    } else {
      parts.push(`epoch ${finished}/${h.epochs}`);
    }
  }
  if (h.loss !== undefined && Number.isFinite(h.loss)) parts.push(`loss ${h.loss.toFixed(4)}`);
  for (const [name, v] of Object.entries(h.diagnostics ?? {})) {
    parts.push(`${name} ${Number(v.toPrecision(3))}`);
  }
  if (h.model) parts.push(`model ${h.model}`);
  return parts.join('  ');
}

/**
 * "S3 unreachable since 12:03:07Z, retrying (7 attempts failed; last: ECONNREFUSED)" from the
 * heartbeat of an activity whose store is in an outage; '' when there is none. Only the last
 * error's code is shown (the full message names the endpoint, already known to the user).
 */
export function outageText(h: Heartbeat | undefined): string {
  const o = h?.storeOutage;
  if (!o || typeof o !== 'object') return '';
  const since = typeof o.since === 'string' && !Number.isNaN(Date.parse(o.since)) ? `${new Date(o.since).toISOString().slice(11, 19)}Z` : undefined;
  const n = typeof o.attempts === 'number' ? o.attempts : undefined;
  if (!since || n === undefined) return typeof o.summary === 'string' ? o.summary.split('\n')[0] : 'S3 unreachable, retrying';
  const last = typeof o.lastError === 'string' && o.lastError ? `; last: ${errorCode(o.lastError)}` : '';
  return `S3 unreachable since ${since}, retrying (${n} attempt${n === 1 ? '' : 's'} failed${last})`;
}

/** "ECONNREFUSED" from "ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:9000"; other errors' first line. */
function errorCode(message: string): string {
  const first = message.split('\n')[0];
  const code = /\b(E[A-Z]{3,}|UND_ERR_[A-Z_]+)\b/.exec(first);
  return code ? code[1] : first.slice(0, 80);
}

function line(s: RunSnapshot, tty: boolean): { key: string; text: string; stage: string } {
  const stage = stageOf(s);
  const hb = s.activity?.heartbeat;
  const waiting = Boolean(s.activity && !s.activity.started && !hb);
  const epoch = waiting ? 'waiting for a training worker' : epochText(hb, tty);
  const retry = s.activity && s.activity.attempt > 1 ? `attempt ${s.activity.attempt}${s.activity.lastFailure ? ` after: ${s.activity.lastFailure.split('\n')[0]}` : ''}` : '';
  const elapsed = clock((Date.now() - s.startTime.getTime()) / 1000);
  const outage = outageText(hb);
  const text = [`[${elapsed.padStart(5)}] ${stage.padEnd(18)}`, epoch, retry ? `(${retry})` : '', outage].filter(Boolean).join('  ');
  // a new line (non-TTY) when the stage, the finished-epoch count or the attempt changes, or an
  // outage begins or ends (not at each failed attempt: that would print a line every few seconds)
  const key = [stage, waiting ? 'waiting' : epochText(hb, false), retry, outage ? 'outage' : ''].join('|');
  return { key, text, stage };
}

/**
 * Calls `poll` every `everyMs`, never two at once: a worker busy training in this process answers
 * queries between batches, and overlapping polls would queue up until the server expires them.
 * A poll's failure is the poll's to handle (the next one answers); `stop` ends the polling.
 */
export function pollInTurn(poll: () => Promise<void>, everyMs: number): { stop: () => void } {
  let polling = false;
  const timer = setInterval(() => {
    if (polling) return;
    polling = true;
    poll()
      .catch(() => undefined)
      .finally(() => {
        polling = false;
      });
  }, everyMs);
  return { stop: () => clearInterval(timer) };
}

export interface WatchOptions {
  out: NodeJS.WriteStream;
  tty: boolean;
  signal?: AbortSignal;
  /** rejects when the local workers die: stops watching with that error */
  failed?: Promise<never>;
  intervalMs?: number;
  /** the server, for the "Temporal unreachable" message */
  address?: string;
}

/**
 * Shows progress until the run ends and returns its outcome; throws the run's failure.
 * Resolves to undefined when `signal` aborts first.
 */
export async function watchRun(client: Client, handle: WorkflowHandle, o: WatchOptions): Promise<PurifyOutcome | undefined> {
  let lastKey = '';
  let lastStage = '';
  let openLine = false;
  const width = () => Math.max(40, (o.out.columns || 120) - 1);
  const endLine = () => {
    if (openLine) o.out.write('\n');
    openLine = false;
  };
  // a Temporal restart (the stack's supervisor brings it back on its port) is waited out, not a failed run
  const { retryWhileUnreachable, WaitAborted } = await import('./connection');
  const result = retryWhileUnreachable(() => handle.result() as Promise<PurifyOutcome>, {
    signal: o.signal,
    address: o.address,
    say: (l) => {
      endLine();
      o.out.write(`${l}\n`);
    },
  });
  result.catch(() => undefined);
  let settled = false;
  const done = result.then(
    () => undefined,
    () => undefined,
  );
  done.then(() => (settled = true));
  const interval = o.intervalMs ?? 1000;
  const aborted = new Promise<void>((resolve) => {
    if (o.signal?.aborted) resolve();
    o.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  try {
    while (!settled && !o.signal?.aborted) {
      let s: RunSnapshot | undefined;
      try {
        s = await Promise.race([snapshot(client, handle), aborted.then(() => undefined)]);
      } catch {
        s = undefined; // transient: try again next tick
      }
      if (s && !settled) {
        const l = line(s, o.tty);
        if (o.tty) {
          if (l.stage !== lastStage && lastStage) endLine();
          o.out.write(`\r\x1b[2K${l.text.slice(0, width())}`);
          openLine = true;
        } else if (l.key !== lastKey) {
          o.out.write(`${l.text}\n`);
        }
        lastKey = l.key;
        lastStage = l.stage;
      }
      await Promise.race([done, aborted, new Promise((r) => setTimeout(r, interval)), ...(o.failed ? [o.failed] : [])]);
    }
  } finally {
    endLine();
  }
  if (o.signal?.aborted && !settled) return undefined;
  try {
    return await result;
  } catch (err) {
    if (err instanceof WaitAborted) return undefined; // Ctrl-C while Temporal was down
    throw err;
  }
}

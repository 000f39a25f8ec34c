/**
 * Soak: a 50-cell tiny sweep while a killer SIGKILLs a random process of the deployment every
 * 20-60 s (the Temporal dev server, versitygw, the training worker, the orchestration worker),
 * against the same sweep run first without faults. Not part of CI.
 *
 *   node dist/bench/soak.js [--cells 50] [--epochs 2] [--concurrency 2] [--seed 1]
 *                           [--min-interval 20] [--max-interval 60] [--out bench/results]
 *
 * One local stack (Temporal dev server + versitygw) supervised by this process, which restarts
 * a killed server on its port with its data, as `ntml stack` does; the workers are processes
 * (node dist/workers/*.js) that this bench restarts when they die, as a deployment's process
 * manager would. The two sweeps write to different store prefixes, so the faulted one reuses
 * nothing of the fault-free one. Reports: cells completed, faults injected by process, retries
 * (activity attempts beyond the first, from each cell's workflow history), work lost, and
 * whether every cell's purified model has the fault-free run's sha256.
 *
 * Writes bench/results/soak.json and soak.md.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { findRepoRoot } from '../store/repoRoot';
import { UsageError } from '../cli/errors';
import { parseBenchArgs, type OptionSpecs } from './args';
import { startLocalStack, type LocalStack } from '../infra/stack';
import { storeFromEnv } from '../store';
import { Rng } from '../core/rng';
import { tinySweep } from '../test/support/tinySweep';
import type { SweepCellRecord } from '../core/report/records';
import type { SweepOutcome } from '../workflows/contract';

interface Options {
  cells: number;
  epochs: number;
  concurrency: number;
  seed: number;
  minInterval: number;
  maxInterval: number;
  out: string;
}

const root = findRepoRoot(__dirname) ?? process.cwd();

const USAGE = 'usage: soak.js [--cells 50] [--epochs 2] [--concurrency 2] [--seed 1] [--min-interval 20] [--max-interval 60] [--out bench/results]';

const OPTIONS: OptionSpecs = Object.fromEntries(
  ['cells', 'epochs', 'concurrency', 'seed', 'min-interval', 'max-interval', 'out'].map((n) => [n, { type: 'string' }]),
);

export function parseOptions(argv: string[]): Options {
  const a = parseBenchArgs(argv, OPTIONS, USAGE);
  const o: Options = {
    cells: a.integer('cells', 50),
    epochs: a.integer('epochs', 2),
    concurrency: a.integer('concurrency', 2),
    seed: a.integer('seed', 1),
    // seconds between faults: fractions are fine
    minInterval: a.positiveNumber('min-interval', 20),
    maxInterval: a.positiveNumber('max-interval', 60),
    out: a.path('out', path.join(root, 'bench', 'results')),
  };
  if (o.cells % 2 !== 0) throw new UsageError(`--cells must be an even number (two attacks x cells/2 seeds), got ${o.cells}`);
  if (o.minInterval > o.maxInterval) throw new UsageError(`--min-interval (${o.minInterval}) must not exceed --max-interval (${o.maxInterval})`);
  return o;
}

/** Tiny NT-ML cells: every stage kind runs (data, three trained stages with checkpoints, split, evaluation), in seconds. */
function spec(name: string, o: Options) {
  return tinySweep(
    name,
    { attack: [{ name: 'badnets' }, { name: 'blended' }], defense: [{ name: 'ntml' }], seed: { from: 1, to: o.cells / 2 } },
    { epochs: o.epochs, mlEpochs: o.epochs, concurrency: o.concurrency },
  );
}

type Victim = 'temporal' | 's3' | 'training worker' | 'orchestration worker';
const VICTIMS: Victim[] = ['temporal', 's3', 'training worker', 'orchestration worker'];

interface Fault {
  atSeconds: number;
  victim: Victim;
  pid: number;
}

/** A worker process that is started again whenever it dies, until stop(). */
class KeptWorker {
  child!: ChildProcess;
  restarts = 0;
  private stopping = false;
  constructor(
    private readonly kind: 'training' | 'orchestration',
    private readonly env: NodeJS.ProcessEnv,
    private readonly log: NodeJS.WritableStream,
  ) {
    this.start();
  }
  private start(): void {
    if (this.stopping) return; // a restart scheduled just before stop()
    const child = spawn(process.execPath, [path.join(root, 'dist', 'workers', `${this.kind}.js`)], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.pipe(this.log, { end: false });
    child.stderr!.pipe(this.log, { end: false });
    child.once('exit', () => {
      if (this.stopping) return;
      this.restarts++;
      setTimeout(() => this.start(), 1_000);
    });
    this.child = child;
  }
  async stop(): Promise<void> {
    this.stopping = true;
    const c = this.child;
    if (c.exitCode !== null || c.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once('exit', () => resolve());
      c.kill('SIGKILL');
    });
  }
}

interface CellResult {
  cellId: string;
  status: string;
  sha256?: string;
  /** activity attempts beyond the first */
  retries: number;
  /** of those, retries after a heartbeat or start timeout (a killed worker) */
  timedOut: number;
  /** fractions of an epoch in progress when a training attempt was lost (from its last heartbeat) */
  partialEpochsLost: number;
  /** lost attempts whose last heartbeat said nothing about the epoch in progress */
  lostAttemptsWithoutProgress: number;
  /** epochs a retried stage did not recompute because it resumed from a checkpoint */
  epochsResumed: number;
  /** each retry: the activity, its attempt, the previous attempt's end */
  retried: string[];
}

interface PhaseResult {
  name: string;
  faults: Fault[];
  wallSeconds: number;
  completed: number;
  failed: Array<{ cellId: string; error: string }>;
  workerRestarts: Record<string, number>;
  serverRestarts: Record<string, number>;
  cells: CellResult[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function runPhase(stack: LocalStack, name: string, o: Options, withFaults: boolean, logFile: string): Promise<PhaseResult> {
  const { Client, Connection } = await import('@temporalio/client');
  const { retryWhileUnreachable } = await import('../cli/connection');
  const id = `soak-${name}-${Date.now().toString(36)}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...stack.env,
    // a store prefix per phase: the faulted sweep reuses no stage of the fault-free one
    NTML_STORE: `s3://${stack.s3!.bucket}/${id}`,
    NTML_ORCHESTRATION_TASK_QUEUE: `orch-${id}`,
    NTML_TRAINING_TASK_QUEUE: `train-${id}`,
    NTML_OUTAGE_MAX_BACKOFF_SECONDS: '2',
    NTML_SHUTDOWN_GRACE_SECONDS: '5',
  };
  const log = createWriteStream(logFile, { flags: 'a' });
  const workers = { training: new KeptWorker('training', env, log), orchestration: new KeptWorker('orchestration', env, log) };
  const restarts0 = { ...(stack.supervisor?.restarts ?? {}) } as Record<string, number>;
  const connection = await Connection.connect({ address: stack.env.NTML_TEMPORAL_ADDRESS! });
  const client = new Client({ connection });
  const faults: Fault[] = [];
  const t0 = Date.now();
  let done = false;
  const rng = new Rng(o.seed);
  const killer = (async () => {
    if (!withFaults) return;
    while (!done) {
      const waitMs = (o.minInterval + rng.next() * (o.maxInterval - o.minInterval)) * 1000;
      const until = Date.now() + waitMs;
      while (!done && Date.now() < until) await sleep(200);
      if (done) return;
      const victim = VICTIMS[rng.int(VICTIMS.length)];
      const pid =
        victim === 'temporal' ? stack.temporal!.pid : victim === 's3' ? stack.s3!.pid : victim === 'training worker' ? workers.training.child.pid! : workers.orchestration.child.pid!;
      try {
        process.kill(pid, 'SIGKILL');
        faults.push({ atSeconds: (Date.now() - t0) / 1000, victim, pid });
        console.log(`[soak ${name}] ${((Date.now() - t0) / 1000).toFixed(0)} s: SIGKILL ${victim} (pid ${pid})`);
      } catch (err) {
        console.log(`[soak ${name}] ${victim} (pid ${pid}) was not running: ${(err as Error).message}`);
      }
    }
  })();
  // every call to Temporal waits out its restarts (the killer may have just taken it down)
  const call = <T>(f: () => Promise<T>) => retryWhileUnreachable(f, { budgetMs: 600_000, say: (l) => console.log(`[soak ${name}] ${l}`) });
  try {
    const handle = await call(() =>
      client.workflow.start('sweep', {
        taskQueue: `orch-${id}`,
        workflowId: `sweep-${id}`,
        args: [{ spec: spec(id, o), options: { trainingTaskQueue: `train-${id}`, heartbeatTimeoutSeconds: 10 } }],
      }),
    );
    const outcome = (await call(() => handle.result())) as SweepOutcome;
    const wallSeconds = (Date.now() - t0) / 1000;
    done = true;
    await killer;
    console.log(`[soak ${name}] ${outcome.completed} cells completed in ${wallSeconds.toFixed(0)} s, ${faults.length} faults`);
    const store = storeFromEnv(env);
    const keys = await store.listRecords(`sweeps/${id}/cells/`); // the store rides out its own outages
    const records = await Promise.all(keys.map(async (k) => (await store.getRecord<SweepCellRecord>(k))!));
    const cells: CellResult[] = [];
    for (const r of records) cells.push({ ...(await attempts(client, r.workflowId, call)), cellId: r.cellId, status: r.status, sha256: r.purifiedModel?.sha256, epochsResumed: sumResumed(r) });
    const restarts = (stack.supervisor?.restarts ?? {}) as Record<string, number>;
    return {
      name,
      faults,
      wallSeconds,
      completed: outcome.completed,
      failed: outcome.failed,
      workerRestarts: { training: workers.training.restarts, orchestration: workers.orchestration.restarts },
      serverRestarts: Object.fromEntries(Object.entries(restarts).map(([k, v]) => [k, v - (restarts0[k] ?? 0)])),
      cells: cells.sort((a, b) => a.cellId.localeCompare(b.cellId)),
    };
  } finally {
    done = true;
    await killer;
    await workers.training.stop();
    await workers.orchestration.stop();
    await connection.close();
    log.end();
  }
}

function sumResumed(r: SweepCellRecord): number {
  return (r.stages ?? []).reduce((a, s) => a + (s.resumedFromEpoch ?? 0), 0);
}

/**
 * Retries and lost work of one cell, from its workflow history. A retried attempt's start
 * event carries the previous attempt's failure (an attempt that failed and was retried is no
 * event of its own): a killed worker's attempt ends by heartbeat timeout, and that timeout
 * carries the attempt's last heartbeat, which says how far into the epoch after its last
 * checkpoint it was. That part of an epoch is what the retry recomputes; finished epochs are
 * not (the retry resumes from the newest checkpoint).
 */
async function attempts(
  client: import('@temporalio/client').Client,
  workflowId: string,
  call: <T>(f: () => Promise<T>) => Promise<T>,
): Promise<Omit<CellResult, 'cellId' | 'status' | 'sha256' | 'epochsResumed'>> {
  const { defaultPayloadConverter } = await import('@temporalio/common');
  const history = await call(() => client.workflow.getHandle(workflowId).fetchHistory());
  let retries = 0;
  let timedOut = 0;
  let partialEpochsLost = 0;
  let lostAttemptsWithoutProgress = 0;
  const scheduled = new Map<string, string>();
  const retried: string[] = [];
  for (const e of history.events ?? []) {
    const type = e.activityTaskScheduledEventAttributes?.activityType?.name;
    if (type) scheduled.set(String(e.eventId), type);
    const started = e.activityTaskStartedEventAttributes;
    if (!started || (started.attempt ?? 1) <= 1) continue;
    retries++;
    const activity = scheduled.get(String(started.scheduledEventId)) ?? '?';
    const failure = started.lastFailure;
    const timeout = failure?.timeoutFailureInfo;
    if (!timeout) {
      retried.push(`${activity} attempt ${started.attempt} after: ${failure?.applicationFailureInfo?.type ?? failure?.message ?? '?'}`);
      continue;
    }
    timedOut++;
    const payload = timeout.lastHeartbeatDetails?.payloads?.[0];
    let beat: { epoch?: number; batch?: number; batches?: number } | undefined;
    try {
      beat = payload ? (defaultPayloadConverter.fromPayload(payload) as typeof beat) : undefined;
    } catch {
      beat = undefined;
    }
    const at = beat ? ` (last heartbeat: epoch ${beat.epoch ?? '-'}, batch ${beat.batch ?? '-'}/${beat.batches ?? '-'})` : ' (no heartbeat)';
    retried.push(`${activity} attempt ${started.attempt} after a timeout${at}`);
    if (beat && typeof beat.batch === 'number' && typeof beat.batches === 'number' && beat.batches > 0) partialEpochsLost += beat.batch / beat.batches;
    else lostAttemptsWithoutProgress++;
  }
  return { retries, timedOut, partialEpochsLost, lostAttemptsWithoutProgress, retried };
}

async function main() {
  const o = parseOptions(process.argv.slice(2));
  const stackDir = path.join(root, '.ntml', `soak-stack-${process.pid}`);
  const logFile = path.join(root, '.ntml', `soak-workers-${process.pid}.log`);
  const stack = await startLocalStack({ dir: stackDir, log: (m) => console.log(`[stack] ${m}`) });
  const load0 = os.loadavg();
  const t0 = Date.now();
  const loads: number[] = [];
  const sampler = setInterval(() => loads.push(os.loadavg()[0]), 10_000);
  try {
    const reference = await runPhase(stack, 'fault-free', o, false, logFile);
    const soak = await runPhase(stack, 'faulted', o, true, logFile);
    const refSha = new Map(reference.cells.map((c) => [c.cellId, c.sha256]));
    const compared = soak.cells.map((c) => ({ cellId: c.cellId, same: c.sha256 !== undefined && c.sha256 === refSha.get(c.cellId) }));
    const byVictim = Object.fromEntries(VICTIMS.map((v) => [v, soak.faults.filter((f) => f.victim === v).length]));
    const sum = (f: (c: CellResult) => number) => soak.cells.reduce((a, c) => a + f(c), 0);
    const summary = {
      cells: o.cells,
      completed: soak.completed,
      failed: soak.failed.length,
      faults: soak.faults.length,
      faultsByProcess: byVictim,
      retries: sum((c) => c.retries),
      timedOutAttempts: sum((c) => c.timedOut),
      partialEpochsLost: Number(sum((c) => c.partialEpochsLost).toFixed(2)),
      lostAttemptsWithoutProgress: sum((c) => c.lostAttemptsWithoutProgress),
      epochsResumed: sum((c) => c.epochsResumed),
      sameAsFaultFree: compared.filter((c) => c.same).length,
      differing: compared.filter((c) => !c.same).map((c) => c.cellId),
      allEqual: compared.length === reference.cells.length && compared.every((c) => c.same),
    };
    const meta = {
      measuredAt: new Date().toISOString(),
      command: `node dist/bench/soak.js --cells ${o.cells} --epochs ${o.epochs} --concurrency ${o.concurrency} --seed ${o.seed} --min-interval ${o.minInterval} --max-interval ${o.maxInterval}`,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.availableParallelism(),
      loadAverageStart: load0,
      loadAverageEnd: os.loadavg(),
      loadAverageMean1m: loads.length ? loads.reduce((a, b) => a + b, 0) / loads.length : os.loadavg()[0],
      totalSeconds: (Date.now() - t0) / 1000,
    };
    await fs.mkdir(o.out, { recursive: true });
    await fs.writeFile(path.join(o.out, 'soak.json'), `${JSON.stringify({ meta, summary, reference, soak }, null, 2)}\n`);
    await fs.writeFile(path.join(o.out, 'soak.md'), markdown(meta, summary, reference, soak, o));
    console.log(`wrote ${path.join(o.out, 'soak.md')}`);
    console.log(JSON.stringify(summary));
  } finally {
    clearInterval(sampler);
    await stack.stop();
    await fs.rm(stackDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function markdown(meta: Record<string, unknown>, s: Record<string, unknown>, reference: PhaseResult, soak: PhaseResult, o: Options): string {
  const la = (v: unknown) => (v as number[]).map((x) => x.toFixed(2)).join(' / ');
  const byVictim = s.faultsByProcess as Record<string, number>;
  return [
    '# Soak: a tiny sweep while stack processes are killed',
    '',
    `Measured ${meta.measuredAt} with \`${meta.command}\` (bench/soak.ts) on ${meta.cpu}, ${meta.cores} cores.`,
    `Load average (1/5/15 min) ${la(meta.loadAverageStart)} at the start, ${la(meta.loadAverageEnd)} at the end; mean 1-min load ${Number(meta.loadAverageMean1m).toFixed(2)} over the run`,
    `(the bench's own servers and workers included; other work shared the machine). Total ${Number(meta.totalSeconds).toFixed(0)} s.`,
    '',
    `Cells: ${o.cells} ci-tier NT-ML cells (BadNets and Blended x seeds 1-${o.cells / 2}; synthetic data, 400 training images, tinyCnn,`,
    `${o.epochs} epochs of standard training and of mutual learning, 1 of NT and split training), concurrency ${o.concurrency}.`,
    `The same sweep ran first without faults (${reference.wallSeconds.toFixed(0)} s), then with a SIGKILL of a random process every`,
    `${o.minInterval}-${o.maxInterval} s (seeded, --seed ${o.seed}): the Temporal dev server and versitygw (restarted on their ports by the stack's`,
    'supervisor), the training or the orchestration worker (restarted by the bench after 1 s, as a process manager would).',
    '',
    '| | fault-free | faulted |',
    '|---|---|---|',
    `| cells completed | ${reference.completed} / ${o.cells} | ${soak.completed} / ${o.cells} |`,
    `| wall time s | ${reference.wallSeconds.toFixed(0)} | ${soak.wallSeconds.toFixed(0)} |`,
    `| faults injected | 0 | ${soak.faults.length} (Temporal ${byVictim.temporal}, versitygw ${byVictim.s3}, training worker ${byVictim['training worker']}, orchestration worker ${byVictim['orchestration worker']}) |`,
    `| activity retries (attempts > 1) | ${reference.cells.reduce((a, c) => a + c.retries, 0)} | ${s.retries} |`,
    `| of which after a timeout (a killed worker's attempt) | ${reference.cells.reduce((a, c) => a + c.timedOut, 0)} | ${s.timedOutAttempts} |`,
    `| work lost: epochs recomputed (partial epochs of lost training attempts) | 0 | ${s.partialEpochsLost} (+${s.lostAttemptsWithoutProgress} lost attempts whose last heartbeat gave no batch progress: before the first batch, or not a training stage) |`,
    `| epochs not recomputed (retried stages resumed from a checkpoint) | ${reference.cells.reduce((a, c) => a + c.epochsResumed, 0)} | ${s.epochsResumed} |`,
    `| cells whose purified model has the fault-free sha256 | - | ${s.sameAsFaultFree} / ${o.cells}${(s.differing as string[]).length ? ` (differ: ${(s.differing as string[]).join(', ')})` : ''} |`,
    '',
    `Every final result equals the fault-free run's: **${s.allEqual ? 'yes' : 'no'}**.`,
    '',
    'How the counts are measured: retries are activity attempts beyond the first in each cell\'s purify workflow history (a',
    'retried attempt\'s start names the previous attempt\'s failure); a killed worker\'s attempt ends by heartbeat timeout (10 s',
    'here), and the timeout carries the attempt\'s last heartbeat',
    '(`batch` of `batches` into the epoch after its last checkpoint), which is the part of an epoch its retry recomputes.',
    'Finished epochs are not recomputed: a retry resumes from the newest checkpoint (the stage report\'s `resumedFromEpoch`,',
    'summed in the last row). A killed server costs no attempt when the activity rides the outage out (S3 outage budget, Temporal',
    'reconnects). Faults by time: ' + (soak.faults.map((f) => `${f.atSeconds.toFixed(0)} s ${f.victim}`).join(', ') || 'none') + '.',
    '',
    'Retries of the faulted sweep, by cell:',
    '',
    ...(soak.cells.flatMap((c) => c.retried.map((r) => `- ${c.cellId}: ${r}`)).length ? soak.cells.flatMap((c) => c.retried.map((r) => `- ${c.cellId}: ${r}`)) : ['- none']),
    '',
  ].join('\n');
}

// a test imports parseOptions; only running the file runs the soak
if (require.main === module) {
  main().catch((err) => {
    // a wrong flag is one line; anything else keeps its stack
    console.error(err instanceof UsageError ? err.message : err);
    process.exit(1);
  });
}

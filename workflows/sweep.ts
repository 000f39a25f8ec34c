/**
 * sweep: runs the cells of a sweep spec as child `purify` workflows in a sliding window
 * (never more than `concurrency` at once). Cells that share their expensive stages
 * (data, attack, model, training recipe, seed; a learned trigger whatever the fields it does not
 * read, such as Narcissus' rate) wait until the first such cell has stored them (it signals after
 * standard training), then reuse them from the stage cache. Failed
 * cells are recorded and do not fail the sweep.
 * Before the history grows large the workflow continues as new with its bookkeeping.
 */
import {
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  executeChild,
  patched,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type * as activities from '../activities';
import { cellLabel, dataLocations, expandSweep, parseSweepSpec, sharedStageKey, type SweepCell, type SweepSpec } from '../schemas/sweep';
import {
  PROGRESS_QUERY,
  TRAINING_TASK_QUEUE,
  type PurifyInput,
  type PurifyOutcome,
  type SweepCellRecord,
  type SweepInput,
  type SweepOutcome,
  type SweepProgress,
  type SweepState,
} from './contract';
import { sharedStagesReadySignal } from './purify';

export const sweepProgressQuery = defineQuery<SweepProgress>(PROGRESS_QUERY);

export async function sweep(input: SweepInput): Promise<SweepOutcome> {
  const bookkeeping = bookkeepingActivities(input.options);
  const { spec, cells: pathHashed } = parseSpec(input.spec);
  const state: SweepState = input.state ?? { finished: [], failed: [], reused: 0, continuedAsNew: 0, durations: [] };
  // answered while a worker computes the data's digest (the cells' ids wait for it)
  setHandler(sweepProgressQuery, () => ({
    sweep: spec.name,
    total: pathHashed.length,
    done: state.finished.length,
    running: [],
    failed: state.failed.length,
    reused: state.reused,
    continuedAsNew: state.continuedAsNew,
  }));
  const cells = await contentHashedCells(spec, pathHashed, input.options);
  const book = new CellBook(cells, state, workflowInfo().workflowId);
  setHandler(sweepProgressQuery, () => book.progress(spec));
  if (!input.state) await bookkeeping.writeSweepSpec({ sweep: spec.name, spec: input.spec, cellIds: cells.map((c) => c.id) });

  const childOptions: PurifyInput['options'] = { ...input.options, announceSharedStages: true };
  const runCell = async (cell: SweepCell): Promise<void> => {
    const existing = await bookkeeping.readSweepCell({ sweep: spec.name, cellId: cell.id });
    if (existing?.status === 'completed') return book.reused(cell.id);
    const record = await runChild(spec, cell, book.childId(cell), childOptions);
    await bookkeeping.writeSweepCell({ record });
    book.settle(cell.id, record);
  };

  const allLaunched = await runWindow(cells, spec.concurrency, book, runCell);
  if (!allLaunched) {
    await continueAsNew<typeof sweep>({ spec: input.spec, options: input.options, state: book.carriedState() });
  }
  return { sweep: spec.name, total: cells.length, completed: book.finished.size, failed: state.failed, reused: state.reused };
}

function parseSpec(raw: unknown): { spec: SweepSpec; cells: SweepCell[] } {
  try {
    const spec = parseSweepSpec(raw);
    return { spec, cells: expandSweep(spec) };
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'InvalidSweepSpec');
  }
}

/**
 * The spec's cells with ids that hash the data's content digest, not its folder (a bundle's
 * cells are found again wherever the data lies). A sweep that started before content digests
 * keeps its path-hashed ids when its history is replayed (the patch marker is absent there).
 */
async function contentHashedCells(spec: SweepSpec, pathHashed: SweepCell[], options: SweepInput['options']): Promise<SweepCell[]> {
  const data = (spec.base as { data?: unknown }).data;
  // generated data names no folder: its ids are location-free already, and it costs no activity
  if (dataLocations(data).length === 0 || !patched('cell-ids-hash-data-content')) return pathHashed;
  const dataContent = await dataDigestActivity(options)({ data });
  return dataContent ? expandSweep(spec, { dataContent }) : pathHashed;
}

function bookkeepingActivities(options: SweepInput['options']) {
  return proxyActivities<typeof activities>({
    taskQueue: options?.trainingTaskQueue ?? TRAINING_TASK_QUEUE,
    // store bookkeeping takes well under a second; an attempt on a lost worker is retried after 20 s
    startToCloseTimeout: '20s',
    retry: { maximumAttempts: 10 },
  });
}

/** Hashing the data reads all of it (CIFAR-10: 180 MB, about a second; a large image folder: minutes): heartbeats, not a short deadline, tell a lost worker. */
function dataDigestActivity(options: SweepInput['options']) {
  return proxyActivities<typeof activities>({
    taskQueue: options?.trainingTaskQueue ?? TRAINING_TASK_QUEUE,
    startToCloseTimeout: '1h',
    heartbeatTimeout: (options?.heartbeatTimeoutSeconds ?? 120) * 1000,
    retry: { maximumAttempts: 10 },
  }).sweepDataContent;
}

/** One cell as a child purify workflow on the sweep's own task queue; a failure becomes the cell's record. */
async function runChild(spec: SweepSpec, cell: SweepCell, workflowId: string, options: PurifyInput['options']): Promise<SweepCellRecord> {
  const startedAt = Date.now();
  const cellFields = { sweep: spec.name, cellId: cell.id, axes: cell.axes, config: cell.config };
  try {
    const outcome = (await executeChild('purify', {
      workflowId,
      taskQueue: workflowInfo().taskQueue,
      args: [{ config: cell.config, options } satisfies PurifyInput],
    })) as PurifyOutcome;
    return {
      ...cellFields,
      status: 'completed',
      workflowId,
      startedAt,
      endedAt: Date.now(),
      metrics: outcome.summary.metrics,
      der: outcome.summary.der,
      split: outcome.summary.split,
      stages: outcome.summary.stages,
      report: outcome.report,
      purifiedModel: outcome.purifiedModel,
    };
  } catch (err) {
    const cause = (err as { cause?: Error }).cause;
    const error = (cause?.message ?? (err as Error).message).slice(0, 2000);
    return { ...cellFields, status: 'failed', error, workflowId, startedAt, endedAt: Date.now() };
  }
}

/**
 * Launches ready cells while fewer than `concurrency` run, until every cell is settled.
 * False when Temporal suggested continue-as-new: the running cells were let finish and the
 * rest is left to the next run.
 */
async function runWindow(cells: SweepCell[], concurrency: number, book: CellBook, runCell: (cell: SweepCell) => Promise<void>): Promise<boolean> {
  const groups = new SharedStageGroups(cells, book);
  let stopLaunching = false;
  while (cells.some((c) => !book.settled(c.id))) {
    if (workflowInfo().continueAsNewSuggested) stopLaunching = true;
    if (!stopLaunching) {
      for (const cell of cells) {
        if (book.running.size >= concurrency) break;
        if (!groups.ready(cell)) continue;
        book.launch(cell.id);
        void runCell(cell).catch((err: Error) => book.bookkeepingFailed(cell.id, err));
      }
    }
    if (book.running.size === 0) {
      if (stopLaunching) break;
      // nothing ready and nothing running cannot happen: every group has a runnable leader
      throw ApplicationFailure.nonRetryable('sweep scheduler found no runnable cell', 'SweepSchedulerError');
    }
    const before = book.settledCount();
    const storedBefore = groups.storedCount();
    await condition(() => book.settledCount() > before || book.running.size === 0 || groups.storedCount() > storedBefore);
  }
  return !cells.some((c) => !book.settled(c.id));
}

/**
 * The first cell of each shared-stage group runs before the rest of its group, until it has
 * stored the shared stages (its signal) or ended.
 */
class SharedStageGroups {
  private readonly leaderOf = new Map<string, SweepCell>();
  private readonly stored = new Set<string>();

  private readonly key: (config: Record<string, unknown>) => string;

  constructor(
    cells: SweepCell[],
    private readonly book: CellBook,
  ) {
    // sweeps started before learned triggers grouped their cells replay with the old groups
    const learnedTriggers = patched('learned-trigger-groups');
    this.key = (config) => sharedStageKey(config, { learnedTriggers });
    for (const c of cells) if (!this.leaderOf.has(this.key(c.config))) this.leaderOf.set(this.key(c.config), c);
    setHandler(sharedStagesReadySignal, (workflowId) => void this.stored.add(workflowId));
  }

  ready(c: SweepCell): boolean {
    if (this.book.settled(c.id) || this.book.running.has(c.id)) return false;
    const leader = this.leaderOf.get(this.key(c.config))!;
    return leader.id === c.id || this.book.settled(leader.id) || this.stored.has(this.book.childId(leader));
  }

  storedCount(): number {
    return this.stored.size;
  }
}

/** Which cells are running, finished or failed, and what carries over a continue-as-new. */
class CellBook {
  readonly finished: Set<string>;
  readonly failedIds: Set<string>;
  readonly running = new Set<string>();
  /** workflow time each running cell was launched, for the ETA (a continue-as-new waits for running cells: nothing to carry) */
  private readonly launchedAt = new Map<string, number>();

  constructor(
    private readonly cells: SweepCell[],
    private readonly state: SweepState,
    private readonly sweepId: string,
  ) {
    this.finished = new Set(state.finished);
    this.failedIds = new Set(state.failed.map((f) => f.cellId));
  }

  childId(cell: SweepCell): string {
    return `${this.sweepId}--${cell.id}`;
  }

  settled(id: string): boolean {
    return this.finished.has(id) || this.failedIds.has(id);
  }

  settledCount(): number {
    return this.finished.size + this.failedIds.size;
  }

  launch(id: string): void {
    this.running.add(id);
    this.launchedAt.set(id, Date.now());
  }

  /** found completed in the store by an earlier run of this spec */
  reused(id: string): void {
    this.stopped(id);
    this.finished.add(id);
    this.state.reused++;
  }

  settle(id: string, record: SweepCellRecord): void {
    this.stopped(id);
    if (record.status === 'completed') {
      this.finished.add(id);
      this.state.durations.push(record.endedAt - record.startedAt);
    } else {
      this.failed(id, record.error!);
    }
  }

  /** the store was unreachable for every retry: the cell counts as failed */
  bookkeepingFailed(id: string, err: Error): void {
    this.stopped(id);
    this.failed(id, `sweep bookkeeping failed: ${err.message}`);
  }

  carriedState(): SweepState {
    return { ...this.state, finished: [...this.finished], continuedAsNew: this.state.continuedAsNew + 1 };
  }

  /** What `ntml sweep status` estimates the remaining time from (cli/sweepEta.ts), with its own clock. */
  progress(spec: SweepSpec): SweepProgress {
    const { cells, state } = this;
    const count = state.durations.length;
    return {
      sweep: spec.name,
      total: cells.length,
      done: this.finished.size,
      running: [...this.running],
      runningCells: cells
        .filter((c) => this.running.has(c.id))
        .map((c) => ({ id: c.id, label: cellLabel(c.axes), workflowId: this.childId(c), startedAt: this.launchedAt.get(c.id) })),
      failed: this.failedIds.size,
      reused: state.reused,
      finishedCells: { count, meanMs: count ? state.durations.reduce((a, b) => a + b, 0) / count : 0 },
      concurrency: spec.concurrency,
      continuedAsNew: state.continuedAsNew,
    };
  }

  private stopped(id: string): void {
    this.running.delete(id);
    this.launchedAt.delete(id);
  }

  private failed(id: string, error: string): void {
    this.failedIds.add(id);
    this.state.failed.push({ cellId: id, error });
  }
}

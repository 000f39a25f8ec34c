/**
 * sweep: runs the cells of a sweep spec as child `purify` workflows in a sliding window
 * (never more than `concurrency` at once). Cells that share their expensive stages
 * (data, attack, model, training recipe, seed) wait until the first such cell has stored
 * them (it signals after standard training), then reuse them from the stage cache. Failed
 * cells are recorded and do not fail the sweep.
 * Before the history grows large the workflow continues as new with its bookkeeping.
 */
import {
  ApplicationFailure,
  condition,
  continueAsNew,
  defineQuery,
  executeChild,
  proxyActivities,
  setHandler,
  workflowInfo,
} from '@temporalio/workflow';
import type * as activities from '../activities';
import { cellLabel, expandSweep, parseSweepSpec, sharedStageKey, type SweepCell } from '../schemas/sweep';
import type { PurifyInput } from './purify';
import type { PurifyOutcome, SweepCellRecord, SweepOutcome, SweepProgress } from './types';
import { TRAINING_TASK_QUEUE, sharedStagesReadySignal } from './purify';

export interface SweepInput {
  spec: unknown;
  options?: PurifyInput['options'] & { trainingTaskQueue?: string };
  /** carried across continue-as-new */
  state?: { finished: string[]; failed: Array<{ cellId: string; error: string }>; reused: number; continuedAsNew: number; durations: number[] };
}

export const sweepProgressQuery = defineQuery<SweepProgress>('progress');

export async function sweep(input: SweepInput): Promise<SweepOutcome> {
  let cells: SweepCell[];
  let spec;
  try {
    spec = parseSweepSpec(input.spec);
    cells = expandSweep(spec);
  } catch (err) {
    throw ApplicationFailure.nonRetryable((err as Error).message, 'InvalidSweepSpec');
  }
  const { readSweepCell, writeSweepCell, writeSweepSpec } = proxyActivities<typeof activities>({
    taskQueue: input.options?.trainingTaskQueue ?? TRAINING_TASK_QUEUE,
    // store bookkeeping takes well under a second; an attempt on a lost worker is retried after 20 s
    startToCloseTimeout: '20s',
    retry: { maximumAttempts: 10 },
  });
  const state = input.state ?? { finished: [], failed: [], reused: 0, continuedAsNew: 0, durations: [] };
  const finished = new Set(state.finished);
  const failedIds = new Set(state.failed.map((f) => f.cellId));
  const running = new Set<string>();
  const sweepId = workflowInfo().workflowId;
  const childId = (cell: SweepCell) => `${sweepId}--${cell.id}`;

  setHandler(sweepProgressQuery, (): SweepProgress => {
    const left = cells.length - finished.size - failedIds.size;
    const mean = state.durations.length ? state.durations.reduce((a, b) => a + b, 0) / state.durations.length : undefined;
    return {
      sweep: spec.name,
      total: cells.length,
      done: finished.size,
      running: [...running],
      runningCells: cells
        .filter((c) => running.has(c.id))
        .map((c) => ({ id: c.id, label: cellLabel(c.axes), workflowId: childId(c) })),
      failed: failedIds.size,
      reused: state.reused,
      etaSeconds: mean === undefined ? undefined : Math.round((mean * left) / 1000 / spec.concurrency),
      continuedAsNew: state.continuedAsNew,
    };
  });
  if (!input.state) await writeSweepSpec({ sweep: spec.name, spec: input.spec, cellIds: cells.map((c) => c.id) });

  // the first cell of each shared-stage group runs before the rest of its group, until it
  // has stored the shared stages (its signal) or ended
  const leaderOf = new Map<string, SweepCell>();
  for (const c of cells) if (!leaderOf.has(sharedStageKey(c.config))) leaderOf.set(sharedStageKey(c.config), c);
  const sharedStored = new Set<string>();
  setHandler(sharedStagesReadySignal, (workflowId) => void sharedStored.add(workflowId));
  const settled = (id: string) => finished.has(id) || failedIds.has(id);
  const ready = (c: SweepCell) => {
    if (settled(c.id) || running.has(c.id)) return false;
    const leader = leaderOf.get(sharedStageKey(c.config))!;
    return leader.id === c.id || settled(leader.id) || sharedStored.has(childId(leader));
  };
  const childOptions: PurifyInput['options'] = { ...input.options, announceSharedStages: true };

  const runCell = async (cell: SweepCell): Promise<void> => {
    const existing = await readSweepCell({ sweep: spec.name, cellId: cell.id });
    if (existing?.status === 'completed') {
      running.delete(cell.id);
      finished.add(cell.id);
      state.reused++;
      return;
    }
    const workflowId = childId(cell);
    const startedAt = Date.now();
    let record: SweepCellRecord;
    try {
      const outcome = (await executeChild('purify', {
        workflowId,
        taskQueue: workflowInfo().taskQueue,
        args: [{ config: cell.config, options: childOptions } satisfies PurifyInput],
      })) as PurifyOutcome;
      record = {
        sweep: spec.name,
        cellId: cell.id,
        axes: cell.axes,
        config: cell.config,
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
      record = {
        sweep: spec.name,
        cellId: cell.id,
        axes: cell.axes,
        config: cell.config,
        status: 'failed',
        error: (cause?.message ?? (err as Error).message).slice(0, 2000),
        workflowId,
        startedAt,
        endedAt: Date.now(),
      };
    }
    await writeSweepCell({ record });
    running.delete(cell.id);
    if (record.status === 'completed') {
      finished.add(cell.id);
      state.durations.push(record.endedAt - record.startedAt);
    } else {
      failedIds.add(cell.id);
      state.failed.push({ cellId: cell.id, error: record.error! });
    }
  };

  let stopLaunching = false;
  while (cells.some((c) => !settled(c.id))) {
    if (workflowInfo().continueAsNewSuggested) stopLaunching = true;
    if (!stopLaunching) {
      for (const cell of cells) {
        if (running.size >= spec.concurrency) break;
        if (!ready(cell)) continue;
        running.add(cell.id);
        void runCell(cell).catch((err: Error) => {
          // bookkeeping itself failed (store unreachable for every retry): count the cell as failed
          running.delete(cell.id);
          failedIds.add(cell.id);
          state.failed.push({ cellId: cell.id, error: `sweep bookkeeping failed: ${err.message}` });
        });
      }
    }
    if (running.size === 0) {
      if (stopLaunching) break;
      // nothing ready and nothing running cannot happen: every group has a runnable leader
      throw ApplicationFailure.nonRetryable('sweep scheduler found no runnable cell', 'SweepSchedulerError');
    }
    const before = finished.size + failedIds.size;
    const storedBefore = sharedStored.size;
    await condition(() => finished.size + failedIds.size > before || running.size === 0 || sharedStored.size > storedBefore);
  }
  if (stopLaunching && cells.some((c) => !settled(c.id))) {
    await continueAsNew<typeof sweep>({
      spec: input.spec,
      options: input.options,
      state: { ...state, finished: [...finished], continuedAsNew: state.continuedAsNew + 1 },
    });
  }
  return {
    sweep: spec.name,
    total: cells.length,
    completed: finished.size,
    failed: state.failed,
    reused: state.reused,
  };
}

/**
 * Per-epoch checkpoints for long training activities. After every epoch the checkpoint is
 * stored (content-addressed), listed in a store record, and announced in a heartbeat
 * `{ epoch, loss, checkpoint }`. A retried attempt resumes from the newest checkpoint that
 * still verifies, looking at both the last heartbeat and the record (a heartbeat can be
 * lost with a killed worker); checkpoints that fail verification are reported and skipped.
 * While the store rides out an outage, heartbeats also carry `storeOutage` (merged, never in
 * place of the checkpoint), so the outage shows in `ntml purify status`.
 * A cacheable stage files its record under its stage key (a function of everything it depends
 * on), so a new run of the same computation resumes too; others under their run's identity.
 */
import { Context } from '@temporalio/activity';
import type { ArtifactRef, OutageState } from '../store';
import { assertResumable, decodeCheckpoint, encodeCheckpoint, modelWeights, type TrainingCheckpoint } from '../core/train/checkpoint';
import { disposeClassifier } from '../core/models/classifier';
import type { EpochHooks, EpochRecord } from '../core/train/epochLoop';
import { artifactStore, heartbeatDetails, loadModel } from './context';
import { formerComputation, runningComputation } from './stageCache';
import { epochTelemetry } from '../telemetry/epochs';
import { draining, drainedAfterEpoch } from './drain';
import type { PrepareControl } from '../core/attacks/attack';

export interface CheckpointEntry {
  epoch: number;
  checkpoint: ArtifactRef;
  /**
   * the workflow whose attempt stored it (a sweep cell's is `<sweep workflow>--<cell id>`), so
   * `ntml store export --in-progress` can tell a sweep's stages in progress from other runs'
   */
  workflowId?: string;
}

export interface TrainingHeartbeat {
  stage: string;
  epoch: number;
  epochs?: number;
  loss?: number;
  checkpoint?: ArtifactRef;
  batch?: number;
  batches?: number;
  /** a learned trigger's optimisation: the round under way (`epoch` is the last checkpointed round) */
  round?: number;
  /** the last epoch's diagnostics (an IAD mask phase's mask health, ML's student ACC/ASR) */
  diagnostics?: Record<string, number>;
}

/** A store outage in progress, as heartbeats carry it (`ntml purify status` prints `summary`). */
export interface StoreOutageDetails {
  since: string;
  attempts: number;
  lastError: string;
  summary: string;
}

/**
 * `details` with the store outage in progress merged in, or with a finished one removed. Always
 * a merge: a retried attempt resumes from the checkpoint in the last heartbeat, so an outage
 * beat must not replace it. No details yet become `{ storeOutage }`; every heartbeat of these
 * activities is an object, anything else is left as it is.
 */
export function withStoreOutage(details: unknown, outage: OutageState | undefined): unknown {
  const isObject = typeof details === 'object' && details !== null && !Array.isArray(details);
  if (!isObject && details !== undefined) return details;
  const { storeOutage: _previous, ...rest } = (details ?? {}) as Record<string, unknown>;
  if (outage) return { ...rest, storeOutage: outageDetails(outage) };
  // an outage beat on an activity that had no details yet: recovery restores "no details"
  return details === undefined || Object.keys(rest).length === 0 ? undefined : rest;
}

function outageDetails(o: OutageState): StoreOutageDetails {
  return { since: o.since, attempts: o.attempts, lastError: o.lastError, summary: o.summary };
}

/** A heartbeat that carries the store's outage, if one is in progress (another activity on this worker may have seen it first). */
function beat(details: TrainingHeartbeat): void {
  heartbeatDetails(withStoreOutage(details, artifactStore().outageState?.()));
}

export interface ResumeInfo {
  resumedFromEpoch: number;
  skippedCheckpoints: string[];
}

/**
 * One path segment from an id a client chose (workflow ids may hold '/', '..', anything):
 * never a separator, never a leading '.', so a record key cannot leave checkpoints/<run>/.
 */
function segment(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._-]/g, '_');
  return safe === '' || safe.startsWith('.') ? `_${safe}` : safe;
}

/** The store record listing an activity's checkpoints of one stage. */
export function checkpointRecordKey(workflowId: string, runId: string, activityId: string, stage: string): string {
  return `checkpoints/${segment(workflowId)}/${segment(runId)}/${segment(`${activityId}-${stage}`)}`;
}

/** The record of a cacheable computation's checkpoints: shared by every run that computes it. */
export function computationCheckpointKey(computation: string, stage: string): string {
  return `checkpoints/stage/${computation}/${segment(stage)}`;
}

function recordKey(stage: string): string {
  const computation = runningComputation();
  if (computation) return computationCheckpointKey(computation, stage);
  const info = Context.current().info;
  const wf = info.workflowExecution;
  return checkpointRecordKey(wf?.workflowId ?? 'standalone', wf?.runId ?? '-', info.activityId, stage);
}

/**
 * A checkpoint with the groups it references (`weightsFrom`: a finished run's final checkpoint
 * leaves out the weights its stored output model holds) loaded from those models.
 */
async function withReferencedWeights(checkpoint: TrainingCheckpoint): Promise<TrainingCheckpoint> {
  if (!checkpoint.weightsFrom) return checkpoint;
  const arrays = { ...checkpoint.arrays };
  for (const [group, ref] of Object.entries(checkpoint.weightsFrom)) {
    const model = await loadModel(ref);
    try {
      arrays[group] = modelWeights(model.model);
    } finally {
      disposeClassifier(model);
    }
  }
  return { ...checkpoint, arrays };
}

/**
 * Finds the newest verifying checkpoint of this activity, if any. With `epochs` (the phase's
 * length), a finished run's final checkpoint that ends before them is refused, naming its record:
 * it holds no optimiser state to continue training with (core/train/checkpoint.ts assertResumable).
 */
export async function findResumePoint(stage: string, epochs?: number): Promise<{ checkpoint?: TrainingCheckpoint; info: ResumeInfo }> {
  const ctx = Context.current();
  const store = artifactStore();
  const fromHeartbeat = ctx.info.heartbeatDetails as TrainingHeartbeat | undefined;
  let fromRecord = (await store.getRecord<CheckpointEntry[]>(recordKey(stage))) ?? [];
  // none under the key: those filed under the computation's key before content keys (stageCache.ts)
  const former = formerComputation();
  if (fromRecord.length === 0 && former) fromRecord = (await store.getRecord<CheckpointEntry[]>(computationCheckpointKey(former, stage))) ?? [];
  const candidates = [...fromRecord];
  // a heartbeat of another stage (or phase) of this activity is not a checkpoint of this one
  if (fromHeartbeat?.checkpoint && fromHeartbeat.stage === stage && !candidates.some((c) => c.checkpoint.sha256 === fromHeartbeat.checkpoint!.sha256)) {
    candidates.push({ epoch: fromHeartbeat.epoch, checkpoint: fromHeartbeat.checkpoint });
  }
  candidates.sort((a, b) => b.epoch - a.epoch);
  const skipped: string[] = [];
  for (const c of candidates) {
    let checkpoint: TrainingCheckpoint;
    try {
      checkpoint = await withReferencedWeights(decodeCheckpoint(await store.get(c.checkpoint), c.checkpoint.uri));
    } catch (err) {
      const reason = `epoch ${c.epoch} checkpoint ${c.checkpoint.sha256.slice(0, 12)}: ${(err as Error).message}`;
      ctx.log.warn(`checkpoint failed verification, skipping: ${reason}`);
      skipped.push(reason);
      continue;
    }
    // outside the try: a run that cannot continue from its newest state is refused, not restarted
    if (epochs !== undefined) assertResumable(checkpoint, epochs, `${recordKey(stage)} (${c.checkpoint.sha256})`);
    if (skipped.length) ctx.log.warn(`resuming ${stage} from epoch ${c.epoch}; skipped: ${skipped.join('; ')}`);
    return { checkpoint, info: { resumedFromEpoch: c.epoch, skippedCheckpoints: skipped } };
  }
  return { info: { resumedFromEpoch: 0, skippedCheckpoints: skipped } };
}

/**
 * One stage's checkpoint record: `append` stores a state and lists it after the entries of
 * earlier epochs already recorded (a resumed attempt drops the ones it did not resume from).
 */
function checkpointList(key: string): { history: CheckpointEntry[]; append(state: TrainingCheckpoint): Promise<ArtifactRef> } {
  const store = artifactStore();
  const owner = Context.current().info.workflowExecution?.workflowId;
  const history: CheckpointEntry[] = [];
  let loaded = false;
  return {
    history,
    async append(state) {
      if (!loaded) {
        history.push(...((await store.getRecord<CheckpointEntry[]>(key)) ?? []).filter((e) => e.epoch < state.epoch));
        loaded = true;
      }
      const checkpoint = await store.put(encodeCheckpoint(state));
      history.push({ epoch: state.epoch, checkpoint, ...(owner ? { workflowId: owner } : {}) });
      await store.putRecord(key, history);
      return checkpoint;
    },
  };
}

/**
 * Hooks that store a checkpoint per epoch, heartbeat progress and carry cancellation. With
 * telemetry on, each epoch also becomes a span and a set of metrics (telemetry/epochs.ts).
 * On a draining worker (SIGTERM) the attempt ends right after a checkpoint (activities/drain.ts).
 */
export function checkpointHooks(stage: string, epochs: number): EpochHooks & { history: CheckpointEntry[] } {
  const ctx = Context.current();
  const list = checkpointList(recordKey(stage));
  const telemetry = epochTelemetry(stage, epochs);
  let last: TrainingHeartbeat = { stage, epoch: 0, epochs };
  return {
    history: list.history,
    signal: ctx.cancellationSignal,
    // through heartbeatDetails, so the activity's keep-alive beats repeat the last checkpoint, not nothing
    onBatch: (epoch, batch, batches) => {
      beat({ ...last, batch: batch + 1, batches, epoch: last.epoch });
    },
    onEpochEnd: async (record: EpochRecord, snapshot) => {
      const t0 = performance.now();
      const checkpoint = await list.append(snapshot());
      last = { stage, epoch: record.epoch, epochs, loss: record.loss, checkpoint, ...(record.diagnostics ? { diagnostics: record.diagnostics } : {}) };
      beat(last);
      telemetry?.epochEnd(record, { bytes: checkpoint.bytes, seconds: (performance.now() - t0) / 1000 });
      // the last epoch's result is the stage's result: finishing beats handing it on
      if (draining() && record.epoch < epochs) throw drainedAfterEpoch(stage, record.epoch);
    },
  };
}

/**
 * The same contract for a long computation that is not an epoch loop (a learned trigger's
 * optimisation): its states are stored, listed in the stage's record and announced in a
 * heartbeat; a retried attempt gets the newest one that verifies as `resume`.
 */
export async function prepareControl(stage: string): Promise<{ control: PrepareControl; info: ResumeInfo }> {
  const ctx = Context.current();
  const list = checkpointList(recordKey(stage));
  const { checkpoint, info } = await findResumePoint(stage);
  if (checkpoint) ctx.log.info(`${stage}: resuming from round ${checkpoint.epoch}`);
  let last: TrainingHeartbeat = { stage, epoch: checkpoint?.epoch ?? 0 };
  const control: PrepareControl = {
    signal: ctx.cancellationSignal,
    resume: checkpoint,
    onProgress: (done, total) => {
      beat({ ...last, epochs: total, round: done + 1 });
    },
    checkpoint: async (state) => {
      const ref = await list.append(state);
      last = { ...last, epoch: state.epoch, checkpoint: ref };
      beat(last);
      if (draining()) throw drainedAfterEpoch(stage, state.epoch);
    },
  };
  return { control, info };
}

/**
 * The final checkpoints bench state exports in place of the cache entries it leaves out (an
 * attacker run's: Input-Aware's, WaNet's), cut to what a fresh store needs to materialise the
 * run's outputs again (core/train/checkpoint.ts finishedRunCheckpoint): the generators' weights,
 * the RNG positions, the epoch and the run's history, and no optimiser buffers (a finished run
 * never trains again; the cut checkpoint is refused by any stage that would). The classifier's
 * weights are referenced, not copied, when they equal the run's output model byte for byte: that
 * model travels anyway (every cell's report names it), and the resume loads it from there
 * (activities/checkpointing.ts). Measured on attacks-cpu: an Input-Aware run's 5.3 MB become
 * 1.5 MB, a WaNet run's 2.3 MB a few KB (bench/state/README.md).
 *
 * A checkpoint that is already cut (imported from such a bundle) is exported as it is, so the
 * same state exports the same bytes.
 */
import { createHash } from 'node:crypto';
import type { ArtifactRef, ArtifactStore } from '../store';
import type { StoredModelRef, TrainingCheckpoint } from '../core/train/checkpoint';

/** A final checkpoint list as store/inProgress.ts finalCheckpoints cuts it: its newest entry alone. */
export interface FinalCheckpoint {
  /** checkpoints/stage/<stage key>/<phase> */
  key: string;
  value: Array<{ epoch: number; checkpoint: ArtifactRef; workflowId?: string }>;
  computation: string;
  epoch: number;
  checkpoint: ArtifactRef;
}

export interface CutFinalCheckpoint extends FinalCheckpoint {
  /** the full checkpoint it replaces (undefined when the store's was already cut) */
  from?: ArtifactRef;
  /** the cut checkpoint's bytes, when the store does not hold them (the bundle carries them) */
  data?: Uint8Array;
}

/** The group runEpochs names the trained classifier in (the attacker runs' `models: { model }`). */
const CLASSIFIER_GROUP = 'model';

function sameArrays(a: Array<{ shape: number[]; values: Float32Array }>, b: Array<{ shape: number[]; values: Float32Array }>): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i];
    if (x.shape.join('x') !== y.shape.join('x') || x.values.length !== y.values.length) return false;
    return Buffer.from(x.values.buffer, x.values.byteOffset, x.values.byteLength).equals(Buffer.from(y.values.buffer, y.values.byteOffset, y.values.byteLength));
  });
}

/**
 * The output model of the left-out entry `entry` (cache/<stage>/<key>): its cache entry's model
 * when the store holds it, else the backdoored model the report of a cell that used it names (a
 * store that imported a bundle lacks the entries it left out).
 */
async function outputModel(store: ArtifactStore, entry: string, computation: string, cellRecordKeys: readonly string[]): Promise<ArtifactRef | undefined> {
  const held = await store.getRecord<{ output?: { model?: ArtifactRef } }>(entry);
  if (held?.output?.model) return held.output.model;
  for (const key of cellRecordKeys) {
    const cell = await store.getRecord<{ stages?: Array<{ stage?: string; cacheKey?: string }>; report?: ArtifactRef }>(key);
    if (!cell?.report || !cell.stages?.some((s) => s.stage === 'standardTraining' && s.cacheKey === computation)) continue;
    const report = JSON.parse(Buffer.from(await store.get(cell.report)).toString('utf8')) as { models?: { standard?: ArtifactRef } };
    if (report.models?.standard) return report.models.standard;
  }
  return undefined;
}

/**
 * Each final checkpoint of `finals` cut (finishedRunCheckpoint), its classifier referenced when it
 * is exactly the output model of the entry it stands for (`entryOf`: computation -> cache entry key).
 */
export async function cutFinalCheckpoints(
  store: ArtifactStore,
  finals: readonly FinalCheckpoint[],
  entryOf: ReadonlyMap<string, string>,
  cellRecordKeys: readonly string[],
): Promise<CutFinalCheckpoint[]> {
  if (finals.length === 0) return [];
  // TensorFlow only when there is something to cut: `check` and `size` stay light
  const { decodeCheckpoint, encodeCheckpoint, finishedRunCheckpoint, modelWeights } = await import('../core/train/checkpoint');
  const { decodeClassifier } = await import('../core/models/layersFormat');
  const { disposeClassifier } = await import('../core/models/classifier');
  const out: CutFinalCheckpoint[] = [];
  for (const f of finals) {
    const full: TrainingCheckpoint = decodeCheckpoint(await store.get(f.checkpoint), `${f.key} (${f.checkpoint.sha256})`);
    if (full.finished) {
      out.push(f);
      continue;
    }
    const weightsFrom: Record<string, StoredModelRef> = {};
    const model = await outputModel(store, entryOf.get(f.computation)!, f.computation, cellRecordKeys);
    if (model && full.arrays[CLASSIFIER_GROUP]) {
      const c = await decodeClassifier(await store.get(model), model.uri);
      try {
        if (sameArrays(modelWeights(c.model), full.arrays[CLASSIFIER_GROUP])) weightsFrom[CLASSIFIER_GROUP] = { uri: model.uri, sha256: model.sha256, bytes: model.bytes };
      } finally {
        disposeClassifier(c);
      }
    }
    const data = encodeCheckpoint(finishedRunCheckpoint(full, weightsFrom));
    const sha256 = createHash('sha256').update(data).digest('hex');
    // a label only (stores find artifacts by sha256): the store's own naming, as for the full one
    const checkpoint: ArtifactRef = { uri: f.checkpoint.uri.replace(f.checkpoint.sha256, sha256), sha256, bytes: data.byteLength };
    // the list entry names the referenced model too, so the export (and gc) reach it from the record
    // and says it is a cut (import then finds it held where the store lists the full one: checkpointListHolds)
    const references = Object.keys(weightsFrom).length ? { weightsFrom } : {};
    out.push({ ...f, value: f.value.map((e) => ({ ...e, checkpoint, finished: true, ...references })), checkpoint, from: f.checkpoint, data });
  }
  return out;
}

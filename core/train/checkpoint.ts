/**
 * A training checkpoint: everything needed to continue a stage exactly where it stopped:
 * the weights (trainable and BN statistics) of every model the stage trains, the optimizer
 * buffers, the number of finished epochs, the RNG position, and the stage's own JSON state
 * (metric history, best-so-far selection).
 *
 * A finished run's final checkpoint may be cut to what materialising its outputs needs
 * (finishedRunCheckpoint): without optimiser buffers it can never continue training, so it is
 * marked `finished` and every resume path refuses to train from it (assertResumable).
 */
import type * as TF from '@tensorflow/tfjs-node';
import { tf } from '../tf';
import type { RngState } from '../rng';
import type { NamedArray } from './sgd';

const MAGIC = 'NTMLCKP1';

export interface TrainingCheckpoint {
  /** epochs fully finished */
  epoch: number;
  rngState: RngState;
  /** weight arrays per group, e.g. { student: [...], "optimizer:student": [...], "best:student": [...] } */
  arrays: Record<string, NamedArray[]>;
  extra: Record<string, unknown>;
  /**
   * a finished run's final checkpoint without optimiser state: it restores the run's end state
   * so the stage materialises its outputs again, and never continues training
   */
  finished?: boolean;
  /**
   * groups left out of `arrays` because they are exactly the weights of a stored model (the
   * run's own output, which travels anyway): whoever resumes loads them from there first
   */
  weightsFrom?: Record<string, StoredModelRef>;
}

/** A stored model artifact (store/types.ts ArtifactRef's shape; core does not depend on the store). */
export interface StoredModelRef {
  uri: string;
  sha256: string;
  bytes: number;
}

export class CheckpointFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointFormatError';
  }
}

export function modelWeights(model: TF.LayersModel): NamedArray[] {
  return model.getWeights().map((t) => ({ shape: t.shape.slice(), values: t.dataSync() as Float32Array }));
}

export function setModelWeights(model: TF.LayersModel, arrays: NamedArray[], what = 'checkpoint'): void {
  const expected = model.weights;
  if (arrays.length !== expected.length) {
    throw new CheckpointFormatError(`${what} holds ${arrays.length} weight arrays, the model has ${expected.length}`);
  }
  const tensors = arrays.map((a, i) => {
    if (a.shape.join('x') !== expected[i].shape.join('x')) {
      throw new CheckpointFormatError(`${what}: weight ${expected[i].originalName} has shape ${a.shape}, expected ${expected[i].shape}`);
    }
    return tf.tensor(a.values, a.shape);
  });
  model.setWeights(tensors);
  tf.dispose(tensors);
}

export function encodeCheckpoint(ckpt: TrainingCheckpoint): Uint8Array {
  const index: Array<{ group: string; shape: number[]; offset: number; length: number }> = [];
  let offset = 0;
  for (const [group, arrays] of Object.entries(ckpt.arrays)) {
    for (const a of arrays) {
      index.push({ group, shape: a.shape, offset, length: a.values.length });
      offset += a.values.length;
    }
  }
  // the two optional fields only when set: a full checkpoint encodes to the same bytes as before them
  const header = Buffer.from(
    JSON.stringify({
      epoch: ckpt.epoch,
      rngState: ckpt.rngState,
      extra: ckpt.extra,
      index,
      ...(ckpt.finished ? { finished: true } : {}),
      ...(ckpt.weightsFrom && Object.keys(ckpt.weightsFrom).length ? { weightsFrom: ckpt.weightsFrom } : {}),
    }),
  );
  const base = MAGIC.length + 4 + header.length;
  const padded = base + ((4 - (base % 4)) % 4);
  const out = Buffer.alloc(padded + offset * 4);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(header.length, MAGIC.length);
  header.copy(out, MAGIC.length + 4);
  const floats = new Float32Array(out.buffer, out.byteOffset + padded, offset);
  let k = 0;
  for (const arrays of Object.values(ckpt.arrays)) {
    for (const a of arrays) {
      floats.set(a.values, k);
      k += a.values.length;
    }
  }
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

export function decodeCheckpoint(bytes: Uint8Array, source = 'checkpoint'): TrainingCheckpoint {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < MAGIC.length + 4 || buf.toString('latin1', 0, MAGIC.length) !== MAGIC) {
    throw new CheckpointFormatError(`${source}: not an ntml checkpoint (bad magic)`);
  }
  const headerLen = buf.readUInt32LE(MAGIC.length);
  const base = MAGIC.length + 4 + headerLen;
  if (base > buf.length) throw new CheckpointFormatError(`${source}: truncated header`);
  let header: { epoch: number; rngState: RngState; extra?: Record<string, unknown>; index: unknown; finished?: unknown; weightsFrom?: unknown };
  try {
    header = JSON.parse(buf.toString('utf8', MAGIC.length + 4, base));
  } catch {
    throw new CheckpointFormatError(`${source}: header is not valid JSON`);
  }
  const padded = base + ((4 - (base % 4)) % 4);
  const total = (header.index as Array<{ length: number }>).reduce((n, e) => n + e.length, 0);
  if (padded + total * 4 !== buf.length) {
    throw new CheckpointFormatError(`${source}: expected ${padded + total * 4} bytes, got ${buf.length}`);
  }
  // copy so the arrays are aligned and independent of the input buffer
  const floats = new Float32Array(total);
  new Uint8Array(floats.buffer).set(buf.subarray(padded, padded + total * 4));
  const arrays: Record<string, NamedArray[]> = {};
  for (const e of header.index as Array<{ group: string; shape: number[]; offset: number; length: number }>) {
    (arrays[e.group] ??= []).push({ shape: e.shape, values: floats.subarray(e.offset, e.offset + e.length) });
  }
  const weightsFrom = header.weightsFrom as Record<string, StoredModelRef> | undefined;
  if (weightsFrom !== undefined && (typeof weightsFrom !== 'object' || Object.values(weightsFrom).some((r) => !r || typeof r.sha256 !== 'string' || typeof r.bytes !== 'number'))) {
    throw new CheckpointFormatError(`${source}: weightsFrom must map groups to stored models ({uri, sha256, bytes})`);
  }
  return {
    epoch: header.epoch,
    rngState: header.rngState,
    arrays,
    extra: header.extra ?? {},
    ...(header.finished === true ? { finished: true } : {}),
    ...(weightsFrom ? { weightsFrom } : {}),
  };
}

/**
 * A finished run's final checkpoint cut to what materialising its outputs needs: every model's
 * weights, the RNG positions and the stage's JSON state (its history, the generators' phase
 * state), without the optimisers' buffers (`optimizer:*`), which only continuing training reads.
 * `weightsFrom` names groups that equal a stored model's weights exactly (the caller checks):
 * they are left out and referenced. A checkpoint already cut is returned as it is.
 */
export function finishedRunCheckpoint(ckpt: TrainingCheckpoint, weightsFrom: Record<string, StoredModelRef> = {}): TrainingCheckpoint {
  if (ckpt.finished) return ckpt;
  const arrays = Object.fromEntries(Object.entries(ckpt.arrays).filter(([group]) => !group.startsWith('optimizer:') && !(group in weightsFrom)));
  return {
    epoch: ckpt.epoch,
    rngState: ckpt.rngState,
    arrays,
    extra: ckpt.extra,
    finished: true,
    ...(Object.keys(weightsFrom).length ? { weightsFrom } : {}),
  };
}

/**
 * Refuses to continue training from a finished run's final checkpoint: it holds no optimiser
 * state, and restarting the buffers at zero would silently give other weights than the
 * uninterrupted run. Resuming it at the epoch it ends with (training nothing) is what it is for.
 */
export function assertResumable(ckpt: TrainingCheckpoint, epochs: number, what: string): void {
  if (ckpt.finished && ckpt.epoch < epochs) {
    throw new CheckpointFormatError(
      `${what}: the epoch ${ckpt.epoch} checkpoint is a finished run's final checkpoint (no optimiser state): it restores that run's end to materialise its outputs and cannot continue training to epoch ${epochs}`,
    );
  }
}

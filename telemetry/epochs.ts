/**
 * One span and one set of metrics per finished training epoch, fed by the checkpoint hooks
 * (activities/checkpointing.ts) so that every checkpointed stage is covered without the
 * training core knowing about telemetry. An epoch's span runs from the end of the previous
 * epoch's span (the first epoch of an attempt: from the start of its batches) to its stored
 * checkpoint, so it covers training, held-out scoring and the upload; it is a child of the
 * activity's span, so an epoch is found in the run's trace under its stage.
 */
import type { Attributes, Context } from '@opentelemetry/api';
import type { EpochRecord } from '../core/train/epochLoop';
import { currentTelemetry } from './setup';

export const EPOCH_SPAN = 'ntml.epoch';

export interface EpochCheckpointInfo {
  bytes: number;
  /** encode + upload + record update */
  seconds: number;
}

export interface EpochTelemetry {
  epochEnd(record: EpochRecord, checkpoint: EpochCheckpointInfo): void;
}

/** undefined when telemetry is off. Call it inside the activity (its span is then the parent). */
export function epochTelemetry(stage: string, epochs: number): EpochTelemetry | undefined {
  const t = currentTelemetry();
  if (!t) return undefined;
  const parent: Context = t.api.context.active();
  const base: Attributes = { 'ntml.stage': stage };
  let previousEnd: number | undefined;
  return {
    epochEnd(record, checkpoint) {
      const end = Date.now();
      const trainSeconds = record.seconds;
      const imagesPerSecond = trainSeconds > 0 ? record.images / trainSeconds : 0;
      const attributes: Attributes = {
        ...base,
        'ntml.epoch': record.epoch,
        'ntml.epochs': epochs,
        'ntml.loss': record.loss,
        'ntml.learning_rate': record.learningRate,
        'ntml.images': record.images,
        'ntml.images_per_second': imagesPerSecond,
        'ntml.checkpoint.bytes': checkpoint.bytes,
        'ntml.checkpoint.seconds': checkpoint.seconds,
      };
      if (record.score !== undefined) attributes['ntml.held_out_accuracy'] = record.score;
      for (const [k, v] of Object.entries(record.diagnostics ?? {})) attributes[`ntml.diagnostics.${k}`] = v;
      const start = previousEnd ?? end - (trainSeconds + checkpoint.seconds) * 1000;
      previousEnd = end;
      const span = t.tracer.startSpan(EPOCH_SPAN, { attributes, startTime: start }, parent);
      span.end(end);

      const m = t.instruments;
      m.loss.record(record.loss, base);
      if (record.score !== undefined) m.accuracy.record(record.score, { ...base, 'ntml.dataset': 'held_out' });
      if (record.diagnostics?.acc !== undefined) m.accuracy.record(record.diagnostics.acc, { ...base, 'ntml.dataset': 'test_sample' });
      if (record.diagnostics?.asr !== undefined) m.attackSuccessRate.record(record.diagnostics.asr, base);
      m.throughput.record(imagesPerSecond, base);
      m.epochs.add(1, base);
      m.epochDuration.record(trainSeconds, base);
      m.checkpointSize.record(checkpoint.bytes, base);
      m.checkpointDuration.record(checkpoint.seconds, base);
    },
  };
}

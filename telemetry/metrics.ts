/**
 * The metrics ntml exports. Names follow OpenTelemetry's conventions (dotted, units in
 * `unit`); every training metric carries `ntml.stage` (standard, ntStudent, mutualLearning,
 * ..., or `defense-<defense>-<phase>` for baseline defenses).
 */
import type { Counter, Gauge, Histogram, Meter } from '@opentelemetry/api';

export const METRIC = {
  loss: 'ntml.training.loss',
  accuracy: 'ntml.training.accuracy',
  attackSuccessRate: 'ntml.training.attack_success_rate',
  throughput: 'ntml.training.throughput',
  epochs: 'ntml.training.epochs',
  epochDuration: 'ntml.training.epoch.duration',
  checkpointSize: 'ntml.checkpoint.size',
  checkpointDuration: 'ntml.checkpoint.duration',
  stageDuration: 'ntml.stage.duration',
  queueBacklog: 'ntml.queue.backlog',
} as const;

export interface Instruments {
  loss: Gauge;
  accuracy: Gauge;
  attackSuccessRate: Gauge;
  throughput: Histogram;
  epochs: Counter;
  epochDuration: Histogram;
  checkpointSize: Histogram;
  checkpointDuration: Histogram;
  stageDuration: Histogram;
}

export function createInstruments(meter: Meter): Instruments {
  return {
    loss: meter.createGauge(METRIC.loss, { description: 'mean training loss of the last finished epoch' }),
    accuracy: meter.createGauge(METRIC.accuracy, {
      description: 'accuracy after an epoch, where the stage measures one (ntml.dataset: held_out for selection, test_sample for diagnostics)',
      unit: '%',
    }),
    attackSuccessRate: meter.createGauge(METRIC.attackSuccessRate, {
      description: 'attack success rate on the diagnostic sample after an epoch (evaluation mode only)',
      unit: '%',
    }),
    throughput: meter.createHistogram(METRIC.throughput, { description: 'training images per second over an epoch', unit: '{image}/s' }),
    epochs: meter.createCounter(METRIC.epochs, { description: 'finished (checkpointed) training epochs' }),
    epochDuration: meter.createHistogram(METRIC.epochDuration, { description: 'wall time of an epoch, checkpoint excluded', unit: 's' }),
    checkpointSize: meter.createHistogram(METRIC.checkpointSize, { description: 'bytes of a stored per-epoch checkpoint', unit: 'By' }),
    checkpointDuration: meter.createHistogram(METRIC.checkpointDuration, {
      description: 'time to encode, upload and record a per-epoch checkpoint',
      unit: 's',
    }),
    stageDuration: meter.createHistogram(METRIC.stageDuration, {
      description: 'wall time of one attempt of a pipeline stage (activity), by outcome',
      unit: 's',
    }),
  };
}

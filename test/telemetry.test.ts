/**
 * OpenTelemetry, end to end. `ntml purify` runs as its own process against the test server
 * and exports its spans over OTLP/HTTP (protobuf) to a receiver in this test; the workers run
 * in this process with the SDK's in-memory exporters and the same OTLP exporter. One small
 * ci-tier run (reduced epochs) must give one trace: CLI -> StartWorkflow -> RunWorkflow ->
 * StartActivity -> RunActivity -> one span per epoch, and the training metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, PeriodicExportingMetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { startTelemetry } from '../telemetry/setup';
import { observeQueueBacklog } from '../telemetry/temporal';
import { EPOCH_SPAN } from '../telemetry/epochs';
import { METRIC } from '../telemetry/metrics';
import { connectWorker } from '../workers/createWorkers';
import { inProcessWorkers, quietRuntime, repoRoot, taskQueues, temporalAddress } from './support/temporal';
import { startOtlpReceiver } from './telemetryOtlp';

/**
 * ci tier cut down to seconds per stage: 400 training images, 2 standard epochs, 1 NT epoch,
 * 2 mutual-learning epochs, 1 split-distillation epoch (measured: 10-32 s for the run through
 * the CLI on the 2-core machine at load 7-11). A fresh seed per run so the stage cache never
 * answers instead of training.
 */
function smallConfig(seed: number) {
  return {
    name: 'otel',
    mode: 'evaluation',
    tier: 'ci',
    seed,
    data: { format: 'synthetic', trainSize: 400, testSize: 200 },
    attack: { name: 'badnets', target: 0, rate: 0.1 },
    cleanBudget: 60,
    training: { epochs: 2 },
    // two ML epochs leave weak evidence for t^: without `never` the fallback would skip the split epoch whose span is checked
    ntml: { diagnosticSamples: 50, ntEpochs: 1, mlEpochs: 2, splitEpochs: 1, splitFallback: 'never' },
  };
}
/** epochs per checkpointed stage in smallConfig (the `stage` names of activities/purify.ts) */
const EPOCHS: Record<string, number> = { standard: 2, ntStudent: 1, mutualLearning: 2, splitDistillation: 1 };
const STAGE_ACTIVITY: Record<string, string> = {
  standard: 'trainStandardModel',
  ntStudent: 'trainNonTargetStudent',
  mutualLearning: 'mutualLearning',
  splitDistillation: 'splitDistillation',
};

quietRuntime();

test('telemetry is off without an endpoint: no SDK module is loaded and nothing is added to workers or clients', () => {
  const dist = path.join(repoRoot, 'dist');
  const script = `
    const setup = require(${JSON.stringify(path.join(dist, 'telemetry', 'setup.js'))});
    const temporal = require(${JSON.stringify(path.join(dist, 'telemetry', 'temporal.js'))});
    require(${JSON.stringify(path.join(dist, 'workers', 'createWorkers.js'))});
    require(${JSON.stringify(path.join(dist, 'activities', 'index.js'))});
    require(${JSON.stringify(path.join(dist, 'cli', 'temporal.js'))});
    setup.startTelemetry({ serviceName: 'probe' }).then((t) => {
      const loaded = Object.keys(require.cache).filter((f) => /@opentelemetry[\\\\/](sdk-|exporter-|otlp-|context-async)|interceptors-opentelemetry/.test(f));
      console.log(JSON.stringify({
        started: t !== undefined,
        loaded,
        workflowModules: temporal.workflowInterceptorModules(),
        activity: temporal.activityInterceptors().length,
        client: temporal.clientInterceptors() === undefined,
      }));
    });`;
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('OTEL_') || k.startsWith('NTML_OTEL')) delete env[k];
  const out = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8', timeout: 60_000 });
  assert.equal(out.status, 0, out.stderr);
  const r = JSON.parse(out.stdout.trim().split('\n').pop()!);
  assert.deepEqual(r, { started: false, loaded: [], workflowModules: [], activity: 0, client: true });
});

test('one trace from `ntml purify` through workflow, activities and epochs, with metrics, exported over OTLP', { timeout: 600_000 }, async () => {
  const receiver = await startOtlpReceiver();
  const memory = new InMemorySpanExporter();
  const metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  const reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const telemetry = await startTelemetry({
    serviceName: 'ntml-test-workers',
    env: { ...process.env, NTML_OTEL_ENDPOINT: receiver.url, NTML_OTEL_METRICS_INTERVAL_SECONDS: '3600' },
    spanProcessors: [new SimpleSpanProcessor(memory)],
    metricReaders: [reader],
  });
  assert.ok(telemetry, 'telemetry started');
  const queues = taskQueues('otel');
  const observer = await connectWorker(temporalAddress());
  const stopObserving = observeQueueBacklog(observer.workflowService, 'default', [
    { name: queues.orchestration, kind: 'workflow' },
    { name: queues.training, kind: 'activity' },
  ]);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'ntml-otel-'));
  const configFile = path.join(dir, 'otel.json');
  writeFileSync(configFile, JSON.stringify(smallConfig(1000 + (Date.now() % 100_000))));
  const runId = `otel-${Date.now()}`;
  try {
    const workers = await inProcessWorkers(queues);
    const t0 = Date.now();
    const cli = await workers.run(
      () =>
        new Promise<{ code: number | null; output: string }>((resolve) => {
          const child = spawn(
            process.execPath,
            [path.join(repoRoot, 'dist', 'cli', 'main.js'), 'purify', '--config', configFile, '--address', temporalAddress(), '--id', runId, '--out', path.join(dir, 'out')],
            {
              env: {
                ...process.env,
                NTML_OTEL_ENDPOINT: receiver.url,
                NTML_ORCHESTRATION_TASK_QUEUE: queues.orchestration,
                NTML_TRAINING_TASK_QUEUE: queues.training,
              },
              stdio: ['ignore', 'pipe', 'pipe'],
            },
          );
          let output = '';
          child.stdout.on('data', (d) => (output += d));
          child.stderr.on('data', (d) => (output += d));
          child.on('exit', (code) => resolve({ code, output }));
        }),
    );
    console.log(`purify through the CLI took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    assert.equal(cli.code, 0, cli.output);
    await telemetry.flush();

    // --- the CLI's spans, received over the network from the CLI process
    const cliRoot = receiver.spans.find((s) => s.name === 'ntml purify');
    assert.ok(cliRoot, `the CLI exported its root span; received: ${receiver.spans.map((s) => s.name).join(', ')}`);
    assert.equal(cliRoot.service, 'ntml-cli');
    assert.equal(cliRoot.parentSpanId, '', 'the command span is the root of the trace');
    const start = receiver.spans.find((s) => s.name === 'StartWorkflow:purify' && s.traceId === cliRoot.traceId);
    assert.ok(start, 'StartWorkflow span in the CLI trace');
    assert.equal(start.parentSpanId, cliRoot.spanId);
    assert.equal(start.attributes.temporalWorkflowId, runId);
    const traceId = cliRoot.traceId;
    const cliNames = receiver.spans.filter((s) => s.service === 'ntml-cli').map((s) => s.name);
    assert.deepEqual(cliNames.sort(), ['StartWorkflow:purify', 'ntml purify'], 'progress polling is not traced');

    // --- the workers' spans, in memory: the same trace, parent by parent
    const spans = memory.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (s: ReadableSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);
    const run = spans.filter((s) => s.name === 'RunWorkflow:purify');
    assert.equal(run.length, 1, `one workflow span in the trace; names: ${[...new Set(spans.map((s) => s.name))].join(', ')}`);
    assert.equal(run[0].parentSpanId, start.spanId, 'the workflow span continues the CLI trace');
    for (const [stage, activity] of Object.entries(STAGE_ACTIVITY)) {
      const exec = spans.filter((s) => s.name === `RunActivity:${activity}`);
      assert.equal(exec.length, 1, `one RunActivity:${activity}`);
      const scheduled = parentOf(exec[0]);
      assert.equal(scheduled?.name, `StartActivity:${activity}`);
      assert.equal(parentOf(scheduled!)?.name, 'RunWorkflow:purify');
      const epochs = spans.filter((s) => s.name === EPOCH_SPAN && s.attributes['ntml.stage'] === stage);
      assert.deepEqual(
        epochs.map((e) => e.attributes['ntml.epoch']).sort(),
        Array.from({ length: EPOCHS[stage] }, (_, i) => i + 1),
        `${stage}: one span per epoch`,
      );
      for (const e of epochs) {
        assert.equal(e.parentSpanId, exec[0].spanContext().spanId, `${stage} epoch span under its activity`);
        assert.ok(Number(e.attributes['ntml.loss']) > 0 && Number(e.attributes['ntml.images_per_second']) > 0);
        assert.ok(Number(e.attributes['ntml.checkpoint.bytes']) > 1000, 'checkpoint size recorded');
      }
    }
    // selection stages carry the held-out accuracy of each epoch
    const ml = spans.filter((s) => s.name === EPOCH_SPAN && s.attributes['ntml.stage'] === 'mutualLearning');
    assert.ok(ml.every((s) => typeof s.attributes['ntml.held_out_accuracy'] === 'number'));

    // --- metrics, in memory
    await reader.forceFlush();
    const exported = metricExporter.getMetrics();
    const latest: ResourceMetrics = exported[exported.length - 1];
    const metrics = new Map(latest.scopeMetrics.flatMap((sm) => sm.metrics).map((m) => [m.descriptor.name, m]));
    const points = (name: string) => metrics.get(name)?.dataPoints ?? [];
    const pointFor = (name: string, stage: string) => points(name).find((p) => p.attributes['ntml.stage'] === stage);
    for (const stage of Object.keys(EPOCHS)) {
      assert.equal(pointFor(METRIC.epochs, stage)?.value, EPOCHS[stage], `${stage} epochs counted`);
      assert.ok(Number(pointFor(METRIC.loss, stage)?.value) > 0, `${stage} loss`);
      const hist = (name: string) => pointFor(name, stage)?.value as { count: number; sum: number } | undefined;
      assert.equal(hist(METRIC.throughput)?.count, EPOCHS[stage], `${stage} images/s per epoch`);
      assert.ok(hist(METRIC.checkpointSize)!.sum > 1000 * EPOCHS[stage], `${stage} checkpoint bytes`);
      assert.ok(hist(METRIC.checkpointDuration)!.sum > 0, `${stage} checkpoint latency`);
    }
    const accuracy = points(METRIC.accuracy).filter((p) => p.attributes['ntml.stage'] === 'mutualLearning');
    assert.deepEqual(accuracy.map((p) => p.attributes['ntml.dataset']).sort(), ['held_out', 'test_sample']);
    for (const p of accuracy) assert.ok(Number(p.value) >= 0 && Number(p.value) <= 100);
    const stageActivities = new Set(points(METRIC.stageDuration).map((p) => p.attributes['ntml.activity']));
    for (const a of ['prepareData', 'trainStandardModel', 'computeNonTargetLabels', 'evaluateModels', 'writePurifyReport']) {
      assert.ok(stageActivities.has(a), `stage duration of ${a}; have ${[...stageActivities].join(', ')}`);
    }
    const backlog = points(METRIC.queueBacklog);
    assert.ok(
      backlog.some((p) => p.attributes['temporal.task_queue'] === queues.training && p.value === 0),
      `training queue backlog observed (empty after the run): ${JSON.stringify(backlog.map((p) => [p.attributes, p.value]))}`,
    );

    // --- what went over the network from this process: OTLP protobuf, same spans and metrics
    assert.ok(receiver.requests.every((r) => r.contentType === 'application/x-protobuf'), JSON.stringify(receiver.requests));
    const wire = receiver.spans.filter((s) => s.service === 'ntml-test-workers' && s.traceId === traceId);
    const wireEpochs = wire.filter((s) => s.name === EPOCH_SPAN);
    assert.equal(wireEpochs.length, Object.values(EPOCHS).reduce((a, b) => a + b, 0), 'every epoch span exported');
    const standardEpoch = wireEpochs.find((s) => s.attributes['ntml.stage'] === 'standard' && s.attributes['ntml.epoch'] === 2)!;
    const memoryTwin = spans.find((s) => s.spanContext().spanId === standardEpoch.spanId)!;
    assert.equal(standardEpoch.attributes['ntml.loss'], memoryTwin.attributes['ntml.loss'], 'attributes survive the encoding');
    assert.equal(standardEpoch.attributes['ntml.epochs'], 2);
    assert.ok(wire.some((s) => s.name === 'RunWorkflow:purify' && s.parentSpanId === start.spanId));
    const wireMetrics = new Set(receiver.points.filter((p) => p.service === 'ntml-test-workers').map((p) => p.metric));
    for (const name of [METRIC.loss, METRIC.throughput, METRIC.checkpointSize, METRIC.checkpointDuration, METRIC.stageDuration, METRIC.queueBacklog]) {
      assert.ok(wireMetrics.has(name), `${name} exported; got ${[...wireMetrics].join(', ')}`);
    }
    const wireCheckpoint = receiver.points.find((p) => p.metric === METRIC.checkpointSize && p.attributes['ntml.stage'] === 'standard');
    assert.equal(wireCheckpoint?.unit, 'By');
    assert.equal(wireCheckpoint?.value, 2, 'histogram count of the standard stage');
  } finally {
    stopObserving();
    await observer.close();
    await telemetry.shutdown();
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

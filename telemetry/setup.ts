/**
 * The OpenTelemetry SDK for one process (CLI, orchestration worker, training worker): a
 * tracer provider with W3C trace-context propagation over AsyncLocalStorage, a meter
 * provider, and OTLP/HTTP-protobuf exporters. Started only when an endpoint is configured
 * (telemetry/config.ts) or a caller passes its own processors (tests); otherwise nothing of
 * the SDK is even loaded and every helper is a no-op.
 */
import type * as Api from '@opentelemetry/api';
import type { Resource } from '@opentelemetry/resources';
import type { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import type { BasicTracerProvider, SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { metricsIntervalMs, telemetryEndpoints } from './config';
import { createInstruments, type Instruments } from './metrics';

export interface TelemetryOptions {
  /** service.name unless OTEL_SERVICE_NAME says otherwise: ntml-cli, ntml-orchestration-worker, ntml-training-worker */
  serviceName: string;
  env?: NodeJS.ProcessEnv;
  /** more span processors (tests pass in-memory exporters); telemetry starts when any are given */
  spanProcessors?: SpanProcessor[];
  /** more metric readers, likewise */
  metricReaders?: MetricReader[];
}

export interface Telemetry {
  readonly api: typeof Api;
  readonly resource: Resource;
  readonly tracerProvider: BasicTracerProvider;
  readonly meterProvider: MeterProvider;
  readonly tracer: Api.Tracer;
  readonly meter: Api.Meter;
  readonly instruments: Instruments;
  /** the OTLP endpoint, when one is configured */
  readonly endpoint?: string;
  /** exports what is buffered (spans and metrics) */
  flush(): Promise<void>;
  /** flushes and stops; telemetry is off afterwards */
  shutdown(): Promise<void>;
}

let active: Telemetry | undefined;

/** The running telemetry of this process, or undefined when it is off. */
export function currentTelemetry(): Telemetry | undefined {
  return active;
}

/** Starts telemetry if configured; undefined (and nothing loaded) when it is off. Idempotent. */
export async function startTelemetry(o: TelemetryOptions): Promise<Telemetry | undefined> {
  if (active) return active;
  const env = o.env ?? process.env;
  const endpoints = telemetryEndpoints(env);
  const extraSpans = o.spanProcessors ?? [];
  const extraReaders = o.metricReaders ?? [];
  if (!endpoints && extraSpans.length === 0 && extraReaders.length === 0) return undefined;

  const api = await import('@opentelemetry/api');
  const { AsyncLocalStorageContextManager } = await import('@opentelemetry/context-async-hooks');
  const { Resource, detectResourcesSync, envDetectorSync } = await import('@opentelemetry/resources');
  const { BasicTracerProvider, BatchSpanProcessor } = await import('@opentelemetry/sdk-trace-base');
  const { MeterProvider, PeriodicExportingMetricReader } = await import('@opentelemetry/sdk-metrics');

  const version = (require('../../package.json') as { version: string }).version;
  const resource = Resource.default()
    .merge(new Resource({ 'service.name': o.serviceName, 'service.version': version, 'service.namespace': 'ntml' }))
    // OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (e.g. k8s.pod.name) override
    .merge(detectResourcesSync({ detectors: [envDetectorSync] }));

  const spanProcessors = [...extraSpans];
  const readers = [...extraReaders];
  if (endpoints) {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
    const { OTLPMetricExporter } = await import('@opentelemetry/exporter-metrics-otlp-proto');
    if (endpoints.exportTraces) spanProcessors.push(new BatchSpanProcessor(new OTLPTraceExporter(endpoints.traces ? { url: endpoints.traces } : {})));
    if (endpoints.exportMetrics) {
      readers.push(
        new PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter(endpoints.metrics ? { url: endpoints.metrics } : {}),
          exportIntervalMillis: metricsIntervalMs(env),
        }),
      );
    }
  }

  // failed exports (collector down, rejected requests) are reported once each, not swallowed
  api.diag.setLogger(
    {
      error: (message: string, ...args: unknown[]) => process.stderr.write(`${exportFailureLine(message, args)}\n`),
      warn: () => undefined,
      info: () => undefined,
      debug: () => undefined,
      verbose: () => undefined,
    },
    { logLevel: api.DiagLogLevel.ERROR, suppressOverrideMessage: true },
  );
  const tracerProvider = new BasicTracerProvider({ resource });
  for (const p of spanProcessors) tracerProvider.addSpanProcessor(p);
  // also installs the W3C trace-context propagator the Temporal interceptors inject with
  tracerProvider.register({ contextManager: new AsyncLocalStorageContextManager().enable() });
  const meterProvider = new MeterProvider({ resource, readers });
  api.metrics.setGlobalMeterProvider(meterProvider);
  const meter = meterProvider.getMeter('ntml', version);

  const telemetry: Telemetry = {
    api,
    resource,
    tracerProvider,
    meterProvider,
    tracer: tracerProvider.getTracer('ntml', version),
    meter,
    instruments: createInstruments(meter),
    endpoint: endpoints?.shown,
    async flush() {
      await tracerProvider.forceFlush();
      await meterProvider.forceFlush();
    },
    async shutdown() {
      if (active === telemetry) active = undefined;
      // an unreachable collector must not keep a worker or the CLI from exiting
      await Promise.race([
        Promise.allSettled([tracerProvider.shutdown(), meterProvider.shutdown()]),
        new Promise((r) => setTimeout(r, 10_000).unref()),
      ]);
      api.trace.disable();
      api.metrics.disable();
      api.context.disable();
      api.propagation.disable();
      api.diag.disable();
    },
  };
  active = telemetry;
  return telemetry;
}

/** Flushes and stops this process' telemetry, if any. */
export async function shutdownTelemetry(): Promise<void> {
  await active?.shutdown();
}

/**
 * A failed export as one line: the SDK hands its logger the message and the raw error (an
 * OTLPExporterError with the response body and a stack), which console.error would print as
 * a multi-line object. The hint names the switch for a backend that takes only one signal.
 */
export function exportFailureLine(message: string, args: unknown[]): string {
  const detail = args
    .map((a) => {
      if (a instanceof Error) return `${a.message}${(a as { code?: unknown }).code !== undefined ? ` (${String((a as { code?: unknown }).code)})` : ''}`;
      if (a && typeof a === 'object' && 'message' in a) return String((a as { message: unknown }).message);
      return typeof a === 'string' ? a : '';
    })
    .filter(Boolean)
    .join('; ');
  const line = `telemetry: ${message}${detail ? `: ${detail}` : ''}`.replace(/\s*\n\s*/g, ' ');
  const hint = /metric/i.test(message) ? ' (a backend without metrics, e.g. Jaeger: set OTEL_METRICS_EXPORTER=none)' : '';
  return `${line.length > 300 ? `${line.slice(0, 297)}...` : line}${hint}`;
}

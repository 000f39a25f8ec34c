/**
 * Temporal wiring of the telemetry: the @temporalio/interceptors-opentelemetry interceptors
 * (client -> workflow -> activity, one trace through the headers Temporal carries), the sink
 * that exports spans made inside the workflow sandbox, stage durations from an activity
 * interceptor, and the task-queue backlog as an observable gauge. Every function returns
 * nothing to add when telemetry is off, and the interceptor package is only loaded when on.
 */
import type { ClientInterceptors, WorkflowClientInterceptor } from '@temporalio/client';
import type { ActivityInterceptorsFactory, InjectedSinks, NativeConnection } from '@temporalio/worker';
import type { OpenTelemetrySinks } from '@temporalio/interceptors-opentelemetry';
import { METRIC } from './metrics';
import { currentTelemetry, type Telemetry } from './setup';

/** The module of workflow interceptors that goes into the workflow bundle (webpack resolves it; no Node imports). */
export function workflowInterceptorModules(): string[] {
  return currentTelemetry() ? [require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors')] : [];
}

/** Client calls that change a run; reads (describe, query) stay untraced. */
const TRACED_CLIENT_CALLS = ['start', 'startWithDetails', 'signalWithStart', 'signal', 'startUpdate', 'startUpdateWithStart', 'cancel', 'terminate'] as const;

/**
 * The client side of the trace: starting a run injects the command's trace context into the
 * workflow's headers. Progress polling (a describe and a query every second while a command
 * watches a run) is left out, or an hours-long run would grow its trace by two spans a second.
 */
export function clientInterceptors(): ClientInterceptors | undefined {
  if (!currentTelemetry()) return undefined;
  const { OpenTelemetryWorkflowClientInterceptor } = require('@temporalio/interceptors-opentelemetry') as typeof import('@temporalio/interceptors-opentelemetry');
  const otel = new OpenTelemetryWorkflowClientInterceptor();
  const traced: WorkflowClientInterceptor = {};
  for (const call of TRACED_CLIENT_CALLS) {
    const method = (otel as unknown as Record<string, unknown>)[call];
    if (typeof method === 'function') (traced as Record<string, unknown>)[call] = method.bind(otel);
  }
  return { workflow: [traced] };
}

/** Sinks for the orchestration worker: spans of the workflow sandbox leave it through this one. */
export function workflowSinks(): InjectedSinks<OpenTelemetrySinks> | undefined {
  const t = currentTelemetry();
  if (!t) return undefined;
  const { makeWorkflowExporter } = require('@temporalio/interceptors-opentelemetry') as typeof import('@temporalio/interceptors-opentelemetry');
  return { exporter: makeWorkflowExporter(t.tracerProvider.getActiveSpanProcessor(), t.resource) };
}

/** Activity interceptors of the training worker: the activity span, and the stage-duration metric. */
export function activityInterceptors(): ActivityInterceptorsFactory[] {
  const t = currentTelemetry();
  if (!t) return [];
  const otel = require('@temporalio/interceptors-opentelemetry') as typeof import('@temporalio/interceptors-opentelemetry');
  return [
    (ctx) => ({
      inbound: new otel.OpenTelemetryActivityInboundInterceptor(ctx),
      outbound: new otel.OpenTelemetryActivityOutboundInterceptor(ctx),
    }),
    stageDurations(t),
  ];
}

function stageDurations(t: Telemetry): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const t0 = performance.now();
        let outcome = 'completed';
        try {
          return await next(input);
        } catch (err) {
          outcome = ctx.cancellationSignal.aborted ? 'cancelled' : 'failed';
          throw err;
        } finally {
          t.instruments.stageDuration.record((performance.now() - t0) / 1000, {
            'ntml.activity': ctx.info.activityType,
            'ntml.outcome': outcome,
            'ntml.attempt': ctx.info.attempt,
          });
        }
      },
    },
  });
}

export interface ObservedQueue {
  name: string;
  kind: 'workflow' | 'activity';
}

/**
 * Reports the approximate backlog (tasks waiting for a worker) of the task queues at every
 * metric export, from one DescribeTaskQueue call per queue: cheap enough at the export
 * interval, and it is what shows that more training workers are needed. Returns a function
 * that stops observing.
 */
export function observeQueueBacklog(service: NativeConnection['workflowService'], namespace: string, queues: ObservedQueue[]): () => void {
  const t = currentTelemetry();
  if (!t) return () => undefined;
  const gauge = t.meter.createObservableGauge(METRIC.queueBacklog, {
    description: 'tasks waiting in a task queue for a worker (approximate, from the server)',
    unit: '{task}',
  });
  const callback = async (result: import('@opentelemetry/api').ObservableResult) => {
    await Promise.all(
      queues.map(async (q) => {
        try {
          const r = await service.describeTaskQueue({
            namespace,
            taskQueue: { name: q.name, kind: 1 },
            taskQueueType: q.kind === 'workflow' ? 1 : 2,
            reportStats: true,
          });
          const backlog = r.stats?.approximateBacklogCount;
          if (backlog !== undefined && backlog !== null) {
            result.observe(Number(backlog), { 'temporal.task_queue': q.name, 'temporal.task_queue.kind': q.kind });
          }
        } catch {
          // a failed observation is a gap in the series, never a worker failure
        }
      }),
    );
  };
  gauge.addCallback(callback);
  return () => gauge.removeCallback(callback);
}

/**
 * When telemetry is on and where it goes. Off unless an OTLP endpoint is configured:
 *   NTML_OTEL_ENDPOINT=http://collector:4318            base URL; /v1/traces and /v1/metrics are appended
 *   OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_/_METRICS_ variants)   the standard OpenTelemetry variables
 *   OTEL_SDK_DISABLED=true                              off, whatever else is set
 *   NTML_OTEL_METRICS_INTERVAL_SECONDS (default 30)     how often metrics are exported
 *   OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER=none   that signal is not exported (e.g. Jaeger,
 *                                                       which takes traces but no metrics); otlp
 *                                                       (the default) is the only other value
 * Export is OTLP over HTTP with protobuf bodies; OTEL_EXPORTER_OTLP_HEADERS and the other
 * standard exporter variables (headers, timeouts, TLS certificates) apply as usual.
 * This module loads nothing from the SDK, so checking it costs nothing.
 */

export interface TelemetryEndpoints {
  /** undefined: let the exporter read the OTEL_EXPORTER_OTLP_* variables itself */
  traces?: string;
  metrics?: string;
  /** what to print: the configured base or signal endpoint */
  shown: string;
  /** which signals are exported (OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER) */
  exportTraces: boolean;
  exportMetrics: boolean;
}

/** Whether OTEL_<SIGNAL>_EXPORTER asks for OTLP (the default) or for nothing. */
function exporterOn(env: NodeJS.ProcessEnv, variable: 'OTEL_TRACES_EXPORTER' | 'OTEL_METRICS_EXPORTER'): boolean {
  const values = (env[variable] ?? '').split(',').map((v) => v.trim().toLowerCase()).filter(Boolean);
  if (values.length === 0) return true;
  const unsupported = values.filter((v) => v !== 'otlp' && v !== 'none');
  if (unsupported.length) throw new TelemetryConfigError(`${variable} must be otlp or none (ntml exports OTLP over HTTP only), got "${env[variable]}"`);
  return !values.includes('none');
}

export class TelemetryConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TelemetryConfigError';
  }
}

/** The OTLP endpoints, or undefined when telemetry is off. */
export function telemetryEndpoints(env: NodeJS.ProcessEnv = process.env): TelemetryEndpoints | undefined {
  if (/^true$/i.test(env.OTEL_SDK_DISABLED?.trim() ?? '')) return undefined;
  const exportTraces = exporterOn(env, 'OTEL_TRACES_EXPORTER');
  const exportMetrics = exporterOn(env, 'OTEL_METRICS_EXPORTER');
  if (!exportTraces && !exportMetrics) return undefined;
  const ntml = env.NTML_OTEL_ENDPOINT?.trim();
  if (ntml) {
    let base: URL;
    try {
      base = new URL(ntml);
    } catch {
      throw new TelemetryConfigError(`NTML_OTEL_ENDPOINT must be a URL such as http://otel-collector:4318, got "${ntml}"`);
    }
    if (base.protocol !== 'http:' && base.protocol !== 'https:') {
      throw new TelemetryConfigError(`NTML_OTEL_ENDPOINT must be an http(s) URL (OTLP over HTTP), got "${ntml}"`);
    }
    const root = ntml.replace(/\/+$/, '');
    return { traces: `${root}/v1/traces`, metrics: `${root}/v1/metrics`, shown: root, exportTraces, exportMetrics };
  }
  const standard =
    env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?.trim();
  return standard ? { shown: standard, exportTraces, exportMetrics } : undefined;
}

export function metricsIntervalMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.NTML_OTEL_METRICS_INTERVAL_SECONDS?.trim();
  if (!raw) return 30_000;
  const seconds = Number(raw);
  if (!Number.isFinite(seconds) || seconds <= 0) {
    throw new TelemetryConfigError(`NTML_OTEL_METRICS_INTERVAL_SECONDS must be a positive number, got "${raw}"`);
  }
  return Math.round(seconds * 1000);
}

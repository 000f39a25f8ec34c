/**
 * When telemetry is on and where it goes. Off unless an OTLP endpoint is configured:
 *   NTML_OTEL_ENDPOINT=http://collector:4318            base URL; /v1/traces and /v1/metrics are appended
 *   OTEL_EXPORTER_OTLP_ENDPOINT (or the _TRACES_/_METRICS_ variants)   the standard OpenTelemetry variables
 *   OTEL_SDK_DISABLED=true                              off, whatever else is set
 *   NTML_OTEL_METRICS_INTERVAL_SECONDS (default 30)     how often metrics are exported
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
    return { traces: `${root}/v1/traces`, metrics: `${root}/v1/metrics`, shown: root };
  }
  const standard =
    env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_METRICS_ENDPOINT?.trim();
  return standard ? { shown: standard } : undefined;
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

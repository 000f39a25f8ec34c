/** Span helpers that cost nothing when telemetry is off. */
import type { Attributes } from '@opentelemetry/api';
import { currentTelemetry } from './setup';

/**
 * Runs `f` inside a span named `name` (the active span while it runs, so Temporal calls made
 * in it carry its trace context). Errors are recorded on the span and rethrown.
 */
export async function inSpan<T>(name: string, attributes: Attributes, f: () => Promise<T>): Promise<T> {
  const t = currentTelemetry();
  if (!t) return f();
  return t.tracer.startActiveSpan(name, { attributes }, async (span) => {
    try {
      return await f();
    } catch (err) {
      span.recordException(err as Error);
      span.setStatus({ code: t.api.SpanStatusCode.ERROR, message: (err as Error)?.message });
      throw err;
    } finally {
      span.end();
    }
  });
}

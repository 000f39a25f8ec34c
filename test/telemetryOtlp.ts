/**
 * A local OTLP/HTTP receiver for the telemetry tests: it accepts what the exporters POST to
 * /v1/traces and /v1/metrics and decodes the protobuf bodies with protobufjs from the OTLP
 * message definitions below (a subset of opentelemetry-proto v1, field numbers as published),
 * independently of the exporter's own encoder.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as protobuf from 'protobufjs';

const OTLP_PROTO = `
syntax = "proto3";
package otlp;

message AnyValue {
  oneof value {
    string string_value = 1;
    bool bool_value = 2;
    int64 int_value = 3;
    double double_value = 4;
    ArrayValue array_value = 5;
    KeyValueList kvlist_value = 6;
    bytes bytes_value = 7;
  }
}
message ArrayValue { repeated AnyValue values = 1; }
message KeyValueList { repeated KeyValue values = 1; }
message KeyValue { string key = 1; AnyValue value = 2; }
message InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped_attributes_count = 4; }
message Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; }

message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; }
message ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; }
message Status { string message = 2; int32 code = 3; }
message Span {
  bytes trace_id = 1;
  bytes span_id = 2;
  string trace_state = 3;
  bytes parent_span_id = 4;
  string name = 5;
  int32 kind = 6;
  fixed64 start_time_unix_nano = 7;
  fixed64 end_time_unix_nano = 8;
  repeated KeyValue attributes = 9;
  uint32 dropped_attributes_count = 10;
  Status status = 15;
}

message ExportMetricsServiceRequest { repeated ResourceMetrics resource_metrics = 1; }
message ResourceMetrics { Resource resource = 1; repeated ScopeMetrics scope_metrics = 2; string schema_url = 3; }
message ScopeMetrics { InstrumentationScope scope = 1; repeated Metric metrics = 2; string schema_url = 3; }
message Metric {
  string name = 1;
  string description = 2;
  string unit = 3;
  oneof data { Gauge gauge = 5; Sum sum = 7; Histogram histogram = 9; }
}
message Gauge { repeated NumberDataPoint data_points = 1; }
message Sum { repeated NumberDataPoint data_points = 1; int32 aggregation_temporality = 2; bool is_monotonic = 3; }
message Histogram { repeated HistogramDataPoint data_points = 1; int32 aggregation_temporality = 2; }
message NumberDataPoint {
  repeated KeyValue attributes = 7;
  fixed64 start_time_unix_nano = 2;
  fixed64 time_unix_nano = 3;
  oneof value { double as_double = 4; sfixed64 as_int = 6; }
}
message HistogramDataPoint {
  repeated KeyValue attributes = 9;
  fixed64 start_time_unix_nano = 2;
  fixed64 time_unix_nano = 3;
  fixed64 count = 4;
  double sum = 5;
  repeated fixed64 bucket_counts = 6;
  repeated double explicit_bounds = 7;
  double min = 11;
  double max = 12;
}
`;

const root = protobuf.parse(OTLP_PROTO, { keepCase: false }).root;
const TraceRequest = root.lookupType('otlp.ExportTraceServiceRequest');
const MetricsRequest = root.lookupType('otlp.ExportMetricsServiceRequest');

export type AttrValue = string | number | boolean | AttrValue[] | undefined;

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  attributes: Record<string, AttrValue>;
}

export interface ReceivedPoint {
  service: string;
  metric: string;
  unit: string;
  kind: 'gauge' | 'sum' | 'histogram';
  attributes: Record<string, AttrValue>;
  /** gauge/sum value, or the histogram's count */
  value: number;
  sum?: number;
}

interface Kv {
  key: string;
  value?: Record<string, unknown>;
}

function anyValue(v: Record<string, unknown> | undefined): AttrValue {
  if (!v) return undefined;
  if (v.stringValue !== undefined) return v.stringValue as string;
  if (v.boolValue !== undefined) return v.boolValue as boolean;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue as number;
  if (v.arrayValue !== undefined) return ((v.arrayValue as { values?: Record<string, unknown>[] }).values ?? []).map(anyValue);
  return undefined;
}

function attrs(list: Kv[] | undefined): Record<string, AttrValue> {
  return Object.fromEntries((list ?? []).map((kv) => [kv.key, anyValue(kv.value)]));
}

const hex = (b: unknown) => (b instanceof Uint8Array ? Buffer.from(b).toString('hex') : '');

export interface OtlpReceiver {
  url: string;
  spans: ReceivedSpan[];
  points: ReceivedPoint[];
  /** every request: path and content type, for checks on the transport */
  requests: Array<{ path: string; contentType: string; bytes: number }>;
  close(): Promise<void>;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const points: ReceivedPoint[] = [];
  const requests: OtlpReceiver['requests'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = req.url ?? '';
      requests.push({ path, contentType: req.headers['content-type'] ?? '', bytes: body.length });
      try {
        if (path === '/v1/traces') decodeTraces(body, spans);
        else if (path === '/v1/metrics') decodeMetrics(body, points);
        else {
          res.writeHead(404).end();
          return;
        }
      } catch (err) {
        res.writeHead(400).end(String(err));
        return;
      }
      // an empty ExportServiceResponse: full success
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  // longer than the exporters' 5 s batch delay: a socket the server closes just as the client
  // reuses it fails that export (the exporter does not retry connection errors)
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    points,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

function decodeTraces(body: Buffer, out: ReceivedSpan[]): void {
  const msg = TraceRequest.toObject(TraceRequest.decode(body), { longs: String, defaults: false }) as {
    resourceSpans?: Array<{ resource?: { attributes?: Kv[] }; scopeSpans?: Array<{ spans?: Array<Record<string, unknown>> }> }>;
  };
  for (const rs of msg.resourceSpans ?? []) {
    const service = String(attrs(rs.resource?.attributes)['service.name'] ?? '');
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          service,
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          name: String(s.name),
          attributes: attrs(s.attributes as Kv[]),
        });
      }
    }
  }
}

function decodeMetrics(body: Buffer, out: ReceivedPoint[]): void {
  const msg = MetricsRequest.toObject(MetricsRequest.decode(body), { longs: String, defaults: false }) as {
    resourceMetrics?: Array<{ resource?: { attributes?: Kv[] }; scopeMetrics?: Array<{ metrics?: Array<Record<string, unknown>> }> }>;
  };
  for (const rm of msg.resourceMetrics ?? []) {
    const service = String(attrs(rm.resource?.attributes)['service.name'] ?? '');
    for (const sm of rm.scopeMetrics ?? []) {
      for (const m of sm.metrics ?? []) {
        const base = { service, metric: String(m.name), unit: String(m.unit ?? '') };
        for (const kind of ['gauge', 'sum'] as const) {
          const data = m[kind] as { dataPoints?: Array<Record<string, unknown>> } | undefined;
          for (const p of data?.dataPoints ?? []) {
            out.push({ ...base, kind, attributes: attrs(p.attributes as Kv[]), value: Number(p.asDouble ?? p.asInt ?? 0) });
          }
        }
        const h = m.histogram as { dataPoints?: Array<Record<string, unknown>> } | undefined;
        for (const p of h?.dataPoints ?? []) {
          out.push({ ...base, kind: 'histogram', attributes: attrs(p.attributes as Kv[]), value: Number(p.count ?? 0), sum: p.sum as number | undefined });
        }
      }
    }
  }
}

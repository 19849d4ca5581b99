// Send N spans with the OpenTelemetry JS SDK's OTLP/HTTP protobuf exporter
// (@opentelemetry/exporter-trace-otlp-proto 0.219.0, the version ADOT Node 0.13.0 ships) to a URL, or with
// `--protocol grpc` its OTLP/gRPC exporter (@opentelemetry/exporter-trace-otlp-grpc, @grpc/grpc-js).
//   NODE_PATH=target/node/node_modules node node_otlp_emit.js --url http://127.0.0.1:PORT/v1/traces \
//     [--protocol http|grpc] [--spans N] [--batch-size B] [--compression none|gzip] [--resource key=value]...
//     [--name PREFIX]
// gRPC takes `--url http://127.0.0.1:PORT`; without --url it uses the exporter's default (localhost:4317, and
// OTEL_EXPORTER_OTLP_* variables), as an application that sets nothing does.
// The spans form one trace: the first is the root, the others its children, each with the attribute
// `emit.index` = its position. They are collected in memory first, then handed to the exporter B at a
// time (default: all in one export call, so one request when it succeeds at once); the exporter's own
// retries apply. Prints one JSON line: {"results": [{"code", "error"}...], "spans": [{"traceId",
// "spanId", "parentSpanId", "name"}...]}; exits 0 when every export call succeeded, else 1.
// Bounded: gives up after 30 s. Loopback use only.
'use strict';
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } = require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { ExportResultCode } = require('@opentelemetry/core');
const api = require('@opentelemetry/api');

function parseArgs(argv) {
  const opts = {
    url: null, protocol: 'http', spans: 1, batchSize: 0, compression: 'none', resource: {}, name: 'node-otlp',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [k, v] = [argv[i], argv[i + 1]];
    if (v === undefined) throw new Error(`${k} needs a value`);
    if (k === '--url') opts.url = v;
    else if (k === '--spans') opts.spans = Number(v);
    else if (k === '--batch-size') opts.batchSize = Number(v);
    else if (k === '--compression') opts.compression = v;
    else if (k === '--protocol') opts.protocol = v;
    else if (k === '--name') opts.name = v;
    else if (k === '--resource') {
      const eq = v.indexOf('=');
      if (eq < 1) throw new Error(`--resource wants key=value, got ${v}`);
      opts.resource[v.slice(0, eq)] = v.slice(eq + 1);
    } else throw new Error(`unknown argument ${k}`);
  }
  if (!['http', 'grpc'].includes(opts.protocol)) throw new Error('--protocol must be http or grpc');
  if (!opts.url && opts.protocol === 'http') throw new Error('--url is required');
  if (!(opts.spans >= 1 && opts.spans <= 100000)) throw new Error('--spans must be 1..100000');
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const memory = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes(opts.resource),
    spanProcessors: [new SimpleSpanProcessor(memory)],
  });
  const tracer = provider.getTracer('node-otlp-emit', '1.0.0');
  const root = tracer.startSpan(`${opts.name}-0`, { attributes: { 'emit.index': 0 } });
  const ctx = api.trace.setSpan(api.context.active(), root);
  for (let i = 1; i < opts.spans; i++) {
    tracer.startSpan(`${opts.name}-${i}`, { attributes: { 'emit.index': i } }, ctx).end();
  }
  root.end();
  const spans = memory.getFinishedSpans();
  const settings = { compression: opts.compression, timeoutMillis: 10000 };
  if (opts.url) settings.url = opts.url;
  const { OTLPTraceExporter } = require(
    opts.protocol === 'grpc' ? '@opentelemetry/exporter-trace-otlp-grpc' : '@opentelemetry/exporter-trace-otlp-proto');
  const exporter = new OTLPTraceExporter(settings);
  const size = opts.batchSize > 0 ? opts.batchSize : spans.length;
  const results = [];
  for (let i = 0; i < spans.length; i += size) {
    const r = await new Promise(resolve => exporter.export(spans.slice(i, i + size), resolve));
    results.push({ code: r.code === ExportResultCode.SUCCESS ? 'SUCCESS' : 'FAILED', error: r.error ? String(r.error) : null });
  }
  await exporter.shutdown();
  const out = spans.map(s => ({
    traceId: s.spanContext().traceId,
    spanId: s.spanContext().spanId,
    parentSpanId: s.parentSpanContext ? s.parentSpanContext.spanId : '',
    name: s.name,
  }));
  process.stdout.write(JSON.stringify({ results, spans: out }) + '\n');
  process.exitCode = results.every(r => r.code === 'SUCCESS') ? 0 : 1;
}

setTimeout(() => { process.stderr.write('node_otlp_emit.js: gave up after 30 s\n'); process.exit(2); }, 30000).unref();
main().catch(err => { process.stderr.write(`node_otlp_emit.js: ${err.stack || err}\n`); process.exit(2); });

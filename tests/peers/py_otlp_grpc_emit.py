"""Send N spans with the stock OpenTelemetry Python OTLP/gRPC exporter (opentelemetry-exporter-otlp-proto-grpc,
grpcio), as an application does.

    python py_otlp_grpc_emit.py [--endpoint http://127.0.0.1:PORT] [--spans N] [--batch-size B]
        [--compression none|gzip] [--pad BYTES] [--timeout S] [--name PREFIX] [--resource key=value]...

Without --endpoint the exporter takes its own default (localhost:4317, or the OTEL_EXPORTER_OTLP_* variables),
as an application that sets nothing does. The spans form one trace: the first is the root, the others its
children, each with `emit.index` = its position and, with --pad, a `pad` attribute of that many bytes. They are
collected in memory first, then handed to the exporter B at a time (default: all in one export call); the
exporter's own retries apply (it waits what a RetryInfo says, and logs "retrying in ..." on stderr). Prints one
JSON line: {"results": ["SUCCESS" | "FAILURE"...], "spans": [{"trace_id", "span_id", "name"}...]}; exits 0 when
every export call succeeded, else 1. Loopback use only.
"""
import argparse
import json
import sys

import grpc
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint")
    ap.add_argument("--spans", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--compression", choices=["none", "gzip"], default="none")
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--name", default="py-grpc")
    ap.add_argument("--resource", action="append", default=[])
    a = ap.parse_args()

    resource = dict(kv.split("=", 1) for kv in a.resource)
    provider = TracerProvider(resource=Resource.create(resource))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("py-otlp-grpc-emit", "1.0.0")
    pad = {"pad": "x" * a.pad} if a.pad else {}
    with tracer.start_as_current_span(f"{a.name}-0", attributes={"emit.index": 0, **pad}):
        for i in range(1, a.spans):
            with tracer.start_as_current_span(f"{a.name}-{i}", attributes={"emit.index": i, **pad}):
                pass
    spans = memory.get_finished_spans()

    kwargs = {"timeout": a.timeout,
              "compression": grpc.Compression.Gzip if a.compression == "gzip" else grpc.Compression.NoCompression}
    if a.endpoint:
        kwargs.update(endpoint=a.endpoint, insecure=True)
    exporter = OTLPSpanExporter(**kwargs)
    size = a.batch_size or len(spans)
    results = [exporter.export(spans[i:i + size]) for i in range(0, len(spans), size)]
    exporter.shutdown()
    out = [{"trace_id": format(s.context.trace_id, "032x"), "span_id": format(s.context.span_id, "016x"),
            "name": s.name} for s in spans]
    print(json.dumps({"results": [r.name for r in results], "spans": out}))
    return 0 if all(r == SpanExportResult.SUCCESS for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())

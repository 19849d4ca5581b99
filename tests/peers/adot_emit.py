"""Emit spans through AWS Distro for OpenTelemetry (Python), configured the way it configures itself.

Run under ADOT's auto-instrumentation from its own venv (tests/e2e/setup.sh makes target/venv-adot):
    AWS_LAMBDA_FUNCTION_NAME=fn AWS_XRAY_DAEMON_ADDRESS=127.0.0.1:2000 OTEL_SERVICE_NAME=svc \
    OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none \
      target/venv-adot/bin/opentelemetry-instrument target/venv-adot/bin/python adot_emit.py [--spans N] [--pad B [--pad-first K]]
With AWS_LAMBDA_FUNCTION_NAME set, ADOT exports spans as T1S datagrams to AWS_XRAY_DAEMON_ADDRESS (10 spans
a datagram); with OTEL_AWS_APPLICATION_SIGNALS_ENABLED=true it also sends unsampled spans as T1U.
Makes one trace: a root span and N-1 children, each with attribute `emit.index` (and `pad`, B bytes, on
the first K children, default all, if --pad); the children end first, in order, the root last; then force-flushes and prints one JSON line: {"provider": the global tracer provider's class,
"spans": [{"trace_id", "span_id", "name", "sampled"}...]} (hex ids; empty when tracing is off).
"""
import argparse
import json

from opentelemetry import trace


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spans", type=int, default=1)
    ap.add_argument("--pad", type=int, default=0)
    ap.add_argument("--pad-first", type=int, default=None)
    args = ap.parse_args()
    tracer = trace.get_tracer("adot-emit", "1.0")
    out = []

    def record(span):
        ctx = span.get_span_context()
        if ctx.is_valid:
            out.append({"trace_id": format(ctx.trace_id, "032x"), "span_id": format(ctx.span_id, "016x"),
                        "name": span.name if hasattr(span, "name") else "", "sampled": ctx.trace_flags.sampled})

    with tracer.start_as_current_span("adot-0", attributes={"emit.index": 0}) as root:
        for i in range(1, args.spans):
            with tracer.start_as_current_span(f"adot-{i}", attributes={"emit.index": i}) as child:
                if args.pad and (args.pad_first is None or i <= args.pad_first):
                    child.set_attribute("pad", "p" * args.pad)
                record(child)
    record(root)
    provider = trace.get_tracer_provider()
    if hasattr(provider, "force_flush"):
        provider.force_flush()
    print(json.dumps({"provider": type(provider).__name__, "spans": out}), flush=True)


if __name__ == "__main__":
    main()

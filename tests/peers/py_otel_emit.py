"""Spans of every common kind from the stock OpenTelemetry Python SDK, through its OTLP exporter.

usage: py_otel_emit.py --endpoint URL --capture FILE [--protocol http|grpc]
  http: opentelemetry-exporter-otlp-proto-http to URL (…/v1/traces); grpc: …-proto-grpc to URL (host:port).

Trace ids come from AwsXRayIdGenerator (opentelemetry-sdk-extension-aws), as an app on AWS makes them.
One trace of an HTTP server span (new semantic conventions, an exception, an error status,
attributes of every type) with, beneath it, an HTTP client span (old conventions, 429), a PostgreSQL
query, a DynamoDB call through an AWS SDK, an SQS send, a LOCAL_ROOT client span as ADOT marks them;
and a second trace: an SQS consumer span linked to the send. The resource says EC2. Writes what it
sent to FILE as JSON: {"spans": [{name, kind, trace_id (X-Ray form), span_id, parent_id}]}.
"""
import argparse
import json
import sys

from opentelemetry.context import Context
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def xray_trace_id(trace_id: int) -> str:
    h = f"{trace_id:032x}"
    return f"1-{h[:8]}-{h[8:]}"


class Capture:
    def __init__(self):
        self.spans = []

    def add(self, span, name, kind):
        ctx = span.get_span_context()
        parent = getattr(span, "parent", None)
        self.spans.append({
            "name": name,
            "kind": kind,
            "trace_id": xray_trace_id(ctx.trace_id),
            "span_id": f"{ctx.span_id:016x}",
            "parent_id": f"{parent.span_id:016x}" if parent else None,
        })


def charge_card():
    raise ValueError("card declined: insufficient funds")


def emit(tracer, capture):
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as server:
        server.set_attributes({
            "http.request.method": "GET",
            "url.scheme": "https",
            "server.address": "api.example.com",
            "url.path": "/orders/7",
            "url.query": "expand=items",
            "http.response.status_code": 500,
            "user_agent.original": "curl/8.5.0",
            "client.address": "203.0.113.9",
            "order.id": "A-7",
            "enduser.id": "user-42",
            "attr.str": "text <&>",
            "attr.int": 42,
            "attr.float": 2.5,
            "attr.bool": True,
            "attr.strings": ["a", "b"],
            "attr.ints": [1, 2, 3],
        })
        try:
            charge_card()
        except ValueError as e:
            server.record_exception(e)
            server.set_status(Status(StatusCode.ERROR, "payment failed"))
        capture.add(server, "GET /orders/{id}", "server")

        with tracer.start_as_current_span("GET", kind=SpanKind.CLIENT) as client:
            client.set_attributes({
                "http.method": "GET",
                "http.url": "https://payments.example.com/charge?id=7",
                "http.status_code": 429,
            })
            capture.add(client, "GET", "http_client")

        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as db:
            db.set_attributes({
                "db.system": "postgresql",
                "db.name": "orders",
                "db.statement": "SELECT * FROM orders WHERE id = $1",
                "db.user": "app",
                "db.connection_string": "jdbc:postgresql://db.internal:5432",
            })
            capture.add(db, "SELECT orders", "db")

        with tracer.start_as_current_span("DynamoDB.GetItem", kind=SpanKind.CLIENT) as aws:
            aws.set_attributes({
                "rpc.system": "aws-api",
                "rpc.service": "DynamoDB",
                "rpc.method": "GetItem",
                "aws.region": "us-east-1",
                "aws.table_name": "orders",
                "aws.request_id": "REQ123",
            })
            capture.add(aws, "DynamoDB.GetItem", "aws")

        with tracer.start_as_current_span("orders send", kind=SpanKind.PRODUCER) as producer:
            producer.set_attributes({
                "messaging.system": "aws_sqs",
                "messaging.url": "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
                "messaging.destination.name": "orders",
            })
            capture.add(producer, "orders send", "producer")
            sent = producer.get_span_context()

        with tracer.start_as_current_span("inventory call", kind=SpanKind.CLIENT) as local_root:
            local_root.set_attributes({
                "aws.span.kind": "LOCAL_ROOT",
                "aws.local.service": "checkout",
                "aws.remote.service": "inventory",
            })
            capture.add(local_root, "inventory call", "local_root")

    # A new trace: the consumer on the other side of the queue, linked to the send.
    with tracer.start_as_current_span("orders process", kind=SpanKind.CONSUMER, context=Context(),
                                      links=[Link(sent, {"link.kind": "sqs"})]) as consumer:
        consumer.set_attribute("messaging.system", "aws_sqs")
        capture.add(consumer, "orders process", "consumer")


def main(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--capture", required=True)
    p.add_argument("--protocol", choices=["http", "grpc"], default="http")
    args = p.parse_args(argv)
    if args.protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=args.endpoint, timeout=10)
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        exporter = OTLPSpanExporter(endpoint=args.endpoint, insecure=True, timeout=10)
    resource = Resource.create({
        "service.name": "checkout",
        "service.version": "1.4.2",
        "cloud.provider": "aws",
        "cloud.platform": "aws_ec2",
        "cloud.account.id": "123456789012",
        "cloud.availability_zone": "us-east-1a",
        "host.id": "i-0123456789abcdef0",
        "host.type": "m7g.large",
    })
    provider = TracerProvider(resource=resource, id_generator=AwsXRayIdGenerator())
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("py_otel_emit")
    capture = Capture()
    emit(tracer, capture)
    provider.shutdown()
    with open(args.capture, "w", encoding="utf-8") as f:
        json.dump({"spans": capture.spans}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

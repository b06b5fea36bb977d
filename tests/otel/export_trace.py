"""Exports one known trace to Strata with the OpenTelemetry Python SDK's OTLP exporters.

Usage: export_trace.py grpc|http ENDPOINT TENANT

Two services take part (each its own TracerProvider and resource, as two processes would):
gateway `GET /checkout` (server, 100 ms) -> gateway `auth` (client, 10 ms) and
gateway `checkout` (client, 80 ms) -> payment `charge` (server, 60 ms, error) -> payment `db`
(client, 40 ms). Times are explicit so the tree and its critical path are known exactly.
Prints the trace id (32 hex digits) on stdout once every span has been exported.
"""

import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode


def exporter(protocol, endpoint, tenant):
    headers = {"X-Scope-OrgID": tenant}
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression

        return OTLPSpanExporter(
            endpoint=endpoint,
            insecure=True,
            headers=tuple((k.lower(), v) for k, v in headers.items()),
            compression=Compression.Gzip,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import Compression

    return OTLPSpanExporter(endpoint=endpoint, headers=headers, compression=Compression.Gzip)


def provider(service, protocol, endpoint, tenant):
    p = TracerProvider(resource=Resource.create({"service.name": service, "deployment.environment": "e2e"}))
    p.add_span_processor(SimpleSpanProcessor(exporter(protocol, endpoint, tenant)))
    return p


def main():
    protocol, endpoint, tenant = sys.argv[1], sys.argv[2], sys.argv[3]
    gw_p = provider("gateway", protocol, endpoint, tenant)
    pay_p = provider("payment", protocol, endpoint, tenant)
    gw = gw_p.get_tracer("e2e.gateway")
    pay = pay_p.get_tracer("e2e.payment")
    ms = 1_000_000
    t0 = time.time_ns() - 10_000 * ms

    root = gw.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=t0,
                         attributes={"http.method": "GET", "http.status_code": 500})
    ctx = trace.set_span_in_context(root)
    auth = gw.start_span("auth", context=ctx, kind=SpanKind.CLIENT, start_time=t0 + 2 * ms)
    auth.end(end_time=t0 + 12 * ms)
    call = gw.start_span("checkout", context=ctx, kind=SpanKind.CLIENT, start_time=t0 + 15 * ms)
    call_ctx = trace.set_span_in_context(call)
    charge = pay.start_span("charge", context=call_ctx, kind=SpanKind.SERVER, start_time=t0 + 20 * ms,
                            attributes={"payment.amount": 42.5, "payment.method": "card"})
    charge.add_event("card declined", attributes={"reason": "insufficient funds"})
    charge_ctx = trace.set_span_in_context(charge)
    db = pay.start_span("db", context=charge_ctx, kind=SpanKind.CLIENT, start_time=t0 + 30 * ms,
                        attributes={"db.system": "postgresql"})
    db.end(end_time=t0 + 70 * ms)
    charge.set_status(Status(StatusCode.ERROR, "declined"))
    charge.end(end_time=t0 + 80 * ms)
    call.end(end_time=t0 + 95 * ms)
    root.end(end_time=t0 + 100 * ms)

    # SimpleSpanProcessor exported each span on end(); shutdown flushes and closes.
    gw_p.shutdown()
    pay_p.shutdown()
    print(format(root.get_span_context().trace_id, "032x"), flush=True)


if __name__ == "__main__":
    main()

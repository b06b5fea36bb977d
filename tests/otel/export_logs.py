"""Exports known log records to Strata with the OpenTelemetry Python SDK's OTLP log exporters.

Usage: export_logs.py grpc|http ENDPOINT TENANT SERVICE

Three records through Python's `logging` and the SDK's LoggingHandler: "order placed" (INFO,
attribute order.id=o-17) and "payment failed: card declined" (ERROR) inside a span, whose trace
id is printed, and "no span here" (WARNING) outside it. The resource carries service.name and
deployment.environment=e2e.
"""

import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def exporter(protocol, endpoint, tenant):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint, insecure=True, headers=(("x-scope-orgid", tenant),))
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=endpoint, headers={"X-Scope-OrgID": tenant})


def main():
    protocol, endpoint, tenant, service = sys.argv[1:5]
    provider = LoggerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "e2e"})
    )
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter(protocol, endpoint, tenant)))
    log = logging.getLogger("shop")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    tracer = TracerProvider().get_tracer("e2e")
    with tracer.start_as_current_span("checkout") as span:
        log.info("order placed", extra={"order.id": "o-17"})
        log.error("payment failed: card declined")
        trace_id = format(span.get_span_context().trace_id, "032x")
    log.warning("no span here")
    provider.shutdown()
    print(trace_id)


if __name__ == "__main__":
    main()

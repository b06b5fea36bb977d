"""Exports known metrics to Strata with the OpenTelemetry Python SDK's OTLP metric exporters.

Usage: export_metrics.py grpc|http ENDPOINT TENANT SERVICE

A counter `orders` (unit `{order}`, 3 in region eu, 5 in region us), an up-down counter
`queue.depth` (7) and a histogram `checkout.duration` (unit `ms`, 5, 50 and 500 in region eu,
default buckets), all cumulative, exported once on shutdown.
"""

import sys

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource


def exporter(protocol, endpoint, tenant):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter(endpoint=endpoint, insecure=True, headers=(("x-scope-orgid", tenant),))
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return OTLPMetricExporter(endpoint=endpoint, headers={"X-Scope-OrgID": tenant})


def main():
    protocol, endpoint, tenant, service = sys.argv[1:5]
    reader = PeriodicExportingMetricReader(exporter(protocol, endpoint, tenant), export_interval_millis=3_600_000)
    provider = MeterProvider(resource=Resource.create({"service.name": service}), metric_readers=[reader])
    meter = provider.get_meter("e2e")
    orders = meter.create_counter("orders", unit="{order}")
    orders.add(3, {"region": "eu"})
    orders.add(5, {"region": "us"})
    meter.create_up_down_counter("queue.depth").add(7)
    duration = meter.create_histogram("checkout.duration", unit="ms")
    for v in (5, 50, 500):
        duration.record(v, {"region": "eu"})
    provider.shutdown()


if __name__ == "__main__":
    main()

"""The OpenTelemetry SDK of the examples, configured by the standard environment variables.

OTEL_EXPORTER_OTLP_ENDPOINT says where the OTLP/HTTP exporter sends, OTEL_SERVICE_NAME names
the service; the propagators are the default W3C ones, tracecontext and baggage.
"""

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor


def start() -> TracerProvider:
    """Makes an OTLP-exporting tracer provider the global one; shut it down to flush."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider

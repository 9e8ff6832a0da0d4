//! Logs, traces and metrics: `tracing` to stderr, plus OpenTelemetry OTLP exporters of
//! spans and metrics ([`meter`]) when an endpoint is configured. W3C trace context travels in gRPC metadata and in every event
//! envelope (`traceparent`), so one trace spans a cascade across services.

use std::collections::HashMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};
use crate::error::{Error, Result};

/// Keeps the tracer and meter providers alive; flushes spans and metrics on drop.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown_with_timeout(Duration::from_secs(2)) {
            eprintln!("telemetry shutdown: {e}");
        }
        if let Some(meters) = &self.meters
            && let Err(e) = meters.shutdown_with_timeout(Duration::from_secs(2))
        {
            eprintln!("metrics shutdown: {e}");
        }
    }
}

/// The meter every Mindmesh instrument is made from (the global provider's: exported
/// over OTLP when `telemetry.otlp_endpoint` is set, dropped otherwise).
pub fn meter() -> opentelemetry::metrics::Meter {
    opentelemetry::global::meter("mindmesh")
}

/// Installs the global subscriber. Spans always get OpenTelemetry ids (so trace context
/// propagates); they are exported only when `otlp_endpoint` is set.
pub fn init(config: &TelemetryConfig, service_name: &str) -> Result<TelemetryGuard> {
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meters = None;
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Config(format!("telemetry.otlp_endpoint: {e}")))?;
        let provider = opentelemetry_sdk::metrics::SdkMeterProvider::builder()
            .with_resource(resource)
            .with_periodic_exporter(exporter)
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        meters = Some(provider);
    }
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .with_timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| Error::Config(format!("telemetry.otlp_endpoint: {e}")))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer("mindmesh");
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = EnvFilter::try_new(&config.log_filter)
        .map_err(|e| Error::Config(format!("telemetry.log_filter: {e}")))?;
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let installed = match config.log_format {
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
    installed.map_err(|e| Error::Config(format!("cannot install log subscriber: {e}")))?;
    Ok(TelemetryGuard { provider, meters })
}

/// The W3C `traceparent` of the current span, if it belongs to a trace.
pub fn current_traceparent() -> Option<String> {
    let cx = tracing::Span::current().context();
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Makes `span` a child of the trace named by `traceparent` (no-op when empty or bad).
pub fn set_parent_from_traceparent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let mut carrier = HashMap::new();
    carrier.insert("traceparent".to_owned(), traceparent.to_owned());
    let cx = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(cx);
}

/// Reads trace context from HTTP/2 headers (incoming gRPC calls).
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes trace context into gRPC metadata (outgoing calls).
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The span of one incoming gRPC call, parented on the caller's trace context.
pub fn grpc_request_span(request: &http::Request<()>) -> tracing::Span {
    request_span(request.uri().path(), request.headers())
}

/// The span of a gRPC call to `path` whose metadata is `headers` (the trace context it
/// carries becomes the span's parent).
pub fn request_span(path: &str, headers: &http::HeaderMap) -> tracing::Span {
    let span = tracing::info_span!("grpc", path = %path, caller = tracing::field::Empty);
    let cx = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    let _ = span.set_parent(cx);
    span
}

/// Adds the current trace context to an outgoing request's metadata.
pub fn inject_into<T>(request: &mut tonic::Request<T>) {
    let cx = tracing::Span::current().context();
    TraceContextPropagator::new()
        .inject_context(&cx, &mut MetadataInjector(request.metadata_mut()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt;

    fn with_tracing(f: impl FnOnce()) {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f);
    }

    fn trace_id(span: &tracing::Span) -> opentelemetry::trace::TraceId {
        span.context().span().span_context().trace_id()
    }

    #[test]
    fn one_trace_spans_an_event_from_publisher_to_handler() {
        with_tracing(|| {
            let operation = tracing::info_span!("create_user");
            let _entered = operation.enter();
            let envelope = crate::events::envelope(
                crate::Service::Permissions,
                None,
                mindmesh_proto::mindmesh::events::v1::envelope::Payload::AccountActivity(
                    Default::default(),
                ),
            );
            let id = trace_id(&operation);
            assert!(
                envelope.traceparent.contains(&id.to_string()),
                "{}",
                envelope.traceparent
            );

            let handler = tracing::info_span!(parent: None, "handle_event");
            set_parent_from_traceparent(&handler, &envelope.traceparent);
            assert_eq!(trace_id(&handler), id);
        });
    }

    #[test]
    fn one_trace_spans_a_grpc_call() {
        with_tracing(|| {
            let caller = tracing::info_span!("client_call");
            let _entered = caller.enter();
            let mut request = tonic::Request::new(());
            inject_into(&mut request);
            let header = request
                .metadata()
                .get("traceparent")
                .expect("traceparent in metadata")
                .to_str()
                .unwrap()
                .to_owned();
            let http = http::Request::builder()
                .uri("/mindmesh.permissions.v1.AccountService/GetUser")
                .header("traceparent", header)
                .body(())
                .unwrap();
            let server = grpc_request_span(&http);
            assert_eq!(trace_id(&server), trace_id(&caller));
        });
    }

    #[test]
    fn bad_traceparents_are_ignored() {
        with_tracing(|| {
            let span = tracing::info_span!(parent: None, "x");
            set_parent_from_traceparent(&span, "00-garbage");
            set_parent_from_traceparent(&span, "");
            assert_ne!(trace_id(&span), opentelemetry::trace::TraceId::INVALID);
        });
    }
}

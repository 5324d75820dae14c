//! Logging with `tracing`: human text or MozLog-style JSON, and the one access event per
//! request. Never records `Authorization`, cookies, tokens, secrets or query strings: the access
//! event is built from an explicit list of harmless fields.

use std::fmt;
use std::time::Duration;

use http::{HeaderValue, Method, Response};
use serde_json::{Map, Value, json};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::body::Body;
use crate::config::{LogFormat, LogSettings};
use crate::pipeline::{Outcome, Snapshot};

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: piped logs (containers, journald) stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.event_format(MozLog::new()).try_init(),
    };
}

/// One access event (target `access`) with a fixed set of fields.
pub fn access(
    snapshot: &Snapshot,
    method: &Method,
    response: &Response<Body>,
    outcome: &Outcome,
    request_id: &HeaderValue,
    elapsed: Duration,
) {
    let route = outcome.route.and_then(|i| snapshot.route_names.get(i));
    let upstream = outcome
        .upstream
        .and_then(|i| snapshot.upstream_names.get(i));
    tracing::info!(
        target: "access",
        method = method.as_str(),
        route = route.map_or("-", |r| &*r.0),
        status = response.status().as_u16(),
        errno = outcome.errno,
        reason = outcome.reason,
        upstream = upstream.map_or("-", |u| &*u.0),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = request_id.to_str().unwrap_or("-"),
        "request"
    );
}

/// MozLog JSON: `{Timestamp, Type, Logger, Hostname, EnvVersion, Severity, Pid, Fields}`.
pub struct MozLog {
    hostname: String,
    pid: u32,
}

impl MozLog {
    pub fn new() -> Self {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| {
                std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_else(|| "localhost".into());
        MozLog {
            hostname,
            pid: std::process::id(),
        }
    }
}

impl Default for MozLog {
    fn default() -> Self {
        Self::new()
    }
}

/// Syslog severities, as MozLog uses them.
fn severity(level: &tracing::Level) -> u8 {
    match *level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

impl<S, N> FormatEvent<S, N> for MozLog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = FieldMap(Map::new());
        event.record(&mut fields);
        let kind = if meta.target() == "access" {
            "request.summary"
        } else {
            meta.target()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let line = json!({
            "Timestamp": nanos,
            "Type": kind,
            "Logger": "fxa-gateway",
            "Hostname": self.hostname,
            "EnvVersion": "2.0",
            "Severity": severity(meta.level()),
            "Pid": self.pid,
            "Fields": Value::Object(fields.0),
        });
        writeln!(writer, "{line}")
    }
}

struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), json!(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), json!(value));
    }
}

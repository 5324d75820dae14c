//! Logging with `tracing`: human text or MozLog-style JSON, and the one access event per
//! request. Never records `Authorization`, cookies, tokens, secrets or query strings: the access
//! event is built from an explicit list of harmless fields.

use std::fmt;
use std::io::Write as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::{HeaderValue, Method, Response};
use tracing::field::{Field, Visit};
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::body::Body;
use crate::config::{LogFormat, LogSettings};
use crate::metrics::Name;
use crate::respond::Outcome;

/// Installs the global subscriber. `RUST_LOG` overrides the configured level.
pub fn init(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colour only on a terminal: piped logs (containers, journald) stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let sink = SINK.get_or_init(LogSink::default).clone();
    start_flusher(sink.clone());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink)
        .with_ansi(ansi);
    let _ = match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.event_format(MozLog::new()).try_init(),
    };
}

/// Access events gathered before a write: one write per request would cost a system call (and,
/// to a file, the file system's work) per request, more than the rest of the request's logging.
const BATCH_BYTES: usize = 64 * 1024;
/// Gathered access events wait at most this long (plus the time to format the next event).
pub const BATCH_INTERVAL: Duration = Duration::from_millis(200);

static SINK: OnceLock<LogSink> = OnceLock::new();

/// Writes out the access events still gathered; the process calls it before it exits.
pub fn flush() {
    if let Some(sink) = SINK.get() {
        sink.flush();
    }
}

/// Standard error, with access events gathered and written in batches: when
/// [`BATCH_BYTES`] have gathered, every [`BATCH_INTERVAL`], before any other event (so the
/// order holds) and at exit. Other events (start-up, warnings, errors) are written at once.
#[derive(Clone, Default)]
pub struct LogSink {
    pending: Arc<Mutex<Vec<u8>>>,
    out: Output,
}

#[derive(Clone, Default)]
enum Output {
    #[default]
    Stderr,
    /// What a test reads back.
    #[cfg(test)]
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl LogSink {
    pub fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        self.write_out(&mut pending);
    }

    fn write_out(&self, pending: &mut Vec<u8>) {
        if pending.is_empty() {
            return;
        }
        match &self.out {
            // Nowhere to report a failed write to standard error.
            Output::Stderr => {
                let _ = std::io::stderr().write_all(pending);
            }
            #[cfg(test)]
            Output::Memory(out) => out
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .extend_from_slice(pending),
        }
        pending.clear();
    }
}

fn start_flusher(sink: LogSink) {
    let started = std::thread::Builder::new()
        .name("log-flush".into())
        .spawn(move || {
            loop {
                std::thread::sleep(BATCH_INTERVAL);
                sink.flush();
            }
        });
    if started.is_err() {
        // Without the thread, batches still go out when full, before other events and at exit.
        eprintln!("fxa-gateway: cannot start the log flushing thread");
    }
    // A panic's message (written by the default hook) follows the events before it.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        previous(info);
    }));
}

/// One event's bytes on their way to the [`LogSink`].
pub struct SinkWriter<'a> {
    sink: &'a LogSink,
    batched: bool,
}

impl std::io::Write for SinkWriter<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let mut pending = self
            .sink
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        pending.extend_from_slice(data);
        if !self.batched || pending.len() >= BATCH_BYTES {
            self.sink.write_out(&mut pending);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = SinkWriter<'a>;

    fn make_writer(&'a self) -> SinkWriter<'a> {
        SinkWriter {
            sink: self,
            batched: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SinkWriter<'a> {
        SinkWriter {
            sink: self,
            batched: meta.target() == "access",
        }
    }
}

/// One access event (target `access`) with a fixed set of fields.
pub fn access(
    route: Option<&Name>,
    upstream: Option<&Name>,
    method: &Method,
    response: &Response<Body>,
    outcome: &Outcome,
    request_id: &HeaderValue,
    elapsed: Duration,
) {
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
        let mut fields = Fields(Vec::with_capacity(16));
        event.record(&mut fields);
        fields.settle();
        let kind = if meta.target() == "access" {
            "request.summary"
        } else {
            meta.target()
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        // Serialised straight from the fields (no `serde_json::Value` tree): keys in the order
        // a JSON object map gives them (sorted), as before.
        let line = Line {
            env_version: "2.0",
            fields: &fields,
            hostname: &self.hostname,
            logger: "fxa-gateway",
            pid: self.pid,
            severity: severity(meta.level()),
            timestamp: nanos,
            kind,
        };
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writer.write_str(&text)?;
        writer.write_char('\n')
    }
}

/// One MozLog line, its keys in sorted order.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(rename = "EnvVersion")]
    env_version: &'a str,
    #[serde(rename = "Fields")]
    fields: &'a Fields,
    #[serde(rename = "Hostname")]
    hostname: &'a str,
    #[serde(rename = "Logger")]
    logger: &'a str,
    #[serde(rename = "Pid")]
    pid: u32,
    #[serde(rename = "Severity")]
    severity: u8,
    #[serde(rename = "Timestamp")]
    timestamp: u64,
    #[serde(rename = "Type")]
    kind: &'a str,
}

/// An event's fields: a later value of a name replaces an earlier one, and they are written
/// sorted by name (as a JSON object map keeps them).
struct Fields(Vec<(&'static str, FieldValue)>);

enum FieldValue {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
}

impl Fields {
    fn put(&mut self, field: &Field, value: FieldValue) {
        self.0.push((field.name(), value));
    }

    /// Sorted by name, the last value of each name kept.
    fn settle(&mut self) {
        // Stable: values of one name stay in the order they came.
        self.0.sort_by_key(|(name, _)| *name);
        let mut i = self.0.len();
        while i > 1 {
            i -= 1;
            if self.0[i - 1].0 == self.0[i].0 {
                self.0.remove(i - 1);
            }
        }
    }
}

impl serde::Serialize for Fields {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            match value {
                FieldValue::Str(v) => map.serialize_entry(name, v)?,
                FieldValue::U64(v) => map.serialize_entry(name, v)?,
                FieldValue::I64(v) => map.serialize_entry(name, v)?,
                // Non-finite floats are written as null, as `serde_json::Value` does.
                FieldValue::F64(v) if v.is_finite() => map.serialize_entry(name, v)?,
                FieldValue::F64(_) => map.serialize_entry(name, &())?,
                FieldValue::Bool(v) => map.serialize_entry(name, v)?,
            }
        }
        map.end()
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, FieldValue::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, FieldValue::Str(value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, FieldValue::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, FieldValue::I64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, FieldValue::Bool(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink() -> (LogSink, Arc<Mutex<Vec<u8>>>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = LogSink {
            pending: Arc::default(),
            out: Output::Memory(out.clone()),
        };
        (sink, out)
    }

    fn written(out: &Arc<Mutex<Vec<u8>>>) -> String {
        String::from_utf8(out.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn mozlog_lines_carry_every_field_typed_and_sorted() {
        let (sink, out) = sink();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.clone())
            .event_format(MozLog::new())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(
                status = 503u64,
                method = "GET",
                ok = false,
                ratio = 0.5f64,
                skew = -3i64,
                odd = f64::NAN,
                quote = "a \"b\"\n",
                "upstream trouble"
            );
        });
        let text = written(&out);
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(
                r#""Fields":{"message":"upstream trouble","method":"GET","odd":null,"ok":false,"quote":"a \"b\"\n","ratio":0.5,"skew":-3,"status":503},"Hostname":"#
            ),
            "{text}"
        );
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["Severity"], 4);
        assert_eq!(line["EnvVersion"], "2.0");
        assert_eq!(line["Logger"], "fxa-gateway");
        assert!(line["Timestamp"].as_u64().unwrap() > 0);
        assert!(
            text.starts_with(r#"{"EnvVersion":"2.0","Fields":"#),
            "{text}"
        );
    }

    #[test]
    fn access_events_wait_and_other_events_take_them_along_in_order() {
        let (sink, out) = sink();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(sink.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "access", "first request");
            tracing::info!(target: "access", "second request");
            assert_eq!(written(&out), "", "access events are gathered");
            tracing::warn!("upstream trouble");
        });
        let text = written(&out);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].ends_with("first request"), "{text}");
        assert!(lines[1].ends_with("second request"), "{text}");
        assert!(lines[2].ends_with("upstream trouble"), "{text}");
    }

    #[test]
    fn gathered_events_go_out_when_full_or_flushed() {
        let (sink, out) = sink();
        let line = [b'x'; 1000];
        let to_fill = BATCH_BYTES.div_ceil(line.len());
        let mut batched = SinkWriter {
            sink: &sink,
            batched: true,
        };
        for _ in 0..to_fill - 1 {
            batched.write_all(&line).unwrap();
        }
        assert!(written(&out).is_empty());
        batched.write_all(&line).unwrap();
        batched.write_all(&line).unwrap();
        assert_eq!(
            written(&out).len(),
            to_fill * line.len(),
            "written once the batch is full; the next line waits"
        );
        sink.flush();
        assert_eq!(written(&out).len(), (to_fill + 1) * line.len());
    }
}

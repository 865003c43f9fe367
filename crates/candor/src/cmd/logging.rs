//! The process log on stderr: one JSON object per line for tools, or one readable line per
//! event for people (the default when stderr is a terminal). The request trail is a JSON
//! array inside the JSON line, not a string inside a string.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Readable lines when stderr is a terminal, JSON otherwise.
    Auto,
    /// One readable line per event.
    Human,
    /// One JSON object per line.
    Json,
}

/// Installs the process log: `CANDOR_LOG` filters it (default `info`), `format` shapes it.
pub(crate) fn init_logging_as(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CANDOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let human = match format {
        LogFormat::Auto => terminal,
        LogFormat::Human => true,
        LogFormat::Json => false,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if human {
        builder
            .event_format(HumanLine { color: terminal })
            .try_init()
    } else {
        builder.event_format(JsonLine).try_init()
    };
}

/// Fields whose value is JSON text already (written as it is, not as a string).
const RAW_JSON: &[&str] = &["trail"];

/// The fields of one event, in order.
#[derive(Default)]
struct Fields {
    list: Vec<(&'static str, Value)>,
}

enum Value {
    Text(String),
    Raw(String),
    Number(String),
    Bool(bool),
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        let v = if RAW_JSON.contains(&field.name())
            && serde_json::from_str::<serde::de::IgnoredAny>(value).is_ok()
        {
            Value::Raw(value.to_owned())
        } else {
            Value::Text(value.to_owned())
        };
        self.list.push((field.name(), v));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.list
            .push((field.name(), Value::Number(value.to_string())));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.list
            .push((field.name(), Value::Number(value.to_string())));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        let v = if value.is_finite() {
            Value::Number(value.to_string())
        } else {
            Value::Text(value.to_string())
        };
        self.list.push((field.name(), v));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.list.push((field.name(), Value::Bool(value)));
    }
}

fn now() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    candor_gateway::rfc3339_millis(ms)
}

/// `{"timestamp","level","message",fields…,"target"}`, as tracing's JSON lines are, with
/// raw-JSON fields embedded.
struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut out = String::with_capacity(256);
        let _ = write!(
            out,
            "{{\"timestamp\":\"{}\",\"level\":\"{}\"",
            now(),
            meta.level()
        );
        // The message first, as tracing writes it.
        for (name, v) in fields
            .list
            .iter()
            .filter(|(n, _)| *n == "message")
            .chain(fields.list.iter().filter(|(n, _)| *n != "message"))
        {
            let _ = write!(out, ",{}:", quote(name));
            match v {
                Value::Text(t) => out.push_str(&quote(t)),
                Value::Raw(r) | Value::Number(r) => out.push_str(r),
                Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            }
        }
        let _ = write!(out, ",\"target\":{}}}", quote(meta.target()));
        writeln!(w, "{out}")
    }
}

/// `03:04:05.123 WARN  candor::config  message  key=value …`; a request is one line of
/// status, code, method, path, time and request id.
struct HumanLine {
    color: bool,
}

impl<S, N> FormatEvent<S, N> for HumanLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let time = now();
        let clock = time.get(11..23).unwrap_or(&time);
        let level = *meta.level();
        let (start, end) = match (self.color, level) {
            (false, _) => ("", ""),
            (true, Level::ERROR) => ("\x1b[31m", "\x1b[0m"),
            (true, Level::WARN) => ("\x1b[33m", "\x1b[0m"),
            (true, Level::INFO) => ("\x1b[32m", "\x1b[0m"),
            (true, _) => ("\x1b[2m", "\x1b[0m"),
        };
        let get = |name: &str| {
            fields
                .list
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| match v {
                    Value::Text(t) | Value::Raw(t) | Value::Number(t) => t.clone(),
                    Value::Bool(b) => b.to_string(),
                })
        };
        let prefix = format!("{clock} {start}{:<5}{end} ", level.as_str());
        let mut out = String::new();
        if meta.target() == "candor::request" {
            let code = get("code").filter(|c| !c.is_empty());
            let took = get("duration_us")
                .and_then(|us| us.parse::<f64>().ok())
                .map_or(String::new(), |us| format!(" {:.1}ms", us / 1000.0));
            let _ = write!(
                out,
                "{} {}{} {} {}{took}  request_id={}",
                get("status").unwrap_or_default(),
                code.as_deref().unwrap_or(""),
                if code.is_some() { "" } else { "-" },
                get("method").unwrap_or_default(),
                get("path").unwrap_or_default(),
                get("request_id").unwrap_or_default(),
            );
            if code.is_some() {
                // An id a client chose may start with `-`: after `--` it is no flag.
                let id = get("request_id").unwrap_or_default();
                let dashes = if id.starts_with('-') { "-- " } else { "" };
                let _ = write!(out, "  (candor explain {dashes}{id})");
            }
        } else {
            let _ = write!(
                out,
                "{:<18} {}",
                meta.target(),
                get("message").unwrap_or_default()
            );
            for (name, v) in fields.list.iter().filter(|(n, _)| *n != "message") {
                let text = match v {
                    Value::Text(t) if t.contains(' ') => format!("{t:?}"),
                    Value::Text(t) | Value::Raw(t) | Value::Number(t) => t.clone(),
                    Value::Bool(b) => b.to_string(),
                };
                let _ = write!(out, "  {name}={text}");
            }
        }
        // One event, one line: a value cannot start a line of its own (or carry terminal
        // escapes) in a log a person reads.
        let mut line = prefix;
        for c in out.chars() {
            match c {
                '\n' => line.push_str("\\n"),
                '\r' => line.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(line, "\\u{{{:04x}}}", c as u32);
                }
                c => line.push(c),
            }
        }
        writeln!(w, "{line}")
    }
}

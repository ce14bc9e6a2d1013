//! The log lines themselves: a `tracing` layer that writes one line per event, as JSON or as
//! text, with the fields of the span it happened in.
//!
//! It does what `tracing_subscriber::fmt` did here, at a fraction of the cost per request
//! (docs/benchmarks.md): a span's fields are written once, as the text they will appear as in
//! a line, when the span starts or records them (fmt's JSON formatter kept them as a JSON
//! string and parsed it back for every line); a line is built in a buffer the thread keeps; the
//! level's colours are written only for a terminal.
//!
//! A JSON line: `{"timestamp":…,"level":"INFO","fields":{"message":…,…},"target":…,
//! "span":{…the span's fields…,"name":…}}`, `span` only inside one. A text line:
//! `TIMESTAMP  INFO outer{a=1}:inner{b=2}: target: message c=3`.

use std::{cell::RefCell, fmt, fmt::Write as _};

use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{
    fmt::{format::Writer, time::FormatTime as _, time::SystemTime},
    layer::Context,
    registry::LookupSpan,
};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    /// Text, with the level in colour when `ansi`.
    Text {
        ansi: bool,
    },
}

/// Where finished lines go: each gets one call, with the whole line and its newline.
pub(super) trait Sink: Send + Sync + 'static {
    fn line(&self, line: &[u8]);
}

/// The layer: every event that passes the filter becomes one line written to `sink`.
pub(super) struct Lines<S> {
    format: Format,
    sink: S,
}

impl<S> Lines<S> {
    pub(super) fn new(format: Format, sink: S) -> Self {
        Self { format, sink }
    }
}

/// A span's fields, as they appear in a line of the layer's format: `"k":v,"k2":v2` for JSON,
/// `k=v k2=v2` for text.
#[derive(Debug, Default)]
struct SpanFields(String);

thread_local! {
    /// The line being built; kept from one line to the next so that building one allocates
    /// nothing once the thread has written a long line.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<R, S> tracing_subscriber::Layer<R> for Lines<S>
where
    R: Subscriber + for<'a> LookupSpan<'a>,
    S: Sink,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, R>) {
        let Some(span) = ctx.span(id) else { return };
        let mut fields = String::new();
        attrs.record(&mut Fields::new(self.format, &mut fields, false));
        span.extensions_mut().insert(SpanFields(fields));
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, R>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
            let separate = !fields.is_empty();
            values.record(&mut Fields::new(self.format, fields, separate));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, R>) {
        LINE.with_borrow_mut(|line| {
            line.clear();
            match self.format {
                Format::Json => json_line(line, event, &ctx),
                Format::Text { ansi } => text_line(line, event, &ctx, ansi),
            }
            line.push('\n');
            self.sink.line(line.as_bytes());
        });
    }
}

fn timestamp(line: &mut String) {
    // Writing into a String cannot fail.
    let _ = SystemTime.format_time(&mut Writer::new(line));
}

fn json_line<R>(line: &mut String, event: &Event<'_>, ctx: &Context<'_, R>)
where
    R: Subscriber + for<'a> LookupSpan<'a>,
{
    let metadata = event.metadata();
    line.push_str("{\"timestamp\":\"");
    timestamp(line);
    line.push_str("\",\"level\":\"");
    line.push_str(metadata.level().as_str());
    line.push_str("\",\"fields\":{");
    event.record(&mut Fields::new(Format::Json, line, false));
    line.push_str("},\"target\":");
    json_string(line, metadata.target());
    if let Some(span) = ctx.event_span(event) {
        line.push_str(",\"span\":{");
        if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>()
            && !fields.is_empty()
        {
            line.push_str(fields);
            line.push(',');
        }
        line.push_str("\"name\":");
        json_string(line, span.name());
        line.push('}');
    }
    line.push('}');
}

fn text_line<R>(line: &mut String, event: &Event<'_>, ctx: &Context<'_, R>, ansi: bool)
where
    R: Subscriber + for<'a> LookupSpan<'a>,
{
    let metadata = event.metadata();
    timestamp(line);
    let level = *metadata.level();
    let colour = match level {
        Level::ERROR => "31",
        Level::WARN => "33",
        Level::INFO => "32",
        Level::DEBUG => "34",
        Level::TRACE => "35",
    };
    if ansi {
        let _ = write!(line, " \x1b[{colour}m{:>5}\x1b[0m ", level.as_str());
    } else {
        let _ = write!(line, " {:>5} ", level.as_str());
    }
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope.from_root() {
            line.push_str(span.name());
            if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>()
                && !fields.is_empty()
            {
                line.push('{');
                line.push_str(fields);
                line.push('}');
            }
            line.push(':');
        }
        line.push(' ');
    }
    line.push_str(metadata.target());
    line.push_str(": ");
    event.record(&mut Fields::new(Format::Text { ansi }, line, false));
}

/// Writes fields in `format` after what `out` holds: the message first (as it comes, in
/// text), every other field as `name=value` or `"name":value`.
struct Fields<'a> {
    format: Format,
    out: &'a mut String,
    /// Whether the next field needs a separator before it.
    separate: bool,
}

impl<'a> Fields<'a> {
    /// `separate`: whether `out` ends with a field already.
    fn new(format: Format, out: &'a mut String, separate: bool) -> Self {
        Self { format, out, separate }
    }

    /// Starts field `name`; `false` when it is a text line's message, written bare.
    fn name(&mut self, field: &Field) -> bool {
        let json = self.format == Format::Json;
        if std::mem::replace(&mut self.separate, true) {
            self.out.push(if json { ',' } else { ' ' });
        }
        if json {
            json_string(self.out, field.name());
            self.out.push(':');
        } else if field.name() != "message" {
            self.out.push_str(field.name());
            self.out.push('=');
        } else {
            return false;
        }
        true
    }

    fn plain(&mut self, field: &Field, value: impl fmt::Display) {
        self.name(field);
        let _ = write!(self.out, "{value}");
    }
}

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let named = self.name(field);
        if self.format == Format::Json {
            json_string(self.out, value);
        } else if named {
            let _ = write!(self.out, "{value:?}");
        } else {
            self.out.push_str(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        if self.format == Format::Json {
            self.out.push('"');
            let _ = write!(Escaped(self.out), "{value:?}");
            self.out.push('"');
        } else {
            let _ = write!(self.out, "{value:?}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.plain(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.plain(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.plain(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if value.is_finite() || self.format != Format::Json {
            self.plain(field, value);
        } else {
            // JSON has no NaN or infinity.
            self.plain(field, "null");
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_debug(field, &format_args!("{value}"));
    }
}

/// `value` as a JSON string, quotes included.
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    let _ = Escaped(out).write_str(value);
    out.push('"');
}

/// Escapes what is written through it for the inside of a JSON string.
struct Escaped<'a>(&'a mut String);

impl fmt::Write for Escaped<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..0x20 | 0x7f => "",
                _ => continue,
            };
            self.0.push_str(&s[plain..i]);
            if escape.is_empty() {
                let _ = write!(self.0, "\\u{byte:04x}");
            } else {
                self.0.push_str(escape);
            }
            plain = i + 1;
        }
        self.0.push_str(&s[plain..]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::Value;
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Sink for Kept {
        fn line(&self, line: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(line);
        }
    }

    /// The lines `log` writes in `format`.
    fn lines(format: Format, log: impl FnOnce()) -> Vec<String> {
        let kept = Kept::default();
        let subscriber = tracing_subscriber::registry().with(Lines::new(format, kept.clone()));
        tracing::subscriber::with_default(subscriber, log);
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    fn scene() {
        tracing::info!(target: "agora::test", "outside");
        let span = tracing::info_span!("rpc", rpc.method = "GetProduct", trace_id = tracing::field::Empty);
        span.record("trace_id", "4bf9");
        let _entered = span.enter();
        let error = std::io::Error::other("disk \"full\"");
        tracing::warn!(target: "agora::test", count = 3, ratio = 0.5, ok = true, %error, "line\none");
    }

    #[test]
    fn json_lines_carry_the_fields_the_target_and_the_span_they_were_written_in() {
        let lines = lines(Format::Json, scene);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let outside: Value = serde_json::from_str(&lines[0]).expect("valid JSON");
        assert_eq!(outside["fields"]["message"], "outside");
        assert_eq!(outside["target"], "agora::test");
        assert!(outside.get("span").is_none(), "{outside}");
        let inside: Value = serde_json::from_str(&lines[1]).expect("valid JSON");
        assert_eq!(inside["level"], "WARN");
        assert!(inside["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.len() > 20), "{inside}");
        let fields = &inside["fields"];
        assert_eq!(fields["message"], "line\none");
        assert_eq!(
            (fields["count"].as_i64(), fields["ratio"].as_f64(), fields["ok"].as_bool()),
            (Some(3), Some(0.5), Some(true))
        );
        assert_eq!(fields["error"], "disk \"full\"");
        let span = &inside["span"];
        assert_eq!(
            (span["name"].as_str(), span["rpc.method"].as_str(), span["trace_id"].as_str()),
            (Some("rpc"), Some("GetProduct"), Some("4bf9"))
        );
    }

    #[test]
    fn text_lines_name_the_span_then_the_target_then_the_message() {
        let lines = lines(Format::Text { ansi: false }, scene);
        assert!(lines[0].ends_with("  INFO agora::test: outside"), "{lines:?}");
        let inside = &lines[1];
        assert!(
            inside.ends_with(r#"  WARN rpc{rpc.method="GetProduct" trace_id="4bf9"}: agora::test: line"#),
            "the first line of a two-line message: {lines:?}"
        );
        assert_eq!(lines[2], r#"one count=3 ratio=0.5 ok=true error=disk "full""#);
        assert!(!inside.contains('\x1b'), "no colours unless asked");
        let coloured = super::tests::lines(Format::Text { ansi: true }, scene);
        assert!(coloured[0].contains("\x1b[32m INFO\x1b[0m"), "{coloured:?}");
    }

    #[test]
    fn control_characters_are_escaped_in_json() {
        let mut out = String::new();
        json_string(&mut out, "a\"b\\c\u{1}\td");
        assert_eq!(out, r#""a\"b\\c\u0001\td""#);
        assert_eq!(serde_json::from_str::<String>(&out).unwrap(), "a\"b\\c\u{1}\td");
    }
}

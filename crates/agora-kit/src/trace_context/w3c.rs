//! The W3C formats: `traceparent` and `baggage` parsed and printed, and what a hop read from its
//! caller's headers. Nothing here knows of tasks or spans.

use std::fmt;

/// The header (HTTP, gRPC metadata and Kafka) that carries the context.
pub const TRACEPARENT: &str = "traceparent";

/// The header that carries the [`Baggage`].
pub const BAGGAGE: &str = "baggage";

/// One position in a trace: the trace, the span that is the parent of the next hop, and
/// whether the trace is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: u128,
    pub span_id: u64,
    pub sampled: bool,
}

impl TraceParent {
    /// The start of a new, sampled trace.
    pub fn root() -> Self {
        Self { trace_id: nonzero_u128(), span_id: nonzero_u64(), sampled: true }
    }

    /// The next hop of the same trace: same trace id, a new span id.
    pub fn child(&self) -> Self {
        Self { span_id: nonzero_u64(), ..*self }
    }

    /// Parses a `traceparent` value. Per the W3C spec, version `ff` and all-zero ids are
    /// invalid, and a later version is read by its first four fields.
    pub fn parse(value: &str) -> Option<Self> {
        let mut fields = value.trim().split('-');
        let (version, trace_id, span_id, flags) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
            return None;
        }
        if version == "00" && fields.next().is_some() {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let span_id = u64::from_str_radix(span_id, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        (trace_id != 0 && span_id != 0).then_some(Self { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    /// The trace id as 32 lowercase hex digits (what trace UIs search by).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{:032x}-{:016x}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

fn nonzero_u128() -> u128 {
    // A v4 UUID is 122 random bits and never zero.
    uuid::Uuid::new_v4().as_u128()
}

fn nonzero_u64() -> u64 {
    let bits = uuid::Uuid::new_v4().as_u128();
    (bits as u64) | 1
}

/// W3C Baggage: the list members a request carries, kept as received (values stay
/// percent-encoded) so they are passed on unchanged.
///
/// Per the spec's limits, at most [`Baggage::MAX_MEMBERS`] members and
/// [`Baggage::MAX_BYTES`] bytes are kept; members that do not parse are dropped one by one
/// rather than failing the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Baggage {
    /// (key, value with its properties), in the order received.
    members: Vec<(String, String)>,
}

impl Baggage {
    pub const MAX_MEMBERS: usize = 64;
    pub const MAX_BYTES: usize = 8192;

    /// Parses a `baggage` header; `None` when no member is valid.
    pub fn parse(header: &str) -> Option<Self> {
        let mut members: Vec<(String, String)> = Vec::new();
        let mut bytes = 0;
        for member in header.split(',') {
            let Some((key, rest)) = member.split_once('=') else { continue };
            let key = key.trim();
            let rest = rest.trim();
            let value = rest.split(';').next().unwrap_or_default().trim_end();
            if !is_token(key) || !value.bytes().all(is_baggage_octet) || percent_decode(value).is_none() {
                continue;
            }
            let size = key.len() + 1 + rest.len() + usize::from(!members.is_empty());
            if members.len() == Self::MAX_MEMBERS || bytes + size > Self::MAX_BYTES {
                break;
            }
            bytes += size;
            members.retain(|(k, _)| k != key);
            members.push((key.to_owned(), rest.to_owned()));
        }
        (!members.is_empty()).then_some(Self { members })
    }

    /// The keys, in the order received.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(key, _)| key.as_str())
    }

    /// The decoded value of `key`.
    pub fn get(&self, key: &str) -> Option<String> {
        let (_, rest) = self.members.iter().find(|(k, _)| k == key)?;
        percent_decode(rest.split(';').next().unwrap_or_default().trim_end())
    }
}

impl fmt::Display for Baggage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, rest)) in self.members.iter().enumerate() {
            write!(f, "{}{key}={rest}", if i == 0 { "" } else { "," })?;
        }
        Ok(())
    }
}

/// An RFC 7230 token, what a baggage key must be.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A byte a baggage value may hold unencoded.
fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E)
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// What a hop received from its caller: the parent context and the baggage, read from the
/// request's (or message's) headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incoming {
    pub parent: Option<TraceParent>,
    pub baggage: Option<Baggage>,
}

impl Incoming {
    /// Reads `traceparent` and `baggage` through `header` (a lookup by lowercase name).
    pub fn from_headers<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Self {
        Self {
            parent: header(TRACEPARENT).and_then(TraceParent::parse),
            baggage: header(BAGGAGE).and_then(Baggage::parse),
        }
    }

    /// Reads an HTTP request's (or gRPC call's) headers.
    pub fn from_http(headers: &http::HeaderMap) -> Self {
        Self::from_headers(|name| headers.get(name).and_then(|v| v.to_str().ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_the_w3c_format() {
        let parsed = TraceParent::parse(SAMPLE).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parsed.span_id, 0x00f0_67aa_0ba9_02b7);
        assert!(parsed.sampled);
        assert_eq!(parsed.to_string(), SAMPLE);
        let unsampled = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled);
        // A later version: its first four fields count, the rest is ignored.
        assert!(TraceParent::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn rejects_what_the_spec_calls_invalid() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn baggage_keeps_valid_members_as_received_and_decodes_values() {
        let baggage = Baggage::parse(" tenant = acme , bad key=x,k2=a b,dup=1,dup=2").unwrap();
        assert_eq!(baggage.to_string(), "tenant=acme,dup=2");
        assert_eq!(baggage.get("tenant").as_deref(), Some("acme"));
        assert_eq!(baggage.get("dup").as_deref(), Some("2"), "a repeated key keeps its last value");
        let encoded = Baggage::parse("who=Ada%20Lovelace;prop").unwrap();
        assert_eq!(encoded.get("who").as_deref(), Some("Ada Lovelace"));
        assert_eq!(encoded.to_string(), "who=Ada%20Lovelace;prop", "passed on unchanged");
        for nothing in ["", ",,", "novalue", "k=%zz", "k=%ff", "=v"] {
            assert_eq!(Baggage::parse(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn baggage_stops_at_the_spec_limits() {
        let many: Vec<String> = (0..100).map(|i| format!("k{i}=v")).collect();
        let kept = Baggage::parse(&many.join(",")).unwrap();
        assert_eq!(kept.members.len(), Baggage::MAX_MEMBERS);
        let big = format!("a={},b=1", "x".repeat(Baggage::MAX_BYTES));
        assert_eq!(Baggage::parse(&big), None, "a member over the byte limit ends the list");
        let fits = format!("a={},b=1", "x".repeat(100));
        assert_eq!(Baggage::parse(&fits).unwrap().members.len(), 2);
    }
}

//! `google.api.http` path templates: parsing and matching.
//!
//! The grammar (from `google/api/http.proto`):
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//! `**` may only be the last segment, as in Envoy's transcoder, which keeps matching linear.

use std::fmt;

/// One segment of a template after variables are flattened into the segments they span.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty path segment.
    One,
    /// `**`: the rest of the path, zero or more segments.
    Rest,
}

/// A `{field.path=...}` capture over `segments[start..end]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    /// The request field the captured text goes into, as dotted proto field names.
    pub field_path: Vec<String>,
    start: usize,
    end: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
    verb: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid path template {template:?}: {reason}")]
pub struct TemplateError {
    template: String,
    reason: String,
}

/// A matched path: each variable's field path with its percent-decoded value.
pub type Captures = Vec<(Vec<String>, String)>;

impl Template {
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let fail = |reason: &str| TemplateError { template: source.to_owned(), reason: reason.to_owned() };
        let rest = source.strip_prefix('/').ok_or_else(|| fail("it must start with '/'"))?;
        // The verb is the text after the last ':' that is outside any `{...}`.
        let mut depth = 0usize;
        let mut verb_at = None;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth = depth.checked_sub(1).ok_or_else(|| fail("unbalanced '}'"))?,
                ':' if depth == 0 => verb_at = Some(i),
                _ => {}
            }
        }
        if depth != 0 {
            return Err(fail("unbalanced '{'"));
        }
        let (path, verb) = match verb_at {
            Some(i) if rest[i + 1..].is_empty() || rest[i + 1..].contains('/') => return Err(fail("bad verb")),
            Some(i) => (&rest[..i], Some(rest[i + 1..].to_owned())),
            None => (rest, None),
        };

        let mut template = Self { source: source.to_owned(), segments: Vec::new(), variables: Vec::new(), verb };
        let mut chars = path;
        while !chars.is_empty() {
            if let Some(inner) = chars.strip_prefix('{') {
                let close = inner.find('}').ok_or_else(|| fail("unbalanced '{'"))?;
                let (field, pattern) = match inner[..close].split_once('=') {
                    Some((field, pattern)) => (field, pattern),
                    None => (&inner[..close], "*"),
                };
                if field.is_empty() || !field.split('.').all(is_ident) {
                    return Err(fail(&format!("bad field path {field:?}")));
                }
                let start = template.segments.len();
                for part in pattern.split('/') {
                    if part.starts_with('{') {
                        return Err(fail("variables cannot nest"));
                    }
                    template.segments.push(segment(part).ok_or_else(|| fail(&format!("bad segment {part:?}")))?);
                }
                template.variables.push(Variable {
                    field_path: field.split('.').map(str::to_owned).collect(),
                    start,
                    end: template.segments.len(),
                });
                chars = &inner[close + 1..];
            } else {
                let end = chars.find('/').unwrap_or(chars.len());
                let part = &chars[..end];
                if part.contains('{') || part.contains('}') {
                    return Err(fail("a variable must span whole segments"));
                }
                template.segments.push(segment(part).ok_or_else(|| fail(&format!("bad segment {part:?}")))?);
                chars = &chars[end..];
            }
            match chars.strip_prefix('/') {
                Some("") => return Err(fail("trailing '/'")),
                Some(next) => chars = next,
                None if chars.is_empty() => {}
                None => return Err(fail("segments must be separated by '/'")),
            }
        }
        if let Some(i) = template.segments.iter().position(|s| *s == Segment::Rest)
            && i + 1 != template.segments.len()
        {
            return Err(fail("'**' must be the last segment"));
        }
        let mut seen = Vec::new();
        for variable in &template.variables {
            if seen.contains(&&variable.field_path) {
                return Err(fail("a field is bound twice"));
            }
            seen.push(&variable.field_path);
        }
        Ok(template)
    }

    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    pub fn verb(&self) -> Option<&str> {
        self.verb.as_deref()
    }

    /// How specific the template is, for choosing among several that match one path:
    /// a custom verb first, then more literal segments, then fewer wildcards.
    pub fn specificity(&self) -> (bool, usize, usize) {
        let literals = self.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        (self.verb.is_some(), literals, usize::MAX - self.segments.len())
    }

    /// The OpenAPI form: each variable becomes `{field.path}` however many segments it spans.
    pub fn openapi_path(&self) -> String {
        let mut out = String::new();
        let mut i = 0;
        while i < self.segments.len() {
            out.push('/');
            if let Some(v) = self.variables.iter().find(|v| v.start == i) {
                out.push('{');
                out.push_str(&v.field_path.join("."));
                out.push('}');
                i = v.end;
                continue;
            }
            match &self.segments[i] {
                Segment::Literal(l) => out.push_str(l),
                Segment::One => out.push('*'),
                Segment::Rest => out.push_str("**"),
            }
            i += 1;
        }
        if let Some(verb) = &self.verb {
            out.push(':');
            out.push_str(verb);
        }
        out
    }

    /// Matches a request path (still percent-encoded, without the query).
    pub fn matches(&self, path: &str) -> Option<Captures> {
        let path = path.strip_prefix('/')?;
        let path = match &self.verb {
            Some(verb) => path.strip_suffix(verb.as_str())?.strip_suffix(':')?,
            None => path,
        };
        let parts: Vec<&str> = if path.is_empty() { Vec::new() } else { path.split('/').collect() };
        // Where each template segment's match starts in `parts`; `**` takes the rest.
        let mut spans = Vec::with_capacity(self.segments.len() + 1);
        let mut at = 0;
        for segment in &self.segments {
            spans.push(at);
            match segment {
                Segment::Literal(l) => {
                    if parts.get(at).is_none_or(|p| p != l) {
                        return None;
                    }
                    at += 1;
                }
                Segment::One => {
                    if parts.get(at).is_none_or(|p| p.is_empty()) {
                        return None;
                    }
                    at += 1;
                }
                Segment::Rest => at = parts.len(),
            }
        }
        spans.push(at);
        if at != parts.len() {
            return None;
        }
        let captures = self.variables.iter().map(|v| {
            let taken = &parts[spans[v.start]..spans[v.end]];
            let value = if v.end - v.start == 1 && self.segments[v.start] == Segment::One {
                decode(taken[0], false)
            } else {
                // A multi-segment capture keeps `/` as the separator, so an encoded
                // slash inside one segment stays encoded (RFC 6570 reserved expansion).
                taken.iter().map(|p| decode(p, true)).collect::<Vec<_>>().join("/")
            };
            (v.field_path.clone(), value)
        });
        Some(captures.collect())
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn segment(part: &str) -> Option<Segment> {
    match part {
        "*" => Some(Segment::One),
        "**" => Some(Segment::Rest),
        "" => None,
        literal if literal.chars().all(|c| c.is_ascii_alphanumeric() || "-._~%!$&'()+,;=@".contains(c)) => {
            Some(Segment::Literal(literal.to_owned()))
        }
        _ => None,
    }
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Percent-decodes one path segment; with `keep_slash`, `%2F` stays encoded.
fn decode(segment: &str, keep_slash: bool) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).and_then(|b| hex(*b)), bytes.get(i + 2).and_then(|b| hex(*b)))
        {
            let byte = (hi * 16 + lo) as u8;
            if keep_slash && byte == b'/' {
                out.extend_from_slice(&bytes[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captures(template: &str, path: &str) -> Option<Vec<(String, String)>> {
        let t = Template::parse(template).unwrap();
        t.matches(path).map(|c| c.into_iter().map(|(f, v)| (f.join("."), v)).collect())
    }

    fn pair(f: &str, v: &str) -> (String, String) {
        (f.to_owned(), v.to_owned())
    }

    #[test]
    fn a_simple_variable_takes_one_segment() {
        assert_eq!(captures("/v1/orders/{id}", "/v1/orders/42"), Some(vec![pair("id", "42")]));
        assert_eq!(captures("/v1/orders/{id}", "/v1/orders/42/items"), None);
        assert_eq!(captures("/v1/orders/{id}", "/v1/orders/"), None);
        assert_eq!(captures("/v1/orders/{id}", "/v1/orders"), None);
    }

    #[test]
    fn a_single_segment_variable_decodes_everything() {
        assert_eq!(captures("/v1/users/{id}", "/v1/users/a%2Fb%20c"), Some(vec![pair("id", "a/b c")]));
    }

    #[test]
    fn a_pattern_variable_captures_the_matched_text() {
        let t = "/v1/{name=shelves/*}/books";
        assert_eq!(captures(t, "/v1/shelves/7/books"), Some(vec![pair("name", "shelves/7")]));
        assert_eq!(captures(t, "/v1/racks/7/books"), None);
    }

    #[test]
    fn a_double_wildcard_takes_the_rest_and_keeps_encoded_slashes() {
        let t = "/v1/files/{path=**}";
        assert_eq!(captures(t, "/v1/files/a/b/c.txt"), Some(vec![pair("path", "a/b/c.txt")]));
        assert_eq!(captures(t, "/v1/files/a%2Fb/c%20d"), Some(vec![pair("path", "a%2Fb/c d")]));
        assert_eq!(captures(t, "/v1/files"), Some(vec![pair("path", "")]));
    }

    #[test]
    fn nested_field_paths_and_several_variables() {
        let t = "/v1/shelves/{shelf.id}/books/{book_id}";
        assert_eq!(captures(t, "/v1/shelves/1/books/2"), Some(vec![pair("shelf.id", "1"), pair("book_id", "2")]));
    }

    #[test]
    fn a_custom_verb_must_be_present_and_is_not_captured() {
        let t = "/v1/orders/{id}:cancel";
        assert_eq!(captures(t, "/v1/orders/42:cancel"), Some(vec![pair("id", "42")]));
        assert_eq!(captures(t, "/v1/orders/42"), None);
        assert_eq!(captures(t, "/v1/orders/42:refund"), None);
        assert_eq!(captures("/v1/wallet:topUp", "/v1/wallet:topUp"), Some(vec![]));
        assert_eq!(captures("/v1/wallet", "/v1/wallet:topUp"), None);
    }

    #[test]
    fn specificity_prefers_verbs_then_literals() {
        let verb = Template::parse("/v1/orders/{id}:cancel").unwrap();
        let plain = Template::parse("/v1/orders/{id}").unwrap();
        let literal = Template::parse("/v1/orders/mine").unwrap();
        assert!(verb.specificity() > plain.specificity());
        assert!(literal.specificity() > plain.specificity());
    }

    #[test]
    fn openapi_paths_name_each_variable_once() {
        assert_eq!(
            Template::parse("/v1/{name=shelves/*}/books/{id}:publish").unwrap().openapi_path(),
            "/v1/{name}/books/{id}:publish"
        );
        assert_eq!(Template::parse("/v1/files/{path=**}").unwrap().openapi_path(), "/v1/files/{path}");
    }

    #[test]
    fn malformed_templates_are_refused_with_the_reason() {
        for (bad, reason) in [
            ("v1/orders", "must start with '/'"),
            ("/v1/{id", "unbalanced '{'"),
            ("/v1/id}", "unbalanced '}'"),
            ("/v1/{a={b}}", "nest"),
            ("/v1/x{id}", "whole segments"),
            ("/v1/**/x", "last segment"),
            ("/v1/{id}/{id}", "bound twice"),
            ("/v1/orders/", "trailing"),
            ("/v1/{1x}", "bad field path"),
            ("/v1/a:", "bad verb"),
        ] {
            let err = Template::parse(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}

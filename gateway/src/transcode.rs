//! JSON ⇄ protobuf for one binding, following the proto3 JSON mapping.
//!
//! The request message is built in the order grpc-gateway uses: the body (all of it or one
//! field), then path variables (which win over the body), then query parameters for what
//! neither set. Input accepts lowerCamelCase and proto names and int64 as a string or a
//! number; an unknown field is an error that names it. Output uses lowerCamelCase, writes
//! int64 as strings and enums by name, and includes fields at their default values so every
//! response of one type has the same shape.

use prost_reflect::{DeserializeOptions, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::{
    api::{Binding, BodyRule},
    error::ApiError,
    fields,
    template::Captures,
};

/// The request message for `binding` from the parts of an HTTP request.
pub fn request(
    binding: &Binding,
    captures: Captures,
    query: Option<&str>,
    body: &[u8],
) -> Result<DynamicMessage, ApiError> {
    let input = binding.method.input();
    let mut message = match &binding.body {
        BodyRule::None => DynamicMessage::new(input),
        BodyRule::Whole if is_blank(body) => DynamicMessage::new(input),
        BodyRule::Whole => from_json(input, body)?,
        BodyRule::Field(_) if is_blank(body) => return Err(ApiError::bad_request("this route needs a JSON body")),
        BodyRule::Field(field) => {
            // One JSON value only: anything after it could smuggle in other fields.
            serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(json_error(""))?;
            let mut wrapped = Vec::with_capacity(body.len() + field.name().len() + 8);
            wrapped.extend_from_slice(b"{\"");
            wrapped.extend_from_slice(field.name().as_bytes());
            wrapped.extend_from_slice(b"\":");
            wrapped.extend_from_slice(body);
            wrapped.push(b'}');
            from_json(input, &wrapped)?
        }
    };

    let mut bound: Vec<String> = Vec::new();
    for (path, value) in captures {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        fields::set(&mut message, &path, &value, "path variable").map_err(ApiError::bad_request)?;
        bound.push(path.join("."));
    }
    if let BodyRule::Field(field) = &binding.body {
        bound.push(field.name().to_owned());
    }

    if let Some(query) = query.filter(|q| !q.is_empty()) {
        if matches!(binding.body, BodyRule::Whole)
            && let Some((key, _)) = form_urlencoded::parse(query.as_bytes()).next()
        {
            return Err(ApiError::bad_request(format!(
                "unexpected query parameter {key:?}: this route takes its input from the JSON body"
            )));
        }
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let path: Vec<&str> = key.split('.').collect();
            if bound.iter().any(|b| is_prefix(b, &key) || is_prefix(&key, b)) {
                return Err(ApiError::bad_request(format!(
                    "query parameter {key:?} sets a field this route already takes from the path or body"
                )));
            }
            fields::set(&mut message, &path, &value, "query parameter").map_err(ApiError::bad_request)?;
        }
    }
    Ok(message)
}

/// The JSON response for `binding`: the whole message, or its `response_body` field.
pub fn response(binding: &Binding, message: &DynamicMessage) -> Result<Vec<u8>, ApiError> {
    let internal =
        |e: serde_json::Error| ApiError::new(tonic::Code::Internal, format!("cannot encode the response: {e}"));
    match &binding.response_body {
        None => to_json(message).map_err(internal),
        Some(field) => {
            let mut whole = serde_json::to_value(Json(message)).map_err(internal)?;
            let part = whole.get_mut(field.json_name()).map(serde_json::Value::take).unwrap_or_default();
            serde_json::to_vec(&part).map_err(internal)
        }
    }
}

/// Parses a JSON document into `desc`; errors say where the problem is.
///
/// Valid input is parsed once without tracking the path (an eighth faster on the
/// `transcode/to_proto` benchmarks); only input that fails is parsed again to say where.
pub fn from_json(desc: MessageDescriptor, json: &[u8]) -> Result<DynamicMessage, ApiError> {
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let mut de = serde_json::Deserializer::from_slice(json);
    if let Ok(message) = DynamicMessage::deserialize_with_options(desc.clone(), &mut de, &options)
        && de.end().is_ok()
    {
        return Ok(message);
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut track = serde_path_to_error::Track::new();
    let message = DynamicMessage::deserialize_with_options(
        desc,
        serde_path_to_error::Deserializer::new(&mut de, &mut track),
        &options,
    )
    .map_err(|e| json_error(&track.path().to_string())(e))?;
    de.end().map_err(json_error(""))?;
    Ok(message)
}

/// Writes a message by the proto3 JSON mapping, with default values included.
pub fn to_json(message: &DynamicMessage) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Json(message))
}

/// The serialisation options every response uses.
struct Json<'a>(&'a DynamicMessage);

impl serde::Serialize for Json<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize_with_options(serializer, &SerializeOptions::new().skip_default_fields(false))
    }
}

fn json_error(path: &str) -> impl Fn(serde_json::Error) -> ApiError + '_ {
    move |e| {
        let at = if path.is_empty() || path == "." { String::new() } else { format!(" at {path}") };
        ApiError::bad_request(format!("invalid JSON body{at}: {e}"))
    }
}

fn is_blank(body: &[u8]) -> bool {
    body.iter().all(u8::is_ascii_whitespace)
}

/// Is `prefix` the dotted path `path` or one of its parents?
fn is_prefix(prefix: &str, path: &str) -> bool {
    path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('.'))
}

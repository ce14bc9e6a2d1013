//! The OpenAPI 3.1 description of the REST surface, derived from the same descriptors and
//! bindings that drive routing ([`crate::api`]), so it cannot drift from what the gateway
//! serves: there is no per-endpoint code here, and a new RPC with a `google.api.http` rule
//! shows up in the document by itself.
//!
//! Schemas follow the proto3 JSON mapping the transcoder uses: lowerCamelCase property names,
//! 64-bit integers as strings (numbers accepted), enums by name, bytes as base64, and the
//! well-known types in their special JSON forms. Comments from the protos become summaries
//! and descriptions when the descriptor set carries source info.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use prost_reflect::{EnumDescriptor, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use crate::api::{Api, Binding, BodyRule, RouteAccess};

const SCHEMA_REF: &str = "#/components/schemas/";
const ERROR_REF: &str = "#/components/responses/Error";
/// Nested request fields reach the query string as dotted names; deeper than this they are
/// more likely a design smell than something a client would type, and the list would balloon.
const QUERY_DEPTH: usize = 3;
/// The proto3 JSON form of `google.protobuf.Duration`: seconds with up to nine decimals.
const DURATION_PATTERN: &str = r"^-?[0-9]+(\.[0-9]{1,9})?s$";
const GATEWAY_TAG: &str = "gateway";

/// The OpenAPI document for every binding in `api`, plus the gateway's own routes.
pub fn document(api: &Api) -> Value {
    let mut schemas = Schemas::default();
    let mut ids = OperationIds::new(api);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut tags = Vec::new();
    let mut tagged = HashSet::new();
    for binding in &api.bindings {
        // OpenAPI has no place for a custom HTTP method, so such a route stays undocumented.
        let Some(verb) = openapi_verb(binding.verb.as_str()) else { continue };
        let item = paths.entry(binding.template.openapi_path()).or_default();
        // A path item holds one operation per verb; a second binding with the same path and
        // verb is ambiguous anyway, and the first one is the one declared first.
        if item.contains_key(verb) {
            continue;
        }
        let id = ids.assign(binding);
        item.insert(verb.to_owned(), schemas.operation(binding, id));
        let service = binding.method.parent_service();
        if tagged.insert(service.full_name().to_owned()) {
            tags.push(describe(json!({"name": service.name()}), comment(&service.parent_file(), service.path())));
        }
    }
    for (path, item) in gateway_routes() {
        paths.insert(path.to_owned(), item);
    }
    tags.push(json!({"name": GATEWAY_TAG, "description": "The gateway's own health and description routes."}));

    let mut components: Map<String, Value> = schemas.components.into_iter().collect();
    components.insert(
        "Status".to_owned(),
        json!({
            "type": "object",
            "description": "google.rpc.Status: what every failed call answers, whatever its HTTP status.",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "integer", "format": "int32", "description": "gRPC status code"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}},
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Agora API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Agora's REST gateway: JSON over HTTP, transcoded to and from the services' gRPC APIs.",
        },
        "tags": tags,
        "paths": paths.into_iter().map(|(path, item)| (path, Value::Object(item))).collect::<Map<_, _>>(),
        "components": {
            "schemas": components,
            "responses": {
                "Error": {
                    "description": "An error, as google.rpc.Status",
                    "content": {"application/json": {"schema": {"$ref": format!("{SCHEMA_REF}Status")}}},
                },
            },
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    })
}

/// Operation ids, unique across the document as OpenAPI requires.
struct OperationIds {
    /// Method names that several services declare, which therefore get the service as a prefix.
    shared: HashSet<String>,
    used: HashSet<String>,
}

impl OperationIds {
    fn new(api: &Api) -> Self {
        let mut services: HashMap<&str, HashSet<&str>> = HashMap::new();
        for binding in &api.bindings {
            services.entry(binding.method.name()).or_default().insert(binding.service());
        }
        let shared = services.into_iter().filter(|(_, s)| s.len() > 1).map(|(name, _)| name.to_owned()).collect();
        let used = gateway_routes()
            .iter()
            .flat_map(|(_, item)| item.values().filter_map(|op| op["operationId"].as_str()).map(str::to_owned))
            .collect();
        Self { shared, used }
    }

    /// The method name, with `_2`, `_3`, … for its additional bindings.
    fn assign(&mut self, binding: &Binding) -> String {
        let method = binding.method.name();
        let base = if self.shared.contains(method) {
            format!("{}_{method}", binding.method.parent_service().name())
        } else {
            method.to_owned()
        };
        if self.used.insert(base.clone()) {
            return base;
        }
        let mut n = 2;
        loop {
            let id = format!("{base}_{n}");
            if self.used.insert(id.clone()) {
                return id;
            }
            n += 1;
        }
    }
}

/// Builds operations and collects the message schemas they refer to.
#[derive(Default)]
struct Schemas {
    components: BTreeMap<String, Value>,
    /// Messages whose component exists or is being built; marking before the fields are walked
    /// lets a recursive message refer to itself instead of recursing forever.
    seen: HashSet<String>,
}

/// The state of one walk over a request message for query parameters.
struct QueryWalk<'a> {
    /// Dotted proto field names that the path or the body already sets.
    skip: &'a BTreeSet<String>,
    /// The messages being walked, so a recursive type is not unrolled.
    stack: Vec<String>,
    parameters: Vec<Value>,
}

impl Schemas {
    fn operation(&mut self, binding: &Binding, id: String) -> Value {
        let method = &binding.method;
        let input = method.input();
        let mut operation = Map::new();
        operation.insert("operationId".to_owned(), id.into());
        operation.insert("tags".to_owned(), json!([method.parent_service().name()]));
        match comment(&method.parent_file(), method.path()) {
            Some(text) => {
                let summary = summary(&text);
                if summary != text {
                    operation.insert("description".to_owned(), text.into());
                }
                operation.insert("summary".to_owned(), summary.into());
            }
            None => {
                operation.insert("summary".to_owned(), method.name().into());
            }
        }

        let mut parameters = Vec::new();
        for variable in binding.template.variables() {
            // `Api::load` has already resolved every variable; the fallback only keeps this total.
            let schema = match crate::api::field_path(&input, &variable.field_path) {
                Ok(field) => describe(self.field_schema(&field), field_comment(&field)),
                Err(_) => json!({"type": "string"}),
            };
            parameters.push(json!({
                "name": variable.field_path.join("."),
                "in": "path",
                "required": true,
                "schema": schema,
            }));
        }
        if !matches!(binding.body, BodyRule::Whole) {
            let mut skip: BTreeSet<String> =
                binding.template.variables().iter().map(|v| proto_path(&input, &v.field_path)).collect();
            if let BodyRule::Field(field) = &binding.body {
                skip.insert(field.name().to_owned());
            }
            let mut walk = QueryWalk { skip: &skip, stack: vec![input.full_name().to_owned()], parameters: Vec::new() };
            self.query_parameters(&mut walk, &input, "", 1);
            parameters.append(&mut walk.parameters);
        }
        if input.get_field_by_name("idempotency_key").is_some() {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "Makes retries safe: a repeated call with the same key returns what the first one did. \
                                Used when the request's idempotency_key field is empty.",
                "schema": {"type": "string"},
            }));
        }
        if !parameters.is_empty() {
            operation.insert("parameters".to_owned(), parameters.into());
        }

        let body = match &binding.body {
            BodyRule::None => None,
            BodyRule::Whole => Some(self.message(&input)),
            BodyRule::Field(field) => Some(self.field_schema(field)),
        };
        if let Some(schema) = body {
            operation.insert(
                "requestBody".to_owned(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }

        let output = match &binding.response_body {
            Some(field) => self.field_schema(field),
            None => self.message(&method.output()),
        };
        let (status, description) = if binding.creates { ("201", "Created") } else { ("200", "OK") };
        let mut responses = Map::new();
        responses.insert(
            status.to_owned(),
            json!({"description": description, "content": {"application/json": {"schema": output}}}),
        );
        responses.insert("default".to_owned(), json!({"$ref": ERROR_REF}));
        let (access, security) = match binding.policy {
            RouteAccess::Public => ("public", json!([])),
            RouteAccess::Authenticated => ("authenticated", json!([{"bearerAuth": []}])),
            RouteAccess::Admin => ("admin", json!([{"bearerAuth": []}])),
        };
        if binding.policy != RouteAccess::Public {
            // Listed apart from `default` so clients see that these are expected answers here.
            responses.insert("401".to_owned(), json!({"$ref": ERROR_REF}));
            responses.insert("403".to_owned(), json!({"$ref": ERROR_REF}));
        }
        operation.insert("responses".to_owned(), responses.into());
        operation.insert("security".to_owned(), security);
        operation.insert("x-agora-access".to_owned(), access.into());
        operation.into()
    }

    /// Query parameters for the fields of `message` that neither the path nor the body sets,
    /// singular messages flattened into dotted names.
    fn query_parameters(&mut self, walk: &mut QueryWalk<'_>, message: &MessageDescriptor, prefix: &str, depth: usize) {
        for field in message.fields() {
            let name = format!("{prefix}{}", field.name());
            // A query string has no syntax for maps.
            if walk.skip.contains(&name) || field.is_map() {
                continue;
            }
            let schema = match field.kind() {
                Kind::Message(nested) => match self.scalar_message(&nested) {
                    Some(schema) => schema,
                    None => {
                        // Nor for lists of messages, nor for the well-known types that are not
                        // scalars in JSON (Struct, Any, ...).
                        if field.is_list()
                            || depth >= QUERY_DEPTH
                            || nested.package_name() == "google.protobuf"
                            || walk.stack.iter().any(|m| m == nested.full_name())
                        {
                            continue;
                        }
                        walk.stack.push(nested.full_name().to_owned());
                        self.query_parameters(walk, &nested, &format!("{name}."), depth + 1);
                        walk.stack.pop();
                        continue;
                    }
                },
                kind => self.kind_schema(&kind),
            };
            let mut parameter = Map::new();
            parameter.insert("name".to_owned(), name.into());
            parameter.insert("in".to_owned(), "query".into());
            if let Some(text) = field_comment(&field) {
                parameter.insert("description".to_owned(), text.into());
            }
            if field.is_list() {
                parameter.insert("style".to_owned(), "form".into());
                parameter.insert("explode".to_owned(), true.into());
                parameter.insert("schema".to_owned(), json!({"type": "array", "items": schema}));
            } else {
                parameter.insert("schema".to_owned(), schema);
            }
            walk.parameters.push(parameter.into());
        }
    }

    /// The schema of a field, lists and maps included.
    fn field_schema(&mut self, field: &FieldDescriptor) -> Value {
        if field.is_map()
            && let Kind::Message(entry) = field.kind()
        {
            // JSON object keys are strings whatever the proto key type, so only the value matters.
            let value = self.kind_schema(&entry.map_entry_value_field().kind());
            return json!({"type": "object", "additionalProperties": value});
        }
        let single = self.kind_schema(&field.kind());
        if field.is_list() { json!({"type": "array", "items": single}) } else { single }
    }

    /// The schema of one value of a type, registering message components as they are met.
    fn kind_schema(&mut self, kind: &Kind) -> Value {
        match kind {
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => json!({"type": "integer", "format": "int32"}),
            // No OpenAPI format is unsigned; every uint32 fits an int64.
            Kind::Uint32 | Kind::Fixed32 => json!({"type": "integer", "format": "int64", "minimum": 0}),
            // The JSON mapping writes 64-bit integers as strings (JavaScript numbers lose
            // precision past 2^53) and accepts either form.
            // As a string, only digits parse (the pattern does not apply to a JSON number).
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                json!({"type": ["string", "integer"], "format": "int64", "pattern": "^-?[0-9]+$"})
            }
            Kind::Uint64 | Kind::Fixed64 => {
                json!({"type": ["string", "integer"], "format": "uint64", "pattern": "^[0-9]+$"})
            }
            Kind::Float => json!({"type": "number", "format": "float"}),
            Kind::Double => json!({"type": "number", "format": "double"}),
            Kind::Bool => json!({"type": "boolean"}),
            Kind::String => json!({"type": "string"}),
            Kind::Bytes => json!({"type": "string", "contentEncoding": "base64"}),
            Kind::Enum(enumeration) => enum_schema(enumeration),
            Kind::Message(message) => self.message(message),
        }
    }

    /// A `$ref` to the message's component, or the inline JSON form of a well-known type.
    fn message(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = self.scalar_message(message) {
            // A wrapper differs from its bare scalar in that it can be absent, written as null.
            return if wrapped_kind(message.full_name()).is_some() { nullable(schema) } else { schema };
        }
        match message.full_name() {
            "google.protobuf.Empty" | "google.protobuf.Struct" => return json!({"type": "object"}),
            "google.protobuf.Value" => return json!({}),
            "google.protobuf.ListValue" => return json!({"type": "array"}),
            "google.protobuf.Any" => {
                return json!({
                    "type": "object",
                    "required": ["@type"],
                    "properties": {"@type": {"type": "string"}},
                });
            }
            _ => {}
        }
        let name = message.full_name();
        if self.seen.insert(name.to_owned()) {
            let schema = self.object(message);
            self.components.insert(name.to_owned(), schema);
        }
        json!({"$ref": format!("{SCHEMA_REF}{name}")})
    }

    /// The well-known messages that JSON writes as a single scalar, which is also what lets
    /// them stand in a query string.
    fn scalar_message(&mut self, message: &MessageDescriptor) -> Option<Value> {
        match message.full_name() {
            "google.protobuf.Timestamp" => Some(json!({"type": "string", "format": "date-time"})),
            "google.protobuf.Duration" => Some(json!({"type": "string", "pattern": DURATION_PATTERN})),
            "google.protobuf.FieldMask" => {
                Some(json!({"type": "string", "description": "Comma-separated lowerCamelCase field paths."}))
            }
            name => wrapped_kind(name).map(|kind| self.kind_schema(&kind)),
        }
    }

    fn object(&mut self, message: &MessageDescriptor) -> Value {
        let mut properties = Map::new();
        for field in message.fields() {
            let schema = describe(self.field_schema(&field), field_comment(&field));
            properties.insert(field.json_name().to_owned(), schema);
        }
        // The transcoder refuses a field it does not know (400), and the document says so.
        let schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
        describe(schema, comment(&message.parent_file(), message.path()))
    }
}

fn enum_schema(enumeration: &EnumDescriptor) -> Value {
    if enumeration.full_name() == "google.protobuf.NullValue" {
        return json!({"type": "null"});
    }
    let names: Vec<String> = enumeration.values().map(|v| v.name().to_owned()).collect();
    describe(json!({"type": "string", "enum": names}), comment(&enumeration.parent_file(), enumeration.path()))
}

/// The scalar a `google.protobuf.*Value` wrapper carries.
fn wrapped_kind(full_name: &str) -> Option<Kind> {
    Some(match full_name {
        "google.protobuf.DoubleValue" => Kind::Double,
        "google.protobuf.FloatValue" => Kind::Float,
        "google.protobuf.Int64Value" => Kind::Int64,
        "google.protobuf.UInt64Value" => Kind::Uint64,
        "google.protobuf.Int32Value" => Kind::Int32,
        "google.protobuf.UInt32Value" => Kind::Uint32,
        "google.protobuf.BoolValue" => Kind::Bool,
        "google.protobuf.StringValue" => Kind::String,
        "google.protobuf.BytesValue" => Kind::Bytes,
        _ => return None,
    })
}

fn nullable(mut schema: Value) -> Value {
    let types: Value = match schema.get("type") {
        Some(Value::String(single)) => json!([single, "null"]),
        Some(Value::Array(several)) => several.iter().cloned().chain([json!("null")]).collect(),
        _ => return schema,
    };
    if let Some(object) = schema.as_object_mut() {
        object.insert("type".to_owned(), types);
    }
    schema
}

/// A template variable's field path in proto names, whichever spelling the template used, so
/// that it compares with the names the query walk produces.
fn proto_path(message: &MessageDescriptor, path: &[String]) -> String {
    let mut names = Vec::with_capacity(path.len());
    let mut current = Some(message.clone());
    for segment in path {
        let field =
            current.as_ref().and_then(|m| m.get_field_by_name(segment).or_else(|| m.get_field_by_json_name(segment)));
        match field {
            Some(field) => {
                names.push(field.name().to_owned());
                current = match field.kind() {
                    Kind::Message(next) => Some(next),
                    _ => None,
                };
            }
            None => {
                names.push(segment.clone());
                current = None;
            }
        }
    }
    names.join(".")
}

fn describe(mut schema: Value, description: Option<String>) -> Value {
    if let (Some(text), Some(object)) = (description, schema.as_object_mut()) {
        object.insert("description".to_owned(), text.into());
    }
    schema
}

fn field_comment(field: &FieldDescriptor) -> Option<String> {
    comment(&field.parent_file(), field.path())
}

/// The leading comment of the element at `path` in `file`, if the descriptor set kept source
/// info (it may be stripped, in which case everything still works without prose).
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path.as_slice() == path)?;
    let raw = location.leading_comments.as_deref()?;
    let text = raw.lines().map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end()).collect::<Vec<_>>().join("\n");
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The first sentence of a comment's first paragraph, on one line.
fn summary(comment: &str) -> String {
    let paragraph = comment.split("\n\n").next().unwrap_or(comment);
    let line = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
    // A sentence ends at ". " before a capital, which keeps "e.g. foo" in one piece.
    let end = line
        .match_indices(". ")
        .find(|(i, _)| line[i + 2..].starts_with(|c: char| c.is_uppercase()))
        .map(|(i, _)| i + 1);
    match end {
        Some(end) => line[..end].to_owned(),
        None => line,
    }
}

fn openapi_verb(method: &str) -> Option<&'static str> {
    Some(match method {
        "GET" => "get",
        "PUT" => "put",
        "POST" => "post",
        "DELETE" => "delete",
        "PATCH" => "patch",
        "HEAD" => "head",
        "OPTIONS" => "options",
        "TRACE" => "trace",
        _ => return None,
    })
}

/// The routes the gateway serves itself rather than transcoding.
fn gateway_routes() -> [(&'static str, Map<String, Value>); 3] {
    let get = |operation: Value| {
        let mut item = Map::new();
        item.insert("get".to_owned(), operation);
        item
    };
    let readiness = json!({
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "backends": {"type": "object", "description": "Each backend service's readiness."},
        },
    });
    [
        (
            "/healthz",
            get(json!({
                "operationId": "healthz",
                "tags": [GATEWAY_TAG],
                "summary": "Liveness: the gateway process is up.",
                "security": [],
                "responses": {
                    "200": {"description": "Alive", "content": {"text/plain": {"schema": {"type": "string"}}}},
                },
            })),
        ),
        (
            "/readyz",
            get(json!({
                "operationId": "readyz",
                "tags": [GATEWAY_TAG],
                "summary": "Readiness: the gateway can reach its backends.",
                "security": [],
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": readiness}}},
                    "503": {"description": "Not ready", "content": {"application/json": {"schema": readiness}}},
                },
            })),
        ),
        (
            "/openapi.json",
            get(json!({
                "operationId": "openapi",
                "tags": [GATEWAY_TAG],
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "The OpenAPI 3.1 document",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                },
            })),
        ),
    ]
}

#[cfg(test)]
mod tests;

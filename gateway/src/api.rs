//! The REST surface, read from the descriptors: one [`Binding`] per `google.api.http` rule
//! (additional bindings included), with the access policy from `agora.api.v1.policy`.
//!
//! Everything a route needs is resolved here, at start-up, so a bad annotation stops the
//! gateway with a message that names the method instead of failing a request later.

use std::sync::Arc;

use agora_proto::agora::api::v1::{Access, MethodPolicy};
use agora_proto::google::api::{HttpRule, http_rule::Pattern};
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor};

use crate::template::{Template, TemplateError};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteAccess {
    Public,
    /// A valid access token.
    Authenticated,
    /// A valid access token with the `admin` role.
    Admin,
}

/// Where the request message comes from besides the path.
#[derive(Debug, Clone)]
pub enum BodyRule {
    /// No body; unbound fields come from the query string.
    None,
    /// `body: "*"`: the whole request message; the query string sets nothing.
    Whole,
    /// `body: "field"`: one top-level field; the rest may come from the query string.
    Field(FieldDescriptor),
}

#[derive(Debug)]
pub struct Binding {
    pub method: MethodDescriptor,
    pub verb: http::Method,
    pub template: Template,
    pub body: BodyRule,
    /// `response_body`: answer with this field of the response instead of the whole message.
    pub response_body: Option<FieldDescriptor>,
    pub policy: RouteAccess,
    /// The RPC creates a resource, so success is `201 Created`.
    pub creates: bool,
    /// `/package.Service/Method`, the gRPC path.
    pub grpc_path: String,
}

impl Binding {
    /// The full name of the service that serves this route.
    pub fn service(&self) -> &str {
        self.method.parent_service().full_name()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("the descriptor set does not decode: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    #[error("{method}: {reason}")]
    Method { method: String, reason: String },
    #[error("{method}: {source}")]
    Template { method: String, source: TemplateError },
}

/// Every binding of every service in the pool, in declaration order.
#[derive(Debug, Clone)]
pub struct Api {
    pub pool: DescriptorPool,
    pub bindings: Vec<Arc<Binding>>,
}

impl Api {
    /// The API compiled into this binary (`agora-proto`).
    pub fn agora() -> Result<Self, LoadError> {
        Self::from_bytes(agora_proto::FILE_DESCRIPTOR_SET)
    }

    /// An API from an encoded `FileDescriptorSet` that keeps its custom options.
    pub fn from_bytes(descriptor_set: &[u8]) -> Result<Self, LoadError> {
        Self::load(DescriptorPool::decode(descriptor_set)?)
    }

    pub fn load(pool: DescriptorPool) -> Result<Self, LoadError> {
        let http = pool.get_extension_by_name("google.api.http");
        let policy = pool.get_extension_by_name("agora.api.v1.policy");
        let mut bindings = Vec::new();
        for service in pool.services() {
            for method in service.methods() {
                let options = method.options();
                let rule: Option<HttpRule> = http
                    .as_ref()
                    .filter(|ext| options.has_extension(ext))
                    .map(|ext| {
                        options.get_extension(ext).as_message().expect("google.api.http is a message").transcode_to()
                    })
                    .transpose()
                    .map_err(|e| method_error(&method, format!("unreadable google.api.http: {e}")))?;
                let Some(rule) = rule else { continue };
                let declared: MethodPolicy = policy
                    .as_ref()
                    .filter(|ext| options.has_extension(ext))
                    .map(|ext| options.get_extension(ext).as_message().expect("the policy is a message").transcode_to())
                    .transpose()
                    .map_err(|e| method_error(&method, format!("unreadable agora.api.v1.policy: {e}")))?
                    .ok_or_else(|| {
                        method_error(
                            &method,
                            "has a REST route but no (agora.api.v1.policy); declare who may call it".into(),
                        )
                    })?;
                let access = match declared.access() {
                    Access::Public => RouteAccess::Public,
                    Access::Authenticated => RouteAccess::Authenticated,
                    Access::Admin => RouteAccess::Admin,
                    Access::Internal => {
                        return Err(method_error(&method, "is internal and must not have a REST route".into()));
                    }
                    Access::Unspecified => {
                        return Err(method_error(&method, "has a policy without an access level".into()));
                    }
                };
                if method.is_client_streaming() || method.is_server_streaming() {
                    return Err(method_error(&method, "streams, and the gateway transcodes unary calls only".into()));
                }
                // Additional bindings do not nest (google/api/http.proto), so one level is all.
                for rule in std::iter::once(&rule).chain(&rule.additional_bindings) {
                    bindings.push(Arc::new(binding(&method, rule, access, declared.creates)?));
                }
            }
        }
        Ok(Self { pool, bindings })
    }
}

fn binding(
    method: &MethodDescriptor,
    rule: &HttpRule,
    policy: RouteAccess,
    creates: bool,
) -> Result<Binding, LoadError> {
    let (verb, path) = match rule.pattern.as_ref() {
        Some(Pattern::Get(p)) => (http::Method::GET, p),
        Some(Pattern::Put(p)) => (http::Method::PUT, p),
        Some(Pattern::Post(p)) => (http::Method::POST, p),
        Some(Pattern::Delete(p)) => (http::Method::DELETE, p),
        Some(Pattern::Patch(p)) => (http::Method::PATCH, p),
        Some(Pattern::Custom(c)) => (
            http::Method::from_bytes(c.kind.as_bytes())
                .map_err(|_| method_error(method, format!("bad custom HTTP method {:?}", c.kind)))?,
            &c.path,
        ),
        None => return Err(method_error(method, "google.api.http has no pattern".into())),
    };
    let template = Template::parse(path)
        .map_err(|source| LoadError::Template { method: method.full_name().to_owned(), source })?;
    let input = method.input();
    for variable in template.variables() {
        let field = field_path(&input, &variable.field_path).map_err(|reason| {
            method_error(method, format!("path variable {}: {reason}", variable.field_path.join(".")))
        })?;
        if field.is_list() || field.is_map() || matches!(field.kind(), Kind::Message(_)) {
            return Err(method_error(method, format!("path variable {} must be a scalar field", field.name())));
        }
    }
    let body = match rule.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        name => BodyRule::Field(
            input
                .get_field_by_name(name)
                .ok_or_else(|| method_error(method, format!("body field {name:?} is not in {}", input.full_name())))?,
        ),
    };
    let response_body = match rule.response_body.as_str() {
        "" => None,
        name => Some(method.output().get_field_by_name(name).ok_or_else(|| {
            method_error(method, format!("response_body {name:?} is not in {}", method.output().full_name()))
        })?),
    };
    Ok(Binding {
        grpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        method: method.clone(),
        verb,
        template,
        body,
        response_body,
        policy,
        creates,
    })
}

/// Resolves `a.b.c` to the last field, every step but the last being a singular message.
pub fn field_path(message: &MessageDescriptor, path: &[String]) -> Result<FieldDescriptor, String> {
    let mut current = message.clone();
    let mut found = None;
    for (i, name) in path.iter().enumerate() {
        let field = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))
            .ok_or_else(|| format!("{} has no field {name:?}", current.full_name()))?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(next) if !field.is_list() && !field.is_map() => current = next,
                _ => return Err(format!("{name:?} is not a message field, so it has no sub-fields")),
            }
        }
        found = Some(field);
    }
    found.ok_or_else(|| "empty field path".to_owned())
}

fn method_error(method: &MethodDescriptor, reason: String) -> LoadError {
    LoadError::Method { method: method.full_name().to_owned(), reason }
}

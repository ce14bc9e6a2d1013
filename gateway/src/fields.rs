//! Setting request fields from text: path variables and query parameters.
//!
//! Both arrive as strings, so each is parsed by the target field's type: numbers, booleans,
//! enum names (with or without the enum's prefix, or the number), base64 bytes, and
//! well-known types through their JSON string form (`created_after=2026-01-01T00:00:00Z`).

use base64::Engine as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, ReflectMessage as _, Value};
use serde::de::IntoDeserializer;

/// Sets the field at `path` (proto or JSON names) to `text`; repeated fields append.
/// Errors name the parameter as the client wrote it.
pub fn set(message: &mut DynamicMessage, path: &[&str], text: &str, source: &str) -> Result<(), String> {
    let (name, rest) = path.split_first().ok_or_else(|| format!("empty {source} name"))?;
    let desc = message.descriptor();
    let field = desc
        .get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
        .ok_or_else(|| format!("unknown {source} {:?}: {} has no field {name:?}", path.join("."), desc.full_name()))?;
    if !rest.is_empty() {
        return match field.kind() {
            Kind::Message(_) if !field.is_list() && !field.is_map() => {
                let child = message.get_field_mut(&field);
                let Value::Message(child) = child else { unreachable!("a message field holds a message") };
                set(child, rest, text, source)
            }
            _ => Err(format!("{source} {:?}: {name:?} has no sub-fields", path.join("."))),
        };
    }
    if field.is_map() {
        return Err(format!("{source} {name:?} is a map, which can only be set in a JSON body"));
    }
    let value = parse(&field, text).map_err(|reason| format!("{source} {name:?}: {reason}"))?;
    if field.is_list() {
        let Value::List(items) = message.get_field_mut(&field) else { unreachable!("a repeated field holds a list") };
        items.push(value);
    } else {
        message.set_field(&field, value);
    }
    Ok(())
}

/// Parses one value of `field`'s type from text.
pub fn parse(field: &FieldDescriptor, text: &str) -> Result<Value, String> {
    let bad = |what: &str| format!("{text:?} is not {what}");
    Ok(match field.kind() {
        Kind::String => Value::String(text.to_owned()),
        Kind::Bool => match text {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(text.parse().map_err(|_| bad("a 32-bit integer"))?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(text.parse().map_err(|_| bad("a 64-bit integer"))?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(text.parse().map_err(|_| bad("an unsigned 32-bit integer"))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(text.parse().map_err(|_| bad("an unsigned 64-bit integer"))?),
        Kind::Float => Value::F32(text.parse().map_err(|_| bad("a number"))?),
        Kind::Double => Value::F64(text.parse().map_err(|_| bad("a number"))?),
        Kind::Bytes => {
            let engines = [&base64::engine::general_purpose::STANDARD, &base64::engine::general_purpose::URL_SAFE];
            let decoded = engines.iter().find_map(|e| e.decode(text).ok());
            Value::Bytes(decoded.ok_or_else(|| bad("base64"))?.into())
        }
        Kind::Enum(enum_desc) => {
            let prefix = enum_prefix(enum_desc.name());
            let by_name = enum_desc
                .values()
                .find(|v| v.name() == text || v.name().strip_prefix(&prefix) == Some(text))
                .map(|v| v.number());
            let number = by_name.or_else(|| text.parse().ok().filter(|n| enum_desc.get_value(*n).is_some()));
            let names: Vec<_> = enum_desc.values().map(|v| v.name().to_owned()).collect();
            Value::EnumNumber(number.ok_or_else(|| format!("{text:?} is not one of {}", names.join(", ")))?)
        }
        Kind::Message(message_desc) => {
            // Well-known types (Timestamp, Duration, FieldMask, wrappers) have a JSON string form.
            let json: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = text.into_deserializer();
            Value::Message(
                DynamicMessage::deserialize(message_desc.clone(), json)
                    .map_err(|e| format!("{text:?} is not a {}: {e}", message_desc.full_name()))?,
            )
        }
    })
}

/// `OrderStatus` → `ORDER_STATUS_`, the prefix protobuf style puts on every value.
pub fn enum_prefix(enum_name: &str) -> String {
    let mut prefix = String::new();
    for (i, c) in enum_name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    prefix
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_prefixes_follow_the_style_guide() {
        assert_eq!(enum_prefix("OrderStatus"), "ORDER_STATUS_");
        assert_eq!(enum_prefix("Access"), "ACCESS_");
    }
}

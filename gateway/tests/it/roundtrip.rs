//! Property: for every message of the Agora API, JSON → protobuf → JSON gives back the same
//! JSON, and the protobuf in between equals the message the JSON came from.

use gateway::{api::Api, transcode};
use proptest::{prelude::*, test_runner::TestRunner};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage as _, Value};

/// Nesting deeper than this is cut off so that recursive types stay finite.
const MAX_DEPTH: u32 = 3;

fn scalar(kind: &Kind) -> BoxedStrategy<Value> {
    match kind {
        Kind::Double => {
            any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::F64).boxed()
        }
        Kind::Float => {
            any::<f32>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::F32).boxed()
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => any::<i32>().prop_map(Value::I32).boxed(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => any::<i64>().prop_map(Value::I64).boxed(),
        Kind::Uint32 | Kind::Fixed32 => any::<u32>().prop_map(Value::U32).boxed(),
        Kind::Uint64 | Kind::Fixed64 => any::<u64>().prop_map(Value::U64).boxed(),
        Kind::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        Kind::String => any::<String>().prop_map(Value::String).boxed(),
        Kind::Bytes => proptest::collection::vec(any::<u8>(), 0..24).prop_map(|b| Value::Bytes(b.into())).boxed(),
        Kind::Enum(e) => {
            let numbers: Vec<i32> = e.values().map(|v| v.number()).collect();
            proptest::sample::select(numbers).prop_map(Value::EnumNumber).boxed()
        }
        Kind::Message(_) => unreachable!("messages are not scalars"),
    }
}

fn single(kind: &Kind, depth: u32) -> BoxedStrategy<Value> {
    match kind {
        Kind::Message(m) => message(m.clone(), depth + 1).prop_map(Value::Message).boxed(),
        other => scalar(other),
    }
}

fn field(field: &FieldDescriptor, depth: u32) -> BoxedStrategy<Option<Value>> {
    let value = if field.is_map() {
        let Kind::Message(entry) = field.kind() else { unreachable!("a map field is a message") };
        let key = scalar(&entry.map_entry_key_field().kind()).prop_map(|k| match k {
            Value::String(s) => MapKey::String(s),
            Value::I32(i) => MapKey::I32(i),
            Value::I64(i) => MapKey::I64(i),
            Value::U32(i) => MapKey::U32(i),
            Value::U64(i) => MapKey::U64(i),
            Value::Bool(b) => MapKey::Bool(b),
            other => unreachable!("{other:?} is not a map key"),
        });
        let value = single(&entry.map_entry_value_field().kind(), depth);
        proptest::collection::hash_map(key, value, 0..3).prop_map(Value::Map).boxed()
    } else if field.is_list() {
        proptest::collection::vec(single(&field.kind(), depth), 0..3).prop_map(Value::List).boxed()
    } else {
        single(&field.kind(), depth)
    };
    proptest::option::of(value).boxed()
}

/// Any message of type `desc`: each field set or left unset at random.
fn message(desc: MessageDescriptor, depth: u32) -> BoxedStrategy<DynamicMessage> {
    if desc.full_name() == "google.protobuf.Timestamp" {
        // The JSON form (RFC 3339) covers years 1 to 9999 only.
        return (-62_135_596_800i64..=253_402_300_799, 0i32..1_000_000_000)
            .prop_map(move |(seconds, nanos)| {
                let mut m = DynamicMessage::new(desc.clone());
                m.set_field_by_name("seconds", Value::I64(seconds));
                m.set_field_by_name("nanos", Value::I32(nanos));
                m
            })
            .boxed();
    }
    let fields: Vec<FieldDescriptor> =
        desc.fields().filter(|f| depth < MAX_DEPTH || !matches!(f.kind(), Kind::Message(_))).collect();
    let strategies: Vec<_> = fields.iter().map(|f| field(f, depth)).collect();
    strategies
        .prop_map(move |values| {
            let mut m = DynamicMessage::new(desc.clone());
            for (f, value) in fields.iter().zip(values) {
                if let Some(value) = value {
                    m.set_field(f, value);
                }
            }
            m
        })
        .boxed()
}

fn canonical(message: &DynamicMessage) -> DynamicMessage {
    DynamicMessage::decode(message.descriptor(), message.encode_to_vec().as_slice()).unwrap()
}

#[test]
fn every_api_message_round_trips_through_json() {
    let api = Api::agora().unwrap();
    let messages: Vec<_> = api.pool.all_messages().filter(|m| m.package_name().starts_with("agora.")).collect();
    assert!(messages.len() > 30, "the API's messages are all here: {}", messages.len());
    for desc in messages {
        let mut runner = TestRunner::new(ProptestConfig { cases: 64, ..ProptestConfig::default() });
        let result = runner.run(&message(desc.clone(), 0), |generated| {
            // The wire form has no "set to the default" for plain proto3 fields; decoding the
            // encoded message gives the canonical form that both sides are compared in.
            let original = canonical(&generated);
            let json = transcode::to_json(&original).unwrap();
            let parsed = transcode::from_json(desc.clone(), &json).map_err(|e| {
                TestCaseError::fail(format!(
                    "{} did not parse back: {e:?}\n{}",
                    desc.full_name(),
                    String::from_utf8_lossy(&json)
                ))
            })?;
            prop_assert_eq!(&canonical(&parsed), &original);
            // Map entries have no order, so the documents are compared as JSON values.
            let again: serde_json::Value = serde_json::from_slice(&transcode::to_json(&parsed).unwrap()).unwrap();
            prop_assert_eq!(again, serde_json::from_slice::<serde_json::Value>(&json).unwrap());
            Ok(())
        });
        if let Err(e) = result {
            panic!("{}: {e}", desc.full_name());
        }
    }
}

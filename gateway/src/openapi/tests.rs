//! The document for the real API and for a test API with every rule kind.

use super::*;

fn agora() -> Value {
    document(&Api::agora().unwrap())
}

fn operation<'a>(doc: &'a Value, path: &str, verb: &str) -> &'a Value {
    let op = &doc["paths"][path][verb];
    assert!(op.is_object(), "no {verb} {path} in {:#}", doc["paths"]);
    op
}

fn parameter<'a>(op: &'a Value, name: &str, location: &str) -> Option<&'a Value> {
    op["parameters"].as_array()?.iter().find(|p| p["name"] == name && p["in"] == location)
}

fn query_names(op: &Value) -> Vec<&str> {
    let parameters = op["parameters"].as_array().map(Vec::as_slice).unwrap_or_default();
    parameters.iter().filter(|p| p["in"] == "query").filter_map(|p| p["name"].as_str()).collect()
}

fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match inner.as_str() {
                    Some(target) if key == "$ref" => out.push(target),
                    _ => refs(inner, out),
                }
            }
        }
        Value::Array(items) => {
            for inner in items {
                refs(inner, out);
            }
        }
        _ => {}
    }
}

fn assert_refs_resolve(doc: &Value) {
    let mut found = Vec::new();
    refs(doc, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("{target} is not local"));
        assert!(doc.pointer(pointer).is_some_and(Value::is_object), "{target} does not resolve");
    }
}

fn assert_operation_ids_unique(doc: &Value) {
    let mut ids = HashSet::new();
    for item in doc["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            let id = op["operationId"].as_str().unwrap();
            assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        }
    }
}

#[test]
fn the_header_names_the_version_and_the_auth_scheme() {
    let doc = agora();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Agora API");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearerAuth"],
        json!({"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    );
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(operation(&doc, path, "get")["tags"], json!(["gateway"]));
    }
}

#[test]
fn a_custom_verb_route_has_its_path_parameter_and_needs_a_token() {
    let doc = agora();
    let op = operation(&doc, "/v1/orders/{id}:cancel", "post");
    let id = parameter(op, "id", "path").expect("id path parameter");
    assert_eq!(id["required"], true);
    assert_eq!(id["schema"]["type"], "string");
    assert_eq!(op["security"], json!([{"bearerAuth": []}]));
    assert_eq!(op["x-agora-access"], "authenticated");
    assert_eq!(op["responses"]["401"]["$ref"], ERROR_REF);
    assert_eq!(op["responses"]["default"]["$ref"], ERROR_REF);
    assert_eq!(op["operationId"], "CancelOrder");
    assert_eq!(op["tags"], json!(["OrderService"]));
}

#[test]
fn creating_a_product_answers_201_and_is_for_admins() {
    let doc = agora();
    let op = operation(&doc, "/v1/products", "post");
    assert!(op["responses"]["201"].is_object());
    assert!(op["responses"].get("200").is_none());
    assert_eq!(
        op["responses"]["201"]["content"]["application/json"]["schema"]["$ref"],
        json!(format!("{SCHEMA_REF}agora.product.v1.Product"))
    );
    assert_eq!(op["x-agora-access"], "admin");
    assert_eq!(op["responses"]["403"]["$ref"], ERROR_REF);
    assert_eq!(
        op["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        json!(format!("{SCHEMA_REF}agora.product.v1.CreateProductRequest"))
    );
    assert_eq!(op["requestBody"]["required"], true);
}

#[test]
fn listing_products_is_public_and_paged_through_the_query() {
    let doc = agora();
    let op = operation(&doc, "/v1/products", "get");
    assert_eq!(query_names(op), ["page_size", "page_token"]);
    assert_eq!(parameter(op, "page_size", "query").unwrap()["schema"]["format"], "int32");
    assert_eq!(op["security"], json!([]));
    assert_eq!(op["x-agora-access"], "public");
    assert!(op["responses"].get("401").is_none());
    assert!(op.get("requestBody").is_none());
}

#[test]
fn proto_comments_become_summaries() {
    let doc = agora();
    assert_eq!(operation(&doc, "/v1/orders", "get")["summary"], "The caller's orders, newest first.");
    let create = operation(&doc, "/v1/orders", "post");
    assert_eq!(create["summary"], "Places an order for the caller.");
    assert!(create["description"].as_str().unwrap().contains("Idempotency-Key"));
    assert_eq!(operation(&doc, "/v1/products/{id}", "get")["summary"], "GetProduct");
}

#[test]
fn an_input_with_an_idempotency_key_accepts_the_header() {
    let doc = agora();
    let header = parameter(operation(&doc, "/v1/orders", "post"), "Idempotency-Key", "header");
    assert_eq!(header.expect("header")["required"], false);
    assert!(parameter(operation(&doc, "/v1/orders", "get"), "Idempotency-Key", "header").is_none());
}

#[test]
fn every_ref_resolves_and_operation_ids_are_unique() {
    let doc = agora();
    assert_refs_resolve(&doc);
    assert_operation_ids_unique(&doc);
}

#[test]
fn the_order_schema_follows_the_json_mapping() {
    let doc = agora();
    let order = &doc["components"]["schemas"]["agora.order.v1.Order"];
    assert_eq!(order["type"], "object");
    let properties = &order["properties"];
    assert_eq!(properties["cancelReason"]["type"], "string");
    assert_eq!(properties["status"]["type"], "string");
    assert!(properties["status"]["enum"].as_array().unwrap().contains(&json!("ORDER_STATUS_PAID")));
    assert_eq!(properties["createdAt"], json!({"type": "string", "format": "date-time"}));
    assert_eq!(properties["items"]["type"], "array");
    assert_eq!(properties["items"]["items"]["$ref"], json!(format!("{SCHEMA_REF}agora.order.v1.OrderItem")));
    assert_eq!(properties["total"]["$ref"], json!(format!("{SCHEMA_REF}agora.type.v1.Money")));
    let money = &doc["components"]["schemas"]["agora.type.v1.Money"]["properties"];
    assert_eq!(money["amountMinor"]["type"], json!(["string", "integer"]));
    assert!(money["amountMinor"]["description"].as_str().unwrap().contains("Minor units"));
    assert!(doc["components"]["schemas"].get("google.protobuf.Timestamp").is_none());
}

/// `testdata/shelves.proto`, with its comments (the summaries come from them).
fn shelves() -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut compiler = protox::Compiler::new([root.join("testdata"), root.join("../proto")]).unwrap();
    compiler.include_imports(true).include_source_info(true);
    compiler.open_file("shelves.proto").unwrap();
    document(&Api::from_bytes(&compiler.encode_file_descriptor_set()).unwrap())
}

#[test]
fn query_parameters_flatten_nested_messages_and_skip_what_cannot_be_flat() {
    let doc = shelves();
    let op = operation(&doc, "/v1/shelves/{shelf.id}", "get");
    assert_eq!(op["operationId"], "GetShelf");
    assert!(parameter(op, "shelf.id", "path").is_some());
    assert_eq!(
        query_names(op),
        [
            "name",
            "filter.min_price.amount_minor",
            "filter.min_price.currency",
            "tags",
            "colors",
            "since",
            "min_count",
            "read_mask",
            "token",
        ]
    );
    let tags = parameter(op, "tags", "query").unwrap();
    assert_eq!(tags["style"], "form");
    assert_eq!(tags["explode"], true);
    assert_eq!(tags["schema"], json!({"type": "array", "items": {"type": "string"}}));
    assert_eq!(tags["description"], "Any of these.");
    let colors = parameter(op, "colors", "query").unwrap();
    assert_eq!(colors["schema"]["items"]["enum"], json!(["COLOR_UNSPECIFIED", "COLOR_RED"]));
    assert_eq!(parameter(op, "since", "query").unwrap()["schema"]["format"], "date-time");
    assert_eq!(parameter(op, "min_count", "query").unwrap()["schema"]["type"], json!(["string", "integer"]));
}

#[test]
fn additional_bindings_get_numbered_ids_and_their_own_parameters() {
    let doc = shelves();
    let op = operation(&doc, "/v1/{name}", "get");
    assert_eq!(op["operationId"], "GetShelf_2");
    assert_eq!(parameter(op, "name", "path").unwrap()["required"], true);
    let names = query_names(op);
    assert!(names.contains(&"shelf.id"));
    assert!(!names.contains(&"name"));
    assert!(!names.iter().any(|n| n.starts_with("shelf.parent")));
    assert_operation_ids_unique(&doc);
}

#[test]
fn a_body_field_and_a_response_body_field_are_the_schemas_of_those_fields() {
    let doc = shelves();
    let op = operation(&doc, "/v1/shelves/{shelf.id}", "patch");
    let ref_schema = json!({"$ref": format!("{SCHEMA_REF}test.v1.Ref")});
    assert_eq!(op["requestBody"]["content"]["application/json"]["schema"], ref_schema);
    assert_eq!(op["responses"]["200"]["content"]["application/json"]["schema"], ref_schema);
    assert_eq!(query_names(op), ["update_mask", "etag"]);
    assert_eq!(op["security"], json!([{"bearerAuth": []}]));
    assert_eq!(op["x-agora-access"], "admin");
}

#[test]
fn well_known_types_maps_and_recursion_in_component_schemas() {
    let doc = shelves();
    assert_refs_resolve(&doc);
    let schemas = &doc["components"]["schemas"];
    let shelf = &schemas["test.v1.Shelf"]["properties"];
    assert_eq!(shelf["labels"]["type"], "object");
    assert_eq!(shelf["labels"]["additionalProperties"]["format"], "int64");
    assert_eq!(shelf["labels"]["description"], "The shelf's labels.");
    assert_eq!(shelf["minCount"]["type"], json!(["string", "integer", "null"]));
    assert_eq!(shelf["extra"], json!({}));
    assert_eq!(shelf["blob"], json!({"type": "string", "contentEncoding": "base64"}));
    assert_eq!(shelf["big"]["format"], "uint64");
    assert_eq!(shelf["aliases"], json!({"type": "array", "items": {"type": ["string", "null"]}}));
    assert_eq!(schemas["test.v1.Ref"]["properties"]["parent"]["$ref"], json!(format!("{SCHEMA_REF}test.v1.Ref")));
    assert!(schemas.get("google.protobuf.Int64Value").is_none());
}

#[test]
fn summaries_stop_at_the_first_sentence() {
    assert_eq!(summary("Does a thing. Then more\nof it."), "Does a thing.");
    assert_eq!(summary("Picks one, e.g. the first.\n\nDetails."), "Picks one, e.g. the first.");
    assert_eq!(summary("Spans\ntwo lines"), "Spans two lines");
}

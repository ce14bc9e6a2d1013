//! Each google.api.http rule kind, and each way a request can be refused, on the test API.

use gateway::{api::Api, error::ApiError, transcode};
use http::StatusCode;
use prost_reflect::DynamicMessage;
use serde_json::json;

use crate::library::{library, transcode};

fn ok(api: &Api, method: &str, uri: &str, body: &str) -> (String, serde_json::Value) {
    transcode(api, method, uri, body).unwrap_or_else(|e| panic!("{method} {uri}: {e:?}"))
}

fn refused(api: &Api, method: &str, uri: &str, body: &str) -> ApiError {
    match transcode(api, method, uri, body) {
        Ok(got) => panic!("{method} {uri} was accepted: {got:?}"),
        Err(e) => e,
    }
}

#[test]
fn a_pattern_variable_binds_the_matched_segments() {
    let (method, request) = ok(&library(), "GET", "/v1/shelves/7", "");
    assert_eq!(method, "GetShelf");
    assert_eq!(request["name"], "shelves/7");
}

#[test]
fn additional_bindings_route_to_the_same_method() {
    let (method, request) = ok(&library(), "GET", "/v1/libraries/central/shelves/7", "");
    assert_eq!(method, "GetShelf");
    assert_eq!((request["libraryId"].as_str(), request["name"].as_str()), (Some("central"), Some("shelves/7")));
}

#[test]
fn a_double_wildcard_binds_the_rest_of_the_path() {
    let (method, request) = ok(&library(), "GET", "/v1/files/docs/2026/notes%20one.txt", "");
    assert_eq!(method, "GetFile");
    assert_eq!(request["path"], "docs/2026/notes one.txt");
}

#[test]
fn a_body_field_takes_the_body_and_the_query_fills_the_rest() {
    let (method, request) =
        ok(&library(), "POST", "/v1/shelves/1/books?validate_only=true", r#"{"title": "Dune", "pages": "412"}"#);
    assert_eq!(method, "CreateBook");
    assert_eq!(request["parent"], "shelves/1");
    assert_eq!(request["validateOnly"], true);
    assert_eq!((request["book"]["title"].as_str(), request["book"]["pages"].as_str()), (Some("Dune"), Some("412")));
}

#[test]
fn a_repeated_body_field_takes_a_json_array() {
    let (method, request) = ok(&library(), "PUT", "/v1/books/9/tags", r#"["classic", "sci-fi"]"#);
    assert_eq!(method, "SetTags");
    assert_eq!(request["tags"], json!(["classic", "sci-fi"]));
}

#[test]
fn a_body_field_cannot_smuggle_in_other_fields() {
    let error = refused(&library(), "PUT", "/v1/books/9/tags", r#"["a"], "id": "other""#);
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert!(error.message.contains("trailing characters"), "{}", error.message);
}

#[test]
fn a_path_variable_can_set_a_field_inside_the_body_field() {
    let (method, request) = ok(&library(), "PATCH", "/v1/books/b-1", r#"{"title": "Dune Messiah"}"#);
    assert_eq!(method, "UpdateBook");
    assert_eq!(
        (request["book"]["id"].as_str(), request["book"]["title"].as_str()),
        (Some("b-1"), Some("Dune Messiah"))
    );
}

#[test]
fn a_custom_verb_routes_and_the_path_wins_over_the_body() {
    let (method, request) = ok(&library(), "POST", "/v1/books/9:publish", r#"{"id": "spoofed", "notify": true}"#);
    assert_eq!(method, "PublishBook");
    assert_eq!((request["id"].as_str(), request["notify"].as_bool()), (Some("9"), Some(true)));
    // Without the verb the same path is another method.
    assert_eq!(ok(&library(), "GET", "/v1/books/9", "").0, "GetBook");
}

#[test]
fn an_empty_body_on_a_whole_body_route_is_an_empty_message() {
    let (_, request) = ok(&library(), "POST", "/v1/books/9:publish", "");
    assert_eq!(request["notify"], false);
}

#[test]
fn query_parameters_fill_nested_repeated_enum_and_well_known_fields() {
    let uri = "/v1/shelves/1/books?page_size=5&filter.min_pages=100&filter.publishedAfter=2026-01-01T00:00:00Z\
               &tags=a&tags=b&genre=FICTION&genres=GENRE_HISTORY&genres=1&cursor=AQI%3D&min_rating=4.5&filter.in_print=true";
    let (method, request) = ok(&library(), "GET", uri, "");
    assert_eq!(method, "ListBooks");
    assert_eq!(request["pageSize"], 5);
    assert_eq!(request["filter"]["minPages"], "100");
    assert_eq!(request["filter"]["publishedAfter"], "2026-01-01T00:00:00Z");
    assert_eq!(request["filter"]["inPrint"], true);
    assert_eq!(request["tags"], json!(["a", "b"]));
    assert_eq!(request["genre"], "GENRE_FICTION");
    assert_eq!(request["genres"], json!(["GENRE_HISTORY", "GENRE_FICTION"]));
    assert_eq!(request["cursor"], "AQI=");
    assert_eq!(request["minRating"], 4.5);
}

#[test]
fn json_input_accepts_proto_and_camel_case_names_and_int64_as_number_or_string() {
    let api = library();
    for body in [r#"{"title": "A", "pages": 10}"#, r#"{"title": "A", "pages": "10"}"#] {
        let (_, request) = ok(&api, "POST", "/v1/shelves/1/books?validateOnly=true", body);
        assert_eq!(request["book"]["pages"], "10");
    }
    let (_, snake) = ok(&api, "PATCH", "/v1/books/1", r#"{"published_at": "2026-05-01T10:00:00Z"}"#);
    let (_, camel) = ok(&api, "PATCH", "/v1/books/1", r#"{"publishedAt": "2026-05-01T10:00:00Z"}"#);
    assert_eq!(snake, camel);
    assert_eq!(snake["book"]["publishedAt"], "2026-05-01T10:00:00Z");
}

#[test]
fn response_body_answers_with_one_field() {
    let api = library();
    let binding = api.bindings.iter().find(|b| b.method.name() == "ListBooks").unwrap();
    let response = DynamicMessage::deserialize(
        binding.method.output(),
        json!({"books": [{"id": "1", "title": "Dune", "pages": "412"}], "nextPageToken": "t"}),
    )
    .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&transcode::response(binding, &response).unwrap()).unwrap();
    let books = body.as_array().expect("the response is the books array");
    assert_eq!(books.len(), 1);
    assert_eq!((books[0]["title"].as_str(), books[0]["pages"].as_str()), (Some("Dune"), Some("412")));
    // Defaults are written, so every Book has the same shape.
    assert_eq!((books[0]["genre"].as_str(), books[0]["rating"].as_f64()), (Some("GENRE_UNSPECIFIED"), Some(0.0)));
}

#[test]
fn an_unknown_json_field_is_a_400_that_names_it() {
    let error = refused(&library(), "POST", "/v1/books/9:publish", r#"{"notify": true, "colour": "red"}"#);
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert!(error.message.contains("colour"), "{}", error.message);
}

#[test]
fn malformed_json_is_a_400_that_says_where() {
    let error = refused(&library(), "POST", "/v1/books/9:publish", "{\n  \"notify\": tru\n}");
    assert_eq!(error.status, StatusCode::BAD_REQUEST);
    assert!(error.message.contains("at notify") && error.message.contains("line 3"), "{}", error.message);
    let error = refused(&library(), "POST", "/v1/shelves/1/books", r#"{"title": "A", "pages": "many"}"#);
    assert!(error.message.contains("book.pages"), "the path to the bad value: {}", error.message);
}

#[test]
fn bad_query_parameters_are_400s_that_name_them() {
    let api = library();
    for (uri, expected) in [
        ("/v1/shelves/1/books?colour=red", "colour"),
        ("/v1/shelves/1/books?page_size=ten", "ten"),
        ("/v1/shelves/1/books?genre=POETRY", "GENRE_FICTION"),
        ("/v1/shelves/1/books?filter.min_pages.x=1", "no sub-fields"),
        ("/v1/shelves/1/books?labels=a", "map"),
        ("/v1/shelves/1/books?parent=shelves/2", "already takes"),
        ("/v1/books/9:publish?notify=true", "JSON body"),
    ] {
        let method = if uri.contains(":publish") { "POST" } else { "GET" };
        let error = refused(&api, method, uri, "");
        assert_eq!(error.status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(error.message.contains(expected), "{uri}: {}", error.message);
    }
}

#[test]
fn an_unknown_path_is_404_and_a_wrong_method_is_405_with_allow() {
    let api = library();
    let missing = refused(&api, "GET", "/v1/nowhere", "");
    assert_eq!((missing.status, missing.code), (StatusCode::NOT_FOUND, tonic::Code::NotFound));
    let wrong = refused(&api, "DELETE", "/v1/books/9", "");
    assert_eq!(wrong.status, StatusCode::METHOD_NOT_ALLOWED);
    let allow: Vec<_> = wrong.headers.iter().filter(|(n, _)| n == http::header::ALLOW).map(|(_, v)| v).collect();
    assert_eq!(allow, ["GET, HEAD, PATCH"]);
}

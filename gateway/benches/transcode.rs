//! What the gateway's JSON ⇄ protobuf transcoding costs per request, for a small message
//! and a 10 KiB one (`make bench`, or `cargo bench -p gateway --bench transcode`).
//!
//! - `to_proto`: JSON → message → protobuf bytes (a request on its way in);
//! - `to_json`: protobuf bytes → message → JSON (a response on its way out);
//! - `round_trip`: both, the whole transcoding work of one call.
//!
//! The message is `ListProductsResponse`: one product (~240 bytes of JSON), or as many as
//! make 10 KiB.

use std::{hint::black_box, time::Duration};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gateway::{api::Api, transcode};
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};

fn product(i: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("0193a3c4-5d6e-7f80-9a1b-{i:012}"),
        "name": format!("Espresso beans, 1 kg (lot {i})"),
        "description": "Single-origin, medium roast. Notes of cocoa and red fruit.",
        "price": {"currencyCode": "USD", "amountMinor": "2450"},
        "stock": "120",
        "createdAt": "2026-11-21T10:04:05.123Z",
        "updatedAt": "2026-11-21T10:04:05.123Z",
    })
}

/// A `ListProductsResponse` of at least `bytes` of JSON.
fn page(bytes: usize) -> Vec<u8> {
    let mut products = Vec::new();
    loop {
        products.push(product(products.len()));
        let json = serde_json::to_vec(&serde_json::json!({"products": products, "nextPageToken": ""})).unwrap();
        if json.len() >= bytes {
            return json;
        }
    }
}

fn transcoding(c: &mut Criterion) {
    let api = Api::agora().expect("the compiled-in API loads");
    let desc: MessageDescriptor =
        api.pool.get_message_by_name("agora.product.v1.ListProductsResponse").expect("ListProductsResponse");
    let mut group = c.benchmark_group("transcode");
    for (name, json) in [("small", page(1)), ("10KiB", page(10 * 1024))] {
        let proto = transcode::from_json(desc.clone(), &json).expect("valid JSON").encode_to_vec();
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::new("to_proto", name), &json, |b, json| {
            b.iter(|| transcode::from_json(desc.clone(), black_box(json)).unwrap().encode_to_vec());
        });
        group.bench_with_input(BenchmarkId::new("to_json", name), &proto, |b, proto| {
            b.iter(|| {
                transcode::to_json(&DynamicMessage::decode(desc.clone(), black_box(&proto[..])).unwrap()).unwrap()
            });
        });
        group.bench_with_input(BenchmarkId::new("round_trip", name), &json, |b, json| {
            b.iter(|| {
                let bytes = transcode::from_json(desc.clone(), black_box(json)).unwrap().encode_to_vec();
                transcode::to_json(&DynamicMessage::decode(desc.clone(), &bytes[..]).unwrap()).unwrap()
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short runs: `make bench` measures much else on the same two cores.
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = transcoding
}
criterion_main!(benches);

//! The demo catalog `agora all` (and `agora product-service --seed-demo`) adds to an empty
//! catalog, so a first `curl` finds something
//! to order. Prices fit the opening wallet balance, except one that shows a declined payment.

use std::time::Duration;

use agora_kit::identity::Caller;
use agora_proto::{
    Money,
    product::{CreateProductRequest, ListProductsRequest, product_service_client::ProductServiceClient},
};

/// (name, description, price in cents, stock)
const DEMO: &[(&str, &str, i64, i64)] = &[
    ("Espresso beans, 1 kg", "Single-origin, medium roast.", 24_50, 120),
    ("Ceramic mug", "350 ml, dishwasher safe.", 12_00, 80),
    ("Paper filters (100)", "Size 02 cone filters.", 5_50, 300),
    ("Pour-over kettle", "Gooseneck, 1 litre.", 39_00, 25),
    ("Burr grinder", "More than a new wallet holds: try it to see a payment declined.", 149_00, 10),
];

/// Seeds the demo catalog, retrying while product-service is still starting; returns how
/// many products it added. A failure is logged, not fatal: the platform works without demo
/// data.
pub async fn demo_catalog_when_up(product_addr: &str) -> usize {
    let mut attempt = 0;
    loop {
        match demo_catalog(product_addr).await {
            Ok(added) => {
                if added > 0 {
                    tracing::info!(products = added, "demo catalog added");
                }
                return added;
            }
            Err(e) if attempt < 20 => {
                attempt += 1;
                tracing::debug!("demo catalog not added yet: {e:#}");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                tracing::warn!("could not add the demo catalog: {e:#}");
                return 0;
            }
        }
    }
}

/// Adds the demo products when the catalog is empty; returns how many it added.
pub async fn demo_catalog(product_addr: &str) -> anyhow::Result<usize> {
    let channel = agora_kit::grpc::lazy_channel(product_addr)?;
    let mut client = ProductServiceClient::new(channel);
    // The all-in-one process is its own operator, so it acts as an administrator here.
    let operator = Caller::admin("agora-seed");
    let existing =
        client.list_products(operator.request(ListProductsRequest { page_size: 1, page_token: String::new() }));
    if !existing.await?.into_inner().products.is_empty() {
        return Ok(0);
    }
    for (name, description, cents, stock) in DEMO {
        let request = CreateProductRequest {
            name: (*name).to_owned(),
            description: (*description).to_owned(),
            price: Some(Money { currency_code: "USD".to_owned(), amount_minor: *cents }),
            stock: *stock,
        };
        client.create_product(operator.request(request)).await?;
    }
    Ok(DEMO.len())
}

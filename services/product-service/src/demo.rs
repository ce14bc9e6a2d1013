//! The demo catalog: what `agora all` (and `agora product-service --seed-demo`) puts in an
//! empty catalog, so that a first `curl` finds something to order. Prices fit the opening
//! wallet balance, except one that shows a declined payment.
//!
//! It is written to the service's own database before the service serves: no call crosses the
//! network, so it works the same under mutual TLS, where creating products is the gateway's
//! alone.

use agora_kit::money::Money;

use crate::{Error, domain::NewProduct, store::Store};

/// (name, description, price in cents, stock)
const DEMO: &[(&str, &str, i64, i64)] = &[
    ("Espresso beans, 1 kg", "Single-origin, medium roast.", 24_50, 120),
    ("Ceramic mug", "350 ml, dishwasher safe.", 12_00, 80),
    ("Paper filters (100)", "Size 02 cone filters.", 5_50, 300),
    ("Pour-over kettle", "Gooseneck, 1 litre.", 39_00, 25),
    ("Burr grinder", "More than a new wallet holds: try it to see a payment declined.", 149_00, 10),
];

/// Adds the demo products when the catalog is empty; returns how many it added. Two
/// instances seeding one empty database at once would both add them: a deployment seeds from
/// one instance (`make up` does from its first).
pub async fn seed(store: &Store) -> Result<usize, Error> {
    let (existing, _) = store.list(None, 1).await?;
    if !existing.is_empty() {
        return Ok(0);
    }
    for (name, description, cents, stock) in DEMO {
        let price = Money::new("USD", *cents).expect("the demo prices are valid");
        let new = NewProduct { name: (*name).to_owned(), description: (*description).to_owned(), price, stock: *stock };
        store.create(new).await?;
    }
    Ok(DEMO.len())
}

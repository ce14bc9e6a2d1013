//! Placing an order, across three services:
//! 1. the buyer must exist (user-service);
//! 2. stock is reserved and priced, idempotently per order id (product-service);
//! 3. the order and `OrderPlaced` are written in one transaction (this service).
//!
//! With an idempotency key the order id is derived from (user, key), so a retry after a
//! failure at any step reuses the same reservation and finds the same order.

use agora_discovery::Balanced;
use agora_kit::{id, identity::Caller, patience::patiently, time::now_millis};
use agora_proto::{
    product::{ReservationItem, ReserveStockRequest, product_service_client::ProductServiceClient},
    user::{GetUserRequest, user_service_client::UserServiceClient},
};
use tonic::Code;

use crate::{
    Error,
    domain::{self, Order, OrderLine, OrderRequest, OrderStatus},
    store::Store,
};

#[derive(Debug, Clone)]
pub struct Placer {
    store: Store,
    users: UserServiceClient<Balanced>,
    products: ProductServiceClient<Balanced>,
}

impl Placer {
    pub fn new(store: Store, users: Balanced, products: Balanced) -> Self {
        Self { store, users: UserServiceClient::new(users), products: ProductServiceClient::new(products) }
    }

    pub async fn place(&self, user_id: &str, request: OrderRequest) -> Result<Order, Error> {
        let fingerprint = request.fingerprint();
        let order_id = match &request.key {
            Some(key) => id::derived_id("order", &format!("{user_id}\n{}", key.as_str())),
            None => id::new_id(),
        };
        // Both database steps are safe to repeat (a read; an insert keyed by the order id), so
        // they wait out a failover of the database rather than fail the order.
        let away = Error::database_unavailable;
        if let Some((existing, stored)) = patiently(away, || self.store.get_with_fingerprint(&order_id)).await? {
            return same_request(existing, &stored, &fingerprint, &request);
        }

        self.check_user(user_id).await?;
        let lines = self.reserve(&order_id, &request).await?;
        let total = match domain::total(&lines) {
            Ok(total) => total,
            Err(e) => {
                self.release(&order_id).await;
                return Err(Error::Total(e.to_string()));
            }
        };
        let now = now_millis();
        let order = Order {
            id: order_id.clone(),
            user_id: user_id.to_owned(),
            lines,
            total,
            status: OrderStatus::PendingPayment,
            cancel_reason: String::new(),
            created_at: now,
            updated_at: now,
        };
        let key = request.key.as_ref().map(|k| k.as_str());
        match patiently(away, || self.store.insert(&order, key, &fingerprint)).await {
            Ok((stored, stored_fingerprint)) => {
                tracing::info!(order_id = %stored.id, total = %stored.total, "order placed");
                same_request(stored, &stored_fingerprint, &fingerprint, &request)
            }
            Err(e) => {
                // Without a key nobody can retry into this reservation: give the stock back.
                // With a key the client's retry reuses it.
                if request.key.is_none() {
                    self.release(&order_id).await;
                }
                Err(e)
            }
        }
    }

    async fn check_user(&self, user_id: &str) -> Result<(), Error> {
        let mut users = self.users.clone();
        match users.get_user(Caller::service().request(GetUserRequest { id: user_id.to_owned() })).await {
            Ok(_) => Ok(()),
            Err(status) if status.code() == Code::NotFound => Err(Error::UnknownUser(user_id.to_owned())),
            Err(status) => Err(Error::upstream("user-service", status)),
        }
    }

    async fn reserve(&self, order_id: &str, request: &OrderRequest) -> Result<Vec<OrderLine>, Error> {
        let mut products = self.products.clone();
        let items = request
            .lines
            .iter()
            .map(|(product_id, quantity)| ReservationItem {
                product_id: product_id.clone(),
                quantity: quantity.get(),
                unit_price: None,
            })
            .collect();
        let reservation = products
            .reserve_stock(Caller::service().request(ReserveStockRequest { order_id: order_id.to_owned(), items }))
            .await
            .map_err(|status| Error::upstream("product-service", status))?
            .into_inner();
        reservation
            .items
            .into_iter()
            .map(|item| {
                let unit_price = agora_kit::money::Money::from_proto(item.unit_price)
                    .map_err(|e| anyhow::anyhow!("product-service returned a bad price: {e}"))?;
                Ok(OrderLine { product_id: item.product_id, quantity: item.quantity, unit_price })
            })
            .collect()
    }

    /// Best-effort compensation; a failure is logged, and the sweeper-driven cancel or an
    /// operator settles the rest.
    async fn release(&self, order_id: &str) {
        let mut products = self.products.clone();
        let request = agora_proto::product::ReleaseReservationRequest { order_id: order_id.to_owned() };
        if let Err(status) = products.release_reservation(Caller::service().request(request)).await {
            tracing::warn!(%order_id, error = %status.message(), "could not release the reservation");
        }
    }
}

/// A stored order answers a retry only when the retry asked for the same basket.
fn same_request(order: Order, stored: &str, fingerprint: &str, request: &OrderRequest) -> Result<Order, Error> {
    if stored == fingerprint {
        Ok(order)
    } else {
        Err(Error::KeyReused(request.key.as_ref().map(|k| k.as_str().to_owned()).unwrap_or_default()))
    }
}

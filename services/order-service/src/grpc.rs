//! The gRPC edge of order-service.

use agora_kit::{identity::Caller, page};
use agora_proto::order::{
    self as pb, CancelOrderRequest, CreateOrderRequest, GetOrderRequest, ListOrdersRequest, ListOrdersResponse,
    order_service_server::OrderService,
};
use tonic::{Request, Response, Status};

use crate::{
    Error,
    domain::{Order, OrderRequest, OrderStatus, ParseError},
    placing::Placer,
    store::{Store, Transition},
};

/// Metadata the gateway fills from the `Idempotency-Key` HTTP header.
pub use agora_kit::methods::IDEMPOTENCY_KEY;

/// Why an order cancelled by its owner is cancelled.
pub const CANCELLED_BY_CUSTOMER: &str = "cancelled by customer";

#[derive(Debug, Clone)]
pub struct OrderApi {
    store: Store,
    placer: Placer,
}

impl OrderApi {
    pub fn new(store: Store, placer: Placer) -> Self {
        Self { store, placer }
    }

    /// The order, if the caller may see it; `NotFound` for another user's, as for an unknown id.
    async fn owned(&self, caller: &Caller, raw_id: &str) -> Result<Order, Error> {
        let id = agora_kit::id::parse_id("id", raw_id).map_err(|e| ParseError::Field(e.to_string()))?;
        let order = self.store.get(&id).await?.ok_or_else(|| Error::NotFound(id.clone()))?;
        // Another user's order answers as one that does not exist.
        if caller.may_see(&format!("order {id}"), &order.user_id) { Ok(order) } else { Err(Error::NotFound(id)) }
    }
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    async fn create_order(&self, request: Request<CreateOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user_id = caller.user_id()?.to_owned();
        // A header that is there must be a key: dropping it would make a retry a second order.
        let header_key = request
            .metadata()
            .get(IDEMPOTENCY_KEY)
            .map(|v| {
                v.to_str().ok().filter(|k| !k.is_empty()).map(str::to_owned).ok_or_else(|| {
                    Status::invalid_argument("the Idempotency-Key header must be 1 to 255 visible ASCII characters")
                })
            })
            .transpose()?;
        let req = request.into_inner();
        let key = Some(req.idempotency_key.as_str()).filter(|k| !k.is_empty()).or(header_key.as_deref());
        let parsed =
            OrderRequest::parse(req.items.into_iter().map(|i| (i.product_id, i.quantity)), key).map_err(Error::from)?;
        Ok(Response::new(to_proto(self.placer.place(&user_id, parsed).await?)))
    }

    async fn get_order(&self, request: Request<GetOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        Ok(Response::new(to_proto(self.owned(&caller, &request.get_ref().id).await?)))
    }

    async fn list_orders(&self, request: Request<ListOrdersRequest>) -> Result<Response<ListOrdersResponse>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let user_id = caller.user_id()?.to_owned();
        let req = request.into_inner();
        let size = page::page_size(req.page_size).map_err(|e| Error::from(ParseError::Field(e.to_string())))?;
        let before = page::decode_token(&req.page_token).map_err(|e| Error::from(ParseError::Field(e.to_string())))?;
        let (orders, more) = self.store.list_for_user(&user_id, before.as_deref(), size).await?;
        let next_page_token = page::next_token(more, orders.last().map(|last| last.id.as_str()));
        Ok(Response::new(ListOrdersResponse { orders: orders.into_iter().map(to_proto).collect(), next_page_token }))
    }

    async fn cancel_order(&self, request: Request<CancelOrderRequest>) -> Result<Response<pb::Order>, Status> {
        let caller = Caller::from_metadata(request.metadata())?;
        let order = self.owned(&caller, &request.get_ref().id).await?;
        let order = match self.store.cancel(&order.id, CANCELLED_BY_CUSTOMER).await? {
            Transition::Applied(order) => {
                tracing::info!(order_id = %order.id, "order cancelled by its owner");
                self.store.get(&order.id).await?.unwrap_or(order)
            }
            Transition::Unchanged(order) if order.status == OrderStatus::Paid => {
                return Err(Error::AlreadyPaid(order.id).into());
            }
            // Already cancelled: cancelling again is a no-op.
            Transition::Unchanged(order) => order,
        };
        Ok(Response::new(to_proto(order)))
    }
}

fn to_proto(order: Order) -> pb::Order {
    let status = match order.status {
        OrderStatus::PendingPayment => pb::OrderStatus::PendingPayment,
        OrderStatus::Paid => pb::OrderStatus::Paid,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
    };
    pb::Order {
        id: order.id,
        user_id: order.user_id,
        items: order
            .lines
            .into_iter()
            .map(|l| pb::OrderItem {
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price: Some(l.unit_price.to_proto()),
            })
            .collect(),
        total: Some(order.total.to_proto()),
        status: status as i32,
        cancel_reason: order.cancel_reason,
        created_at: Some(agora_kit::time::to_timestamp(order.created_at)),
        updated_at: Some(agora_kit::time::to_timestamp(order.updated_at)),
    }
}

//! The gRPC edge of product-service.

use agora_kit::{
    identity::{Caller, Role},
    money::Money,
    page,
};
use agora_proto::product::{
    self as pb, CommitReservationRequest, CreateProductRequest, GetProductRequest, ListProductsRequest,
    ListProductsResponse, ReleaseReservationRequest, ReserveStockRequest, UpdateProductRequest,
    product_service_server::ProductService,
};
use tonic::{Request, Response, Status};

use crate::{
    Error,
    domain::{NewProduct, ParseError, Product, ProductPatch, Reservation, ReservationRequest, ReservationState},
    store::Store,
};

#[derive(Debug, Clone)]
pub struct ProductApi {
    store: Store,
}

impl ProductApi {
    pub fn new(store: Store) -> Self {
        Self { store }
    }
}

fn require_admin(caller: &Caller) -> Result<(), Error> {
    if caller.is_admin() { Ok(()) } else { Err(Error::PermissionDenied("only admins may change the catalog")) }
}

/// Reservations are for other services (order-service) and admins, never end users.
fn require_service(caller: &Caller) -> Result<(), Error> {
    if matches!(caller.role(), Role::Service | Role::Admin) {
        Ok(())
    } else {
        Err(Error::PermissionDenied("stock reservations are internal to Agora"))
    }
}

fn price(pb: Option<agora_proto::Money>) -> Result<Money, String> {
    Money::from_proto(pb).map_err(|e| e.to_string())
}

fn product_id(raw: &str) -> Result<String, Error> {
    agora_kit::id::parse_id("id", raw).map_err(|e| ParseError::Field(e.to_string()).into())
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn create_product(&self, request: Request<CreateProductRequest>) -> Result<Response<pb::Product>, Status> {
        require_admin(&Caller::from_metadata(request.metadata())?)?;
        let req = request.into_inner();
        let new = NewProduct::parse(&req.name, &req.description, price(req.price), req.stock).map_err(Error::from)?;
        let product = self.store.create(new).await?;
        tracing::info!(product_id = %product.id, "product created");
        Ok(Response::new(to_proto(product)))
    }

    async fn update_product(&self, request: Request<UpdateProductRequest>) -> Result<Response<pb::Product>, Status> {
        require_admin(&Caller::from_metadata(request.metadata())?)?;
        let req = request.into_inner();
        let id = product_id(&req.id)?;
        let patch = ProductPatch::parse(
            req.name.as_deref(),
            req.description.as_deref(),
            req.price.map(|p| price(Some(p))),
            req.stock,
        )
        .map_err(Error::from)?;
        Ok(Response::new(to_proto(self.store.update(&id, patch).await?)))
    }

    async fn get_product(&self, request: Request<GetProductRequest>) -> Result<Response<pb::Product>, Status> {
        let id = product_id(&request.get_ref().id)?;
        Ok(Response::new(to_proto(self.store.get(&id).await?)))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let req = request.into_inner();
        let size = page::page_size(req.page_size).map_err(|e| ParseError::Field(e.to_string())).map_err(Error::from)?;
        let after =
            page::decode_token(&req.page_token).map_err(|e| ParseError::Field(e.to_string())).map_err(Error::from)?;
        let (products, more) = self.store.list(after.as_deref(), size).await?;
        let next_page_token = page::next_token(more, products.last().map(|last| last.id.as_str()));
        Ok(Response::new(ListProductsResponse {
            products: products.into_iter().map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn reserve_stock(&self, request: Request<ReserveStockRequest>) -> Result<Response<pb::Reservation>, Status> {
        require_service(&Caller::from_metadata(request.metadata())?)?;
        let req = request.into_inner();
        let parsed =
            ReservationRequest::parse(&req.order_id, req.items.into_iter().map(|i| (i.product_id, i.quantity)))
                .map_err(Error::from)?;
        let reservation = self.store.reserve(&parsed).await?;
        tracing::info!(order_id = %reservation.order_id, lines = reservation.lines.len(), "stock reserved");
        Ok(Response::new(reservation_to_proto(reservation)))
    }

    async fn commit_reservation(
        &self,
        request: Request<CommitReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        require_service(&Caller::from_metadata(request.metadata())?)?;
        let order_id = order_id(&request.get_ref().order_id)?;
        Ok(Response::new(reservation_to_proto(self.store.commit(&order_id).await?)))
    }

    async fn release_reservation(
        &self,
        request: Request<ReleaseReservationRequest>,
    ) -> Result<Response<pb::Reservation>, Status> {
        require_service(&Caller::from_metadata(request.metadata())?)?;
        let order_id = order_id(&request.get_ref().order_id)?;
        Ok(Response::new(reservation_to_proto(self.store.release(&order_id).await?)))
    }
}

fn order_id(raw: &str) -> Result<String, Error> {
    agora_kit::id::parse_id("order_id", raw).map_err(|e| ParseError::Field(e.to_string()).into())
}

fn to_proto(p: Product) -> pb::Product {
    pb::Product {
        id: p.id,
        name: p.name,
        description: p.description,
        price: Some(p.price.to_proto()),
        stock: p.stock,
        created_at: Some(agora_kit::time::to_timestamp(p.created_at)),
        updated_at: Some(agora_kit::time::to_timestamp(p.updated_at)),
    }
}

fn reservation_to_proto(r: Reservation) -> pb::Reservation {
    let state = match r.state {
        ReservationState::Reserved => pb::ReservationState::Reserved,
        ReservationState::Committed => pb::ReservationState::Committed,
        ReservationState::Released => pb::ReservationState::Released,
    };
    pb::Reservation {
        order_id: r.order_id,
        state: state as i32,
        items: r
            .lines
            .into_iter()
            .map(|l| pb::ReservationItem {
                product_id: l.product_id,
                quantity: l.quantity,
                unit_price: Some(l.unit_price.to_proto()),
            })
            .collect(),
    }
}

//! The floor `make bench` measures product-service against: a bare tonic server that answers
//! `GetProduct` and `ListProducts` with one fixed product, with nothing of the service stack
//! around it (no database, trace context, metrics or logs). What product-service spends per call
//! above this server's cost is what its layers cost.
//!
//! ```sh
//! cargo run --release -p product-service --example bare -- 127.0.0.1:50099
//! ```

use agora_proto::agora::{
    product::v1::{
        CommitReservationRequest, CreateProductRequest, GetProductRequest, ListProductsRequest, ListProductsResponse,
        Product, ReleaseReservationRequest, Reservation, ReserveStockRequest, UpdateProductRequest,
        product_service_server::{ProductService, ProductServiceServer},
    },
    r#type::v1::Money,
};
use tonic::{Request, Response, Status, transport::server::TcpIncoming};

/// Answers reads with the same product, refuses writes.
struct Bare {
    product: Product,
}

#[tonic::async_trait]
impl ProductService for Bare {
    async fn create_product(&self, _: Request<CreateProductRequest>) -> Result<Response<Product>, Status> {
        Err(Status::unimplemented("the bare server only reads"))
    }

    async fn update_product(&self, _: Request<UpdateProductRequest>) -> Result<Response<Product>, Status> {
        Err(Status::unimplemented("the bare server only reads"))
    }

    async fn get_product(&self, _: Request<GetProductRequest>) -> Result<Response<Product>, Status> {
        Ok(Response::new(self.product.clone()))
    }

    async fn list_products(&self, _: Request<ListProductsRequest>) -> Result<Response<ListProductsResponse>, Status> {
        Ok(Response::new(ListProductsResponse { products: vec![self.product.clone()], next_page_token: String::new() }))
    }

    async fn reserve_stock(&self, _: Request<ReserveStockRequest>) -> Result<Response<Reservation>, Status> {
        Err(Status::unimplemented("the bare server only reads"))
    }

    async fn commit_reservation(&self, _: Request<CommitReservationRequest>) -> Result<Response<Reservation>, Status> {
        Err(Status::unimplemented("the bare server only reads"))
    }

    async fn release_reservation(
        &self,
        _: Request<ReleaseReservationRequest>,
    ) -> Result<Response<Reservation>, Status> {
        Err(Status::unimplemented("the bare server only reads"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50099".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let now = prost_types::Timestamp { seconds: 1_790_000_000, nanos: 0 };
    let product = Product {
        id: "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d".to_owned(),
        name: "Espresso cup".to_owned(),
        description: "A 90 ml porcelain cup, the size of the products the catalog is seeded with.".to_owned(),
        price: Some(Money { currency_code: "USD".to_owned(), amount_minor: 1250 }),
        stock: 1_000_000,
        created_at: Some(now),
        updated_at: Some(now),
    };
    eprintln!("bare product server on {}", listener.local_addr()?);
    tonic::transport::Server::builder()
        .add_service(ProductServiceServer::new(Bare { product }))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), async {
            tokio::signal::ctrl_c().await.ok();
        })
        .await?;
    Ok(())
}

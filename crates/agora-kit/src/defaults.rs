//! Where each role listens unless told otherwise, written once: the flags' defaults, the
//! gateway's and order-service's default backends and docs/configuration.md all say these (a
//! test in the `agora` binary holds its help text and the docs to them).

pub const GATEWAY_ADDR: &str = "127.0.0.1:8080";
pub const USER_ADDR: &str = "127.0.0.1:50051";
pub const PRODUCT_ADDR: &str = "127.0.0.1:50052";
pub const ORDER_ADDR: &str = "127.0.0.1:50053";
pub const PAYMENT_ADDR: &str = "127.0.0.1:50054";

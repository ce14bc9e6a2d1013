//! The names of the roles: on the command line, in Consul and in traces. A leaf: the flags
//! ([`crate::cli`]) and the running of a role ([`crate::roles`]) both read it.

pub const USER: &str = "user-service";
pub const PRODUCT: &str = "product-service";
pub const ORDER: &str = "order-service";
pub const PAYMENT: &str = "payment-service";
pub const GATEWAY: &str = "gateway";

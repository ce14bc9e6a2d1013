//! Agora's gRPC contracts, generated from `proto/` at build time.
//!
//! Module nesting mirrors the protobuf packages because generated code refers to other
//! packages by relative path (`super::super::type::v1::Money`). Short aliases (`user`,
//! `product`, …) are what the rest of the workspace imports.
//!
//! # Layout
//! - [`agora`], [`google`]: the generated packages.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors, custom options included, for server
//!   reflection and for the gateway's transcoder.

#![allow(missing_docs, missing_debug_implementations, clippy::all, clippy::pedantic)]

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

pub mod agora {
    pub mod api {
        pub mod v1 {
            tonic::include_proto!("agora.api.v1");
        }
    }
    pub mod r#type {
        pub mod v1 {
            // `type` is a keyword, so prost names the file with its raw identifier.
            include!(concat!(env!("OUT_DIR"), "/agora.r#type.v1.rs"));
        }
    }
    pub mod user {
        pub mod v1 {
            tonic::include_proto!("agora.user.v1");
        }
    }
    pub mod product {
        pub mod v1 {
            tonic::include_proto!("agora.product.v1");
        }
    }
    pub mod order {
        pub mod v1 {
            tonic::include_proto!("agora.order.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("agora.payment.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("agora.events.v1");
        }
    }
}

pub use agora::events::v1 as events;
pub use agora::order::v1 as order;
pub use agora::payment::v1 as payment;
pub use agora::product::v1 as product;
pub use agora::r#type::v1::Money;
pub use agora::user::v1 as user;

/// The encoded `FileDescriptorSet` of every Agora proto and its imports, with custom method
/// options (`google.api.http`, `agora.api.v1.policy`) kept as extension bytes.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/agora_descriptor.bin"));

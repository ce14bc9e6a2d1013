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

/// `pub mod NAME { pub mod v1 { … } }` for each `agora.NAME.v1` package.
macro_rules! v1_packages {
    ($($name:ident => $package:literal),+ $(,)?) => {
        $(
            pub mod $name {
                pub mod v1 {
                    tonic::include_proto!($package);
                }
            }
        )+
    };
}

pub mod agora {
    pub mod r#type {
        pub mod v1 {
            // `type` is a keyword, so prost names the file with its raw identifier.
            include!(concat!(env!("OUT_DIR"), "/agora.r#type.v1.rs"));
        }
    }

    v1_packages! {
        api => "agora.api.v1",
        user => "agora.user.v1",
        product => "agora.product.v1",
        order => "agora.order.v1",
        payment => "agora.payment.v1",
        events => "agora.events.v1",
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

#[cfg(test)]
mod tests {
    use prost::Message;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_descriptor_set_keeps_custom_method_options() {
        // The REST path lives only in the `google.api.http` extension of CancelOrder's options.
        assert!(contains(super::FILE_DESCRIPTOR_SET, b"/v1/orders/{id}:cancel"));
        // Decoding into prost-types drops extensions: exactly what the encoded set avoids.
        let decoded = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET).unwrap();
        assert!(!contains(&decoded.encode_to_vec(), b"/v1/orders/{id}:cancel"));
        let files: Vec<_> = decoded.file.iter().filter_map(|f| f.name.as_deref()).collect();
        for expected in ["agora/order/v1/order.proto", "agora/events/v1/events.proto", "google/api/http.proto"] {
            assert!(files.contains(&expected), "{expected} missing from {files:?}");
        }
    }
}

//! One generic gRPC client for every backend method: requests and responses are
//! `DynamicMessage`s, encoded and decoded by the method's descriptors.

use std::{collections::BTreeMap, time::Duration};

use bytes::Buf;
use prost::Message as _;
use prost_reflect::{DynamicMessage, MessageDescriptor};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

use agora_discovery::{Balanced, Resolver};

use crate::api::Binding;

/// A balanced channel per backend service, by the service's full protobuf name.
#[derive(Debug, Clone, Default)]
pub struct Backends {
    channels: BTreeMap<String, (String, Balanced)>,
}

impl Backends {
    /// Channels to `targets` (service full name → target, see [`Resolver::channel`]). They
    /// connect on first use, so the gateway starts before its backends and recovers when
    /// they return.
    pub fn connect(targets: &BTreeMap<String, String>, resolver: &Resolver) -> anyhow::Result<Self> {
        let mut channels = BTreeMap::new();
        for (service, target) in targets {
            let channel = resolver
                .channel(&agora_kit::callers::role_of(service), target)
                .map_err(|e| anyhow::anyhow!("backend {service}: {e}"))?;
            channels.insert(service.clone(), (target.clone(), channel));
        }
        Ok(Self { channels })
    }

    pub fn channel(&self, service: &str) -> Option<&Balanced> {
        self.channels.get(service).map(|(_, channel)| channel)
    }

    /// Service name, target and channel of every backend.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Balanced)> {
        self.channels.iter().map(|(service, (address, channel))| (service.as_str(), address.as_str(), channel))
    }

    /// Calls `binding`'s method with `request`; `timeout` becomes the call's `grpc-timeout`.
    pub async fn call(
        &self,
        binding: &Binding,
        request: tonic::Request<DynamicMessage>,
    ) -> Result<tonic::Response<DynamicMessage>, Status> {
        let channel = self
            .channel(binding.service())
            .ok_or_else(|| Status::unavailable(format!("no backend is configured for {}", binding.service())))?;
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.map_err(|e| Status::unavailable(format!("{} is unavailable: {e}", binding.service())))?;
        let path = binding.grpc_path.parse().expect("gRPC paths are valid URI paths");
        grpc.unary(request, path, DynamicCodec(binding.method.output())).await
    }
}

/// `grpc-timeout` wants whole units; a deadline shorter than a millisecond is already gone.
pub fn remaining(deadline: tokio::time::Instant) -> Option<Duration> {
    deadline.checked_duration_since(tokio::time::Instant::now()).filter(|d| *d >= Duration::from_millis(1))
}

/// Encodes any `DynamicMessage`; decodes into the given response type.
#[derive(Debug, Clone)]
pub struct DynamicCodec(pub MessageDescriptor);

impl Codec for DynamicCodec {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        DynamicDecoder(self.0.clone())
    }
}

#[derive(Debug)]
pub struct DynamicEncoder;

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(item.encoded_len());
        item.encode(dst).map_err(|e| Status::internal(format!("cannot encode the request: {e}")))
    }
}

#[derive(Debug)]
pub struct DynamicDecoder(MessageDescriptor);

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Status> {
        let message = DynamicMessage::decode(self.0.clone(), src.copy_to_bytes(src.remaining()))
            .map_err(|e| Status::internal(format!("the backend sent an undecodable response: {e}")))?;
        Ok(Some(message))
    }
}

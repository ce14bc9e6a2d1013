# syntax=docker/dockerfile:1
# One image for every role: `docker run agora gateway`, `agora user-service`, ... (`agora --help`).
#
# Build:  make docker-image      (or: docker build -t agora:0.0.0 .); without Docker, `make images`
#         writes the same root filesystem (scripts/rootfs.sh) as an OCI archive (scripts/image.sh).
#
# The runtime stage is distroless in the plain sense: the binary, the shared libraries it
# links (glibc's libc and libm, libgcc_s, OpenSSL's libssl and libcrypto, the loader), CA
# certificates and a passwd entry for the non-root user, on an empty base. No shell, no package manager.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
# librdkafka is built from source by the rdkafka crate (a C++ compiler, and OpenSSL's headers
# for its TLS and SASL); protobuf is compiled in Rust (protox), so no protoc.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends cmake g++ libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agora --bin agora \
 && cp target/release/agora /agora
# Exactly the libraries the binary needs, at their paths, plus certificates and the user.
RUN bash scripts/rootfs.sh /agora /rootfs

FROM scratch
COPY --from=build /rootfs/ /
USER 65532:65532
# The gateway's HTTP port and the services' gRPC ports; the role's flags choose.
EXPOSE 8080 50051 50052 50053 50054 9464
ENTRYPOINT ["/usr/local/bin/agora"]
CMD ["--help"]

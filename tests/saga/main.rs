//! order-service with the real user, product and payment services and the gateway, all
//! in-process (`agora::platform`) over gRPC on 127.0.0.1 and one in-process bus: every RPC's
//! success and error paths, and the order saga end to end. Each runs on SQLite and on
//! PostgreSQL.

mod platform;
mod rpcs;
mod saga;

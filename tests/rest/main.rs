//! End-to-end: real HTTP on 127.0.0.1:0 through the gateway to the four services running
//! in-process, as a REST client would use Agora.

mod access;
mod errors;
mod flow;
mod hostile;
mod layers;
mod platform;

//! `agora`: every Agora component in one binary, like Loki's or Mimir's `-target`.
//!
//! `agora` (or `agora all`) runs every service in one process on embedded defaults;
//! `agora <role>` runs one role. Every flag has an `AGORA_*` environment twin; see
//! `agora <role> --help`.
//!
//! # Layout
//! - `cli`: the flags of each role.
//! - `roles`: turning flags into a service config and running it.
//! - `all`: the all-in-one process.

mod all;
mod cli;
mod roles;

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    agora_kit::telemetry::init_logging();
    let shutdown = agora_kit::shutdown::on_signal();
    let result = match cli.command.unwrap_or_else(cli::Command::all_from_env) {
        cli::Command::All(args) => all::run(args, shutdown).await,
        cli::Command::UserService(args) => roles::user(args, shutdown).await,
        cli::Command::ProductService(args) => roles::product(args, shutdown).await,
        cli::Command::OrderService(args) => roles::order(args, shutdown).await,
        cli::Command::PaymentService(args) => roles::payment(args, shutdown).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("agora: {e:#}");
            ExitCode::FAILURE
        }
    }
}

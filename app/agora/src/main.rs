//! The `agora` binary; see the library's docs for the roles.

use std::process::ExitCode;

use agora::{all, cli, roles};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let command = cli.command.unwrap_or_else(cli::Command::all_from_env);
    // Clients, not roles: no telemetry, no signal handling.
    let command = match command {
        cli::Command::Trace(args) => return client("trace", agora::ops::trace::run(args).await),
        cli::Command::Check(args) => return client("check", agora::ops::check::run(args).await),
        cli::Command::Client(args) => return client("client", agora::ops::client::run(args).await),
        cli::Command::Loadgen(args) => return client("loadgen", agora_loadgen::run(args).await),
        cli::Command::Reconcile(args) => return client("reconcile", agora::ops::reconcile::run(args).await),
        cli::Command::CheckHistory(args) => return client("check-history", agora::ops::history::run(&args)),
        cli::Command::Certs(args) => return client("certs", agora::ops::certs::run(&args)),
        role => role,
    };
    let telemetry = match agora_kit::telemetry::init(command.service_name()) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("agora: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = agora_kit::shutdown::on_signal();
    let result = match command {
        cli::Command::All(args) => all::run(args, shutdown).await,
        cli::Command::Gateway(args) => roles::gateway(args, shutdown).await,
        cli::Command::UserService(args) => roles::user(args, shutdown).await,
        cli::Command::ProductService(args) => roles::product(args, shutdown).await,
        cli::Command::OrderService(args) => roles::order(args, shutdown).await,
        cli::Command::PaymentService(args) => roles::payment(args, shutdown).await,
        cli::Command::Trace(_)
        | cli::Command::Check(_)
        | cli::Command::Client(_)
        | cli::Command::Loadgen(_)
        | cli::Command::Reconcile(_)
        | cli::Command::CheckHistory(_)
        | cli::Command::Certs(_) => {
            unreachable!("clients returned above")
        }
    };
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    // Spans still in the batch and log lines still queued go out before the process ends.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn client(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("agora {name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

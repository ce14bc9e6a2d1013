//! `agora check-history FILE`: the checker of `agora_loadgen::checker` over a history file,
//! its verdict printed; any anomaly is a failure.

use agora_loadgen::{checker, history};
use anyhow::bail;

use crate::cli::CheckHistoryArgs;

pub fn run(args: &CheckHistoryArgs) -> anyhow::Result<()> {
    let entries = history::read(&args.file)?;
    if entries.is_empty() {
        bail!("{} holds no operation: was it written by `agora loadgen --history`?", args.file.display());
    }
    let verdict = checker::check(&entries);
    if args.json {
        let counts = verdict.counts();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"verdict": verdict, "counts": counts}))?);
    } else {
        print!("{}", verdict.report());
    }
    if !verdict.anomalies.is_empty() {
        bail!("{} anomalies in {}", verdict.anomalies.len(), args.file.display());
    }
    Ok(())
}

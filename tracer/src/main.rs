//! tracer: eBPF pin accounting for Linux. See README.md and docs/.

mod cli;
mod decode;
mod ebpf;
mod kernel;
mod latency;
mod ledger;
mod output;
mod plan;
mod record;
mod run;
mod screen;
mod stats;
mod tui;
mod vmstat;

use clap::Parser;

use crate::cli::{Cli, Command};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_target(false)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Check(args) => run::check(&args),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run::run(args, None))),
        Command::Record(args) => runtime().and_then(|rt| rt.block_on(run::run(args.run, Some(&args.output)))),
        Command::Report(args) => run::report(&args),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tracer: {e:#}");
            std::process::exit(1);
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

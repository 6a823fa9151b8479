//! tracer: eBPF pin accounting for Linux. See README.md and docs/.

// Functions stay short enough to read at once (clippy.toml sets the bound: 80 lines).
#![warn(clippy::too_many_lines)]

mod cli;
mod decode;
mod engine;
mod model;
mod probes;
mod record;
mod run;
mod sinks;
mod snapshot;
mod source;

use std::io::{IsTerminal, Write};

use clap::Parser;

use crate::{
    cli::{Cli, Command, Format},
    sinks::tui::logs::{self, HeldLogs},
};

/// Logs to stderr, or, under the dashboard, held back (sinks/tui/logs.rs): a line on stderr
/// would draw over it. They are printed to stderr when the command ends.
fn init_logging(dashboard: bool) {
    let mut logger = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"));
    logger.format_target(false);
    if dashboard {
        logger.target(env_logger::Target::Pipe(Box::new(HeldLogs)));
    }
    logger.init();
}

fn main() {
    let mut cli = Cli::parse();
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let dashboard = match &mut cli.command {
        Command::Run(args) => {
            args.resolve_format(terminal);
            args.view.format == Format::Tui
        }
        Command::Record(args) => {
            args.run.resolve_format(terminal);
            args.run.view.format == Format::Tui
        }
        Command::Report(args) => {
            args.view.resolve_format();
            false
        }
        _ => false,
    };
    init_logging(dashboard);
    let result = run_command(cli);
    let held = logs::take();
    let _ = std::io::stderr().write_all(&held);
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("tracer: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run_command(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Check(args) => run::check(&args),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run::run(args, None))),
        Command::Record(args) => runtime().and_then(|rt| rt.block_on(run::run(args.run, Some(&args.output)))),
        Command::Report(args) => runtime().and_then(|rt| rt.block_on(run::report(&args))),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "tracer",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
        Command::Man => clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut std::io::stdout())
            .map(|()| 0)
            .map_err(Into::into),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

//! `rebilld`: parse the command line, load the configuration and logging, and hand over to the
//! library. With no command it is the daemon.

use std::process::ExitCode;

use clap::Parser;
use rebill::cli::exit::ExitStatus;
use rebill::cli::{self, Cli, Ctx};
use rebill::config::Config;
use rebill::store::Store;

fn main() -> ExitCode {
    cli::exit_quietly_on_broken_pipe();
    let args = Cli::parse();
    let config = match Config::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rebilld: {e}");
            return ExitCode::from(ExitStatus::Config.code());
        }
    };
    let format = args.log_format.unwrap_or(config.log.format);
    rebill::telemetry::init(format, &config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rebilld: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rebilld: {e:#}");
            ExitCode::from(cli::exit_code(&e))
        }
    }
}

async fn run(args: Cli, config: Config) -> anyhow::Result<()> {
    // These make no use of the configured database: they must not create or touch it.
    match args.command {
        Some(cli::Command::Demo(a)) => return cli::demo::demo(&config, a).await,
        Some(cli::Command::Sandbox(a)) => return cli::demo::sandbox(a).await,
        Some(cli::Command::Completions { shell }) => {
            cli::print_completions(shell);
            return Ok(());
        }
        Some(cli::Command::Man) => return cli::print_man(),
        // A bench makes its own databases (a temporary directory, or `--postgres-url`).
        Some(cli::Command::Bench(c)) => return cli::cdr::bench(&config, c, args.json).await,
        _ => {}
    }
    let store = Store::open(&config.database).await?;
    let ctx = Ctx {
        actor: Ctx::actor_from(args.actor.as_deref()),
        json: args.json,
        store,
        config,
        clock: std::sync::Arc::new(rebill::clock::SystemClock),
    };
    let result = match args.command {
        _ if args.resync.resync => cli::billing::resync(&ctx, args.resync).await,
        Some(cmd) => cli::run(&ctx, cmd).await,
        None => {
            rebill::daemon::run(args.config.clone(), ctx.config.clone(), ctx.store.clone()).await
        }
    };
    ctx.store.close().await;
    result
}

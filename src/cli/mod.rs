//! The command line: one module per command group. Each command parses its arguments into domain
//! types, calls the store or a pipeline function, and prints a readable table or, with `--json`,
//! JSON for scripts. `main.rs` only parses, loads the config and dispatches here.

pub mod assign_import;
pub mod autotask;
pub mod backup;
pub mod bench;
pub mod bench_cycle;
pub mod billing;
pub mod cdr;
pub mod customer;
pub mod demo;
pub mod exit;
pub mod extension;
pub mod import;
pub mod invoice;
pub mod item;
pub mod outbox;
pub mod output;
pub mod service;
pub mod status;
pub mod xero;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::store::{Actor, Store};

#[derive(Debug, Parser)]
#[command(
    name = "rebilld",
    version,
    about = "Rebills wholesale VoIP and hosted-network services through Autotask and Xero.\n\nWith no command, runs the daemon.",
    after_long_help = exit::EXIT_STATUS_HELP
)]
pub struct Cli {
    /// Configuration file [default: ./rebill.toml, then /etc/rebill/rebill.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Who is making the change, for the audit log [default: $USER]
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// Print JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Log format [default: log.format]
    #[arg(long, global = true, value_name = "FORMAT", value_enum)]
    pub log_format: Option<crate::telemetry::LogFormat>,
    #[command(flatten)]
    pub resync: billing::ResyncArgs,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit
    Migrate,
    /// Write a consistent, checked copy of the SQLite database to PATH (a new file), while the
    /// daemon runs; for PostgreSQL use pg_dump
    Backup {
        /// Where to write the copy (must not exist)
        path: PathBuf,
    },
    /// Customers: add, import, list, show, enable, disable, link to Xero or Autotask
    #[command(subcommand)]
    Customer(customer::CustomerCmd),
    /// The purchased-services catalogue and assignments
    #[command(subcommand)]
    Service(service::ServiceCmd),
    /// Once-off and recurring items
    #[command(subcommand)]
    Item(item::ItemCmd),
    /// The audit log of every change
    Audit(item::AuditArgs),
    /// Call detail records: import and re-rate
    #[command(subcommand)]
    Cdr(cdr::CdrCmd),
    /// The VoIP service summary of one month
    Summary(cdr::SummaryArgs),
    /// Benchmarks (synthetic data)
    #[command(subcommand)]
    Bench(cdr::BenchCmd),
    /// Xero: connect (OAuth2) and check the connection
    #[command(subcommand)]
    Xero(xero::XeroCmd),
    /// Autotask: look up contracts, products and material codes
    #[command(subcommand)]
    Autotask(autotask::AutotaskCmd),
    /// Bill a period now (the daemon does this on schedule)
    Run(billing::RunArgs),
    /// Extensions (service users) and their kinds, which a rate plan can price per month
    #[command(subcommand)]
    Extension(extension::ExtensionCmd),
    /// Push what is due in the outbox once
    Push,
    /// The outbox of remote actions, one at a time: list, retry, skip
    #[command(subcommand)]
    Outbox(outbox::OutboxCmd),
    /// Invoices: list, show, export
    #[command(subcommand)]
    Invoice(billing::InvoiceCmd),
    /// Compare the ledger with Xero and Autotask; non-zero exit on any difference
    Reconcile(billing::ReconcileArgs),
    /// Last runs, pending and failed remote actions, the next scheduled run
    Status,
    /// The main job on the embedded default: sample data, local stand-ins, a billing run, reports
    Demo(demo::DemoArgs),
    /// Serve the local Autotask and Xero stand-ins (for a staging daemon)
    Sandbox(demo::SandboxArgs),
    /// Print shell completions
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}

/// What every command gets: the configuration, the store, who is acting, and the output mode.
pub struct Ctx {
    pub config: Config,
    pub store: Store,
    pub actor: Actor,
    pub json: bool,
    /// Where "now" comes from for every default a command takes from the date (the current
    /// period, an assignment's first day, a price change's day): the system clock at the binary.
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl Ctx {
    /// The billing pipeline on this command's store and configuration.
    pub async fn pipeline(&self) -> anyhow::Result<crate::pipeline::Pipeline> {
        Ok(
            crate::pipeline::Pipeline::from_config(self.store.clone(), self.config.clone())
                .await?
                .with_clock(self.clock.clone()),
        )
    }

    pub fn actor_from(flag: Option<&str>) -> Actor {
        match flag {
            Some(a) => Actor::new(a),
            None => Actor::new(std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
        }
    }
}

/// Runs one (non-daemon) command. Errors carry a message for the user; `main` prints them.
pub async fn run(ctx: &Ctx, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Migrate => {
            ctx.store.migrate().await?;
            output::say(
                ctx,
                "database is up to date",
                serde_json::json!({"migrated": true}),
            );
            Ok(())
        }
        Command::Backup { path } => backup::backup(ctx, &path).await,
        Command::Customer(c) => customer::run(ctx, c).await,
        Command::Service(c) => service::run(ctx, c).await,
        Command::Item(c) => item::run(ctx, c).await,
        Command::Audit(a) => item::audit(ctx, a).await,
        Command::Cdr(c) => cdr::run(ctx, c).await,
        Command::Summary(a) => cdr::summary(ctx, a).await,
        Command::Bench(c) => cdr::bench(&ctx.config, c, ctx.json).await,
        Command::Xero(c) => xero::run(ctx, c).await,
        Command::Autotask(c) => autotask::run(ctx, c).await,
        Command::Run(a) => billing::run_now(ctx, a).await,
        Command::Extension(c) => extension::run(ctx, c).await,
        Command::Push => billing::push(ctx).await,
        Command::Outbox(c) => outbox::run(ctx, c).await,
        Command::Invoice(c) => billing::invoice(ctx, c).await,
        Command::Reconcile(a) => billing::reconcile(ctx, a).await,
        Command::Status => status::status(ctx).await,
        Command::Demo(a) => demo::demo(&ctx.config, a).await,
        Command::Sandbox(a) => demo::sandbox(a).await,
        Command::Completions { shell } => {
            print_completions(shell);
            Ok(())
        }
        Command::Man => print_man(),
    }
}

/// The exit status for an error a command returned (see `exit`): by the error's type.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    exit::exit_status(e).code()
}

/// The exit status after stdout was closed by its reader (`rebilld … | head`): what a shell
/// reports for a command ended by SIGPIPE (128 + 13).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// A reader that stops reading (`rebilld invoice list | head`) is not a failure worth a panic and
/// a backtrace: `println!` panics on a closed stdout, so the panic hook ends the process quietly
/// instead, with the status a shell reports for SIGPIPE. Every other panic is reported as usual.
pub fn exit_quietly_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if is_broken_pipe_panic(text) {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        default(info)
    }));
}

/// The panic of `print!`/`println!` (or `eprint!`) when the reader of stdout (stderr) has gone.
fn is_broken_pipe_panic(text: &str) -> bool {
    (text.starts_with("failed printing to stdout") || text.starts_with("failed printing to stderr"))
        && text.contains("Broken pipe")
}

/// Shell completions generated from the CLI definition.
pub fn print_completions(shell: clap_complete::Shell) {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "rebilld", &mut buf);
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), &buf);
}

/// The man page generated from the CLI definition.
pub fn print_man() -> anyhow::Result<()> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            std::process::exit(EXIT_BROKEN_PIPE)
        }
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_broken_pipe_panic_of_print_is_silenced() {
        assert!(is_broken_pipe_panic(
            "failed printing to stdout: Broken pipe (os error 32)"
        ));
        assert!(!is_broken_pipe_panic(
            "failed printing to stdout: No space left on device (os error 28)"
        ));
        assert!(!is_broken_pipe_panic("index out of bounds"));
    }
}

//! `liftoff`: the server, the agent and the command-line client in one binary.

mod agent_health;
mod cmd;
mod connect;
mod input;
mod output;
mod signal;

use clap::{Parser, Subcommand};
use std::io::IsTerminal;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

/// Launch jobs on queues and run them with agents.
#[derive(Parser)]
#[command(name = "liftoff", version, about, propagate_version = true)]
struct Cli {
    /// Server URL [default: http://127.0.0.1:7434].
    #[arg(long, env = "LIFTOFF_BASE_URL", global = true, value_name = "URL")]
    base_url: Option<String>,

    /// API key; falls back to ./liftoff-data/admin.key when that file exists.
    #[arg(long, env = "LIFTOFF_API_KEY", hide_env_values = true, global = true, value_name = "KEY")]
    api_key: Option<String>,

    /// Entity whose queues, jobs and runs to use [default: default].
    #[arg(short, long, env = "LIFTOFF_ENTITY", global = true, value_name = "ENTITY")]
    entity: Option<String>,

    /// Also trust the CA certificates in FILE (PEM) for an https server URL: a server whose
    /// certificate a private CA issued.
    #[arg(long, env = "LIFTOFF_CA_CERT", global = true, value_name = "FILE")]
    ca_cert: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the Liftoff server.
    Server(cmd::server::ServerArgs),
    /// Create and inspect queues.
    #[command(subcommand)]
    Queue(cmd::queue::QueueCmd),
    /// Create and inspect jobs.
    #[command(subcommand)]
    Job(cmd::job::JobCmd),
    /// Put a job on a queue (or a directory, commit or image, made a job in
    /// the same step); prints the run-queue item id, or follows the run to its end.
    Launch(Box<cmd::launch::LaunchArgs>),
    /// Inspect, follow and stop runs.
    #[command(subcommand)]
    Run(cmd::run::RunCmd),
    /// Run an agent that claims and runs items from queues.
    Agent(cmd::agent::AgentArgs),
    /// Manage the images Liftoff builds and appends in registries.
    #[command(subcommand)]
    Image(cmd::image::ImageCmd),
    /// Start a throwaway server and agent and run the hello example end to end.
    Quickstart(cmd::quickstart::QuickstartArgs),
    /// Create entities and their admin keys (on the server's database).
    #[command(subcommand)]
    Entity(cmd::entity::EntityCmd),
    /// Create, list and revoke API keys (admin, member, agent).
    #[command(subcommand)]
    Key(cmd::key::KeyCmd),
    /// Check a launch-config.yaml, or print its JSON Schema.
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    /// Check a launch config's cloud setup: credentials, build-context store, builder, regions.
    Doctor(cmd::doctor::DoctorArgs),
    /// Print the least-privilege grants a launch config needs (IAM policy, GCP role, Azure roles).
    Permissions(cmd::permissions::PermissionsArgs),
}

fn main() -> ExitCode {
    // The hidden `__supervise` and `__exec-as` (see liftoff_run::supervise)
    // run before anything else: no thread or runtime may exist yet.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(code) = liftoff_run::supervise::main(&argv) {
        return ExitCode::from(code);
    }
    let cli = Cli::parse_from(argv);
    init_tracing(match cli.command {
        Command::Server(_) | Command::Agent(_) => "info",
        _ => "warn",
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("error: {text}");
            if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
                eprintln!(
                    "hint: the server's certificate was not accepted; if a private CA issued it, \
                     pass that CA with --ca-cert FILE (or LIFTOFF_CA_CERT)"
                );
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr so stdout stays clean for scripts; `RUST_LOG` overrides the level.
fn init_tracing(default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let globals =
        connect::Globals { base_url: cli.base_url, api_key: cli.api_key, entity: cli.entity, ca_cert: cli.ca_cert };
    if let Command::Launch(args) = cli.command {
        return cmd::launch::run(&globals, *args).await;
    }
    match cli.command {
        Command::Server(args) => cmd::server::run(args).await,
        Command::Queue(c) => cmd::queue::run(&globals, c).await,
        Command::Job(c) => cmd::job::run(&globals, c).await,
        Command::Launch(_) => unreachable!("dispatched above, with its exit code"),
        Command::Run(c) => cmd::run::run(&globals, c).await,
        Command::Agent(args) => cmd::agent::run(&globals, args).await,
        Command::Quickstart(args) => cmd::quickstart::run(args).await,
        Command::Entity(c) => cmd::entity::run(c).await,
        Command::Key(c) => cmd::key::run(&globals, c).await,
        Command::Image(c) => cmd::image::run(c).await,
        Command::Config(c) => cmd::config::run(c),
        Command::Doctor(args) => cmd::doctor::run(args).await,
        Command::Permissions(args) => cmd::permissions::run(args),
    }
    .map(|()| ExitCode::SUCCESS)
}

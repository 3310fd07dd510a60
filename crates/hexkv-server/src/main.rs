//! The `hexkv` binary: a durable key-value service over REST and gRPC.
//!
//! `hexkv` (or `hexkv serve`) runs the service; `hexkv config show` prints the effective
//! configuration; `hexkv get|put|delete|list` are the command-line client (see
//! [`hexkv_server::cli`] for their exit codes). Exit codes of the service: 0 success, 1 the
//! service failed (to start or while running), 2 usage error or invalid configuration.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hexkv_server::config::{Config, Overrides};
use hexkv_server::{Application, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "hexkv",
    version,
    about = "A durable key-value service over REST and gRPC, and its command-line client."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// The flags of the service (accepted before a subcommand too: `hexkv --fsync never`).
#[derive(Debug, Default, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    overrides: Overrides,
    /// Once listening, write the bound addresses as JSON to this file (for scripts and tests
    /// that start hexkv on port 0).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve(ServeArgs),
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    #[cfg(feature = "cli")]
    #[command(flatten)]
    Client(hexkv_server::cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (all layers applied) as TOML.
    Show {
        #[command(flatten)]
        overrides: Overrides,
    },
}

/// mimalloc rather than the system allocator: a request allocates a few dozen small, short-lived
/// objects across threads, which glibc's malloc serves markedly slower (see `docs/benchmarks.md`
/// and `docs/adr/0004-mimalloc.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let top = cli.serve;
    // Flags after the subcommand win over the same flags before it.
    let (overrides, ready_file, show) = match cli.command {
        None => (top.overrides, top.ready_file, false),
        Some(Command::Serve(args)) => (
            args.overrides.or(top.overrides),
            args.ready_file.or(top.ready_file),
            false,
        ),
        Some(Command::Config {
            action: ConfigAction::Show { overrides },
        }) => (overrides.or(top.overrides), None, true),
        #[cfg(feature = "cli")]
        Some(Command::Client(command)) => return ExitCode::from(hexkv_server::cli::run(command)),
    };
    let config = match Config::load(&overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hexkv: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if show {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    serve(config, ready_file.as_deref())
}

fn serve(config: Config, ready_file: Option<&Path>) -> ExitCode {
    if let Err(e) = telemetry::init(&config.log) {
        eprintln!("hexkv: cannot set up logging: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hexkv: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        let app = Application::build(config).await?;
        if let Some(path) = ready_file {
            write_ready_file(path, &app)?;
        }
        app.run(shutdown_signal()).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "hexkv stopped with an error");
            eprintln!("hexkv: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Writes `{"http": "<addr>", "grpc": "<addr>", "pid": <pid>}` atomically (temp file, then
/// rename).
fn write_ready_file(path: &Path, app: &Application) -> anyhow::Result<()> {
    let mut body = serde_json::Map::new();
    for (front_end, addr) in app.addresses() {
        body.insert(front_end.to_owned(), addr.to_string().into());
    }
    body.insert("pid".to_owned(), std::process::id().into());
    let body = serde_json::Value::Object(body);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string())?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}

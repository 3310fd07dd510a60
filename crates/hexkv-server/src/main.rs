//! The `hexkv` binary: a durable key-value service over REST and gRPC.
//!
//! `hexkv` (or `hexkv serve`) runs the service (SIGHUP or a change of its `--config` file
//! reloads the configuration); `hexkv config show` prints the effective configuration and
//! `hexkv config check FILE` validates a file; `hexkv compact` compacts the memory store's log
//! offline; `hexkv auth hash-key` hashes an API key for the configuration; `hexkv probe URL`
//! is a health check for images without curl; `hexkv get|put|delete|list` are the command-line client (see
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
    /// Exit 0 if URL (http://, e.g. the /healthz endpoint) answers 2xx within 3 seconds, else 1:
    /// a health check for images without curl.
    Probe {
        /// The URL to GET.
        #[arg(default_value = "http://127.0.0.1:8080/healthz")]
        url: String,
    },
    /// API keys.
    Auth {
        #[command(subcommand)]
        action: AuthAction,
    },
    /// Compact the memory store's log into a snapshot, offline: the service must be stopped
    /// (it runs compaction by itself while serving; see docs/durability.md).
    #[cfg(feature = "memory")]
    Compact {
        #[command(flatten)]
        overrides: Overrides,
    },
    #[cfg(feature = "cli")]
    #[command(flatten)]
    Client(hexkv_server::cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum AuthAction {
    /// Print the hash to configure (`[[auth.keys]] hash = …`) for an API key read from stdin,
    /// or make a new random key and print it with its hash (--generate).
    HashKey {
        /// Make a new key (256 random bits) instead of reading one.
        #[arg(long)]
        generate: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (all layers applied) as TOML.
    Show {
        #[command(flatten)]
        overrides: Overrides,
    },
    /// Check a configuration file (over the defaults, without the environment): exit 0 and
    /// print `ok`, or exit 2 with the key and the reason.
    Check {
        /// The file (TOML, or YAML for .yaml/.yml).
        file: PathBuf,
    },
}

/// mimalloc rather than the system allocator: a request allocates a few dozen small, short-lived
/// objects across threads, which glibc's malloc serves markedly slower (see `docs/performance.md`
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
        Some(Command::Config {
            action: ConfigAction::Check { file },
        }) => {
            return match Config::load_file(&file) {
                Ok(_) => {
                    println!("{}: ok", file.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hexkv: {}: {e}", file.display());
                    ExitCode::from(EXIT_USAGE)
                }
            };
        }
        Some(Command::Auth {
            action: AuthAction::HashKey { generate },
        }) => return hash_key(generate),
        Some(Command::Probe { url }) => {
            return match probe(&url) {
                Ok(status) => {
                    println!("{url}: {status}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("hexkv: {url}: {e}");
                    ExitCode::from(EXIT_FAILURE)
                }
            };
        }
        #[cfg(feature = "memory")]
        Some(Command::Compact { overrides }) => {
            return compact(&overrides.or(top.overrides));
        }
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
    serve(config, overrides, ready_file.as_deref())
}

/// `hexkv probe URL`: one HTTP/1.1 GET over a plain TCP connection; the status line if 2xx.
fn probe(url: &str) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    use std::net::ToSocketAddrs as _;
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs can be probed")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let timeout = std::time::Duration::from_secs(3);
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("no address")?;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let line = String::from_utf8_lossy(&head[..n]);
    let status = line.lines().next().unwrap_or_default().to_owned();
    match status.split(' ').nth(1) {
        Some(code) if code.starts_with('2') => Ok(status),
        _ => Err(format!("unhealthy: {status:?}")),
    }
}

/// The shortest key `hexkv auth hash-key` accepts from stdin: a shorter one is guessable.
const MIN_KEY_LEN: usize = 24;

/// `hexkv auth hash-key [--generate]`.
fn hash_key(generate: bool) -> ExitCode {
    use base64::Engine as _;
    use rand::RngCore as _;

    let key = if generate {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let key = format!(
            "hexkv_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        println!("key:  {key}");
        key
    } else {
        let mut line = String::new();
        if let Err(e) = std::io::stdin().read_line(&mut line) {
            eprintln!("hexkv: cannot read the key from stdin: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
        let key = line.trim().to_owned();
        if key.len() < MIN_KEY_LEN || key.contains(char::is_whitespace) {
            eprintln!(
                "hexkv: a key must be at least {MIN_KEY_LEN} characters without spaces; \
                 `hexkv auth hash-key --generate` makes a strong one"
            );
            return ExitCode::from(EXIT_USAGE);
        }
        key
    };
    let hash = hexkv_platform::auth::hash_key(&key);
    if generate {
        println!("hash: {hash}");
    } else {
        println!("{hash}");
    }
    ExitCode::SUCCESS
}

#[cfg(feature = "memory")]
fn compact(overrides: &Overrides) -> ExitCode {
    let config = match Config::load(overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("hexkv: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match hexkv_server::compact_offline(&config) {
        Ok(report) => {
            println!(
                "{}: {} keys, {} bytes, covers version {}; {} files removed in {} ms",
                report.snapshot.display(),
                report.entries,
                report.bytes,
                report.covered_version,
                report.removed_files,
                report.duration.as_millis()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hexkv: compaction failed: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn serve(config: Config, overrides: Overrides, ready_file: Option<&Path>) -> ExitCode {
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
    // Telemetry is set up inside the runtime: the trace exporter runs on it.
    let telemetry = {
        let _runtime = runtime.enter();
        match telemetry::init(&config) {
            Ok(telemetry) => std::sync::Arc::new(telemetry),
            Err(e) => {
                eprintln!("hexkv: cannot set up telemetry: {e:#}");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    };
    let flush = std::sync::Arc::clone(&telemetry);
    let result = runtime.block_on(async {
        let app = Application::build(config, telemetry)
            .await?
            .with_reload(overrides);
        if let Some(path) = ready_file {
            write_ready_file(path, &app)?;
        }
        // The first signal starts the graceful shutdown; a second one hurries it.
        let shutdown = hexkv_platform::shutdown::Shutdown::on_signals()?;
        app.run(shutdown).await
    });
    // The last spans (the shutdown's own) are exported before the process ends.
    runtime.block_on(async move {
        let _ = tokio::task::spawn_blocking(move || flush.shutdown()).await;
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

//! The command-line client (feature `cli`): `hexkv get|put|delete|list` against a running
//! service, over gRPC (the default) or HTTP, through [`hexkv_client`].
//!
//! Values are written to stdout byte-exact (no newline is added); everything meant for people
//! goes to stderr. With `--output json`, results (and errors, on stderr) are JSON documents.
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure (an internal server error, an unreadable response, a local I/O error) |
//! | 2 | usage error: bad arguments, or a request the server rejected as invalid or too large |
//! | 3 | the key does not exist (`get`) |
//! | 4 | the precondition (`--if-version`, `--create-only`) does not hold |
//! | 5 | the service is unavailable: cannot connect, `UNAVAILABLE`/503, throttled, or timed out |

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use hexkv_client::{Client, ClientError, ClientOptions, Precondition, Version};
use serde_json::json;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Any other failure.
pub const EXIT_FAILURE: u8 = 1;
/// Usage error, or a request rejected as invalid.
pub const EXIT_USAGE: u8 = 2;
/// The key does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// The precondition does not hold.
pub const EXIT_PRECONDITION_FAILED: u8 = 4;
/// The service is unavailable (or timed out).
pub const EXIT_UNAVAILABLE: u8 = 5;

/// A client command.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Print the value under KEY (byte-exact) to stdout.
    Get {
        /// The key.
        key: String,
        /// Where the service is.
        #[command(flatten)]
        connection: Connection,
    },
    /// Write a value under KEY: the VALUE argument, the contents of --file, or stdin.
    Put {
        /// The key.
        key: String,
        /// The value (as UTF-8 text); without it and without --file, stdin is read.
        #[arg(conflicts_with = "file")]
        value: Option<String>,
        /// Read the value from this file (`-` for stdin).
        #[arg(long, short = 'f', value_name = "PATH")]
        file: Option<PathBuf>,
        /// The write's precondition.
        #[command(flatten)]
        precondition: WritePrecondition,
        /// Where the service is.
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete KEY (succeeds when it is already absent, unless --if-version is given).
    Delete {
        /// The key.
        key: String,
        /// Delete only if the key's current version is N.
        #[arg(long, value_name = "N")]
        if_version: Option<u64>,
        /// Where the service is.
        #[command(flatten)]
        connection: Connection,
    },
    /// Load the service and report throughput, errors and latency quantiles (see
    /// docs/performance.md).
    Bench(Box<BenchArgs>),
    /// List the keys starting with PREFIX (every key without it), in key order.
    List {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
        /// Stop after this many keys (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// Where the service is.
        #[command(flatten)]
        connection: Connection,
    },
}

/// The flags of `hexkv bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// What each request does.
    #[arg(long, value_enum, default_value_t = BenchWorkload::Get)]
    workload: BenchWorkload,
    /// The share of reads in the `mixed` workload.
    #[arg(long, value_name = "RATIO", default_value_t = 0.9)]
    read_ratio: f64,
    /// Distinct keys.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    keys: u64,
    /// Bytes per key.
    #[arg(long, value_name = "BYTES", default_value_t = 16)]
    key_size: usize,
    /// Bytes per value.
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    value_size: usize,
    /// Key access distribution.
    #[arg(long, value_enum, default_value_t = BenchDistribution::Uniform)]
    distribution: BenchDistribution,
    /// The Zipf exponent (with `--distribution zipf`).
    #[arg(long, value_name = "S", default_value_t = 0.99)]
    zipf_exponent: f64,
    /// Concurrent workers: requests in flight at most.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 64)]
    concurrency: usize,
    /// Connections (gRPC channels) the workers share; over HTTP each worker may open its own.
    #[arg(long, value_name = "N", default_value_t = 4)]
    connections: usize,
    /// A fixed request rate (open loop: the requests due in each millisecond leave together at
    /// its start, on a kernel timer, and latency counts from then); without it each worker sends
    /// as soon as its last answer came (closed loop).
    #[arg(long, value_name = "PER_SECOND")]
    rate: Option<f64>,
    /// Seconds to measure (default 10, unless --requests is given).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Requests to measure.
    #[arg(long, value_name = "N")]
    requests: Option<u64>,
    /// Seconds of load before measuring.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    warmup: f64,
    /// Key prefix.
    #[arg(long, default_value = "bench/")]
    prefix: String,
    /// Do not write every key before the run.
    #[arg(long)]
    no_preload: bool,
    /// Where the service is.
    #[command(flatten)]
    connection: Connection,
}

/// `--workload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchWorkload {
    /// Reads.
    Get,
    /// Unconditional writes.
    Put,
    /// Reads and writes (`--read-ratio`).
    Mixed,
    /// Read, then compare-and-swap.
    Cas,
}

/// `--distribution`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchDistribution {
    /// Every key equally often.
    Uniform,
    /// A few hot keys (`--zipf-exponent`).
    Zipf,
}

/// `--if-version N` or `--create-only`.
#[derive(Debug, Args)]
pub struct WritePrecondition {
    /// Write only if the key's current version is N (compare-and-swap).
    #[arg(long, value_name = "N", conflicts_with = "create_only")]
    if_version: Option<u64>,
    /// Write only if the key does not exist.
    #[arg(long)]
    create_only: bool,
}

/// Where the service is, and how to talk to it.
#[derive(Debug, Args)]
pub struct Connection {
    /// The service's address [default: http://127.0.0.1:50051 for gRPC,
    /// http://127.0.0.1:8080 for HTTP].
    #[arg(long, env = "HEXKV_ENDPOINT", value_name = "URL")]
    endpoint: Option<String>,
    /// The API to use.
    #[arg(long, env = "HEXKV_PROTOCOL", value_enum, default_value_t = Protocol::Grpc)]
    protocol: Protocol,
    /// The deadline of each attempt, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    timeout_ms: u64,
    /// The API key to send, when the service requires one (prefer the variable: a flag shows
    /// in the process list).
    #[arg(
        long,
        env = "HEXKV_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// The output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// The API a command uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// gRPC (`hexkv.v1.KeyValue`).
    Grpc,
    /// The REST API.
    Http,
}

/// The output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Values raw, versions and keys one per line.
    Text,
    /// JSON documents.
    Json,
}

impl ClientCommand {
    fn connection(&self) -> &Connection {
        match self {
            Self::Get { connection, .. }
            | Self::Put { connection, .. }
            | Self::Delete { connection, .. }
            | Self::List { connection, .. } => connection,
            Self::Bench(args) => &args.connection,
        }
    }
}

/// A failure and its exit code.
struct Failure {
    code: u8,
    kind: &'static str,
    message: String,
    current_version: Option<Option<Version>>,
}

impl Failure {
    fn new(code: u8, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            kind,
            message: message.into(),
            current_version: None,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(err: ClientError) -> Self {
        let message = err.to_string();
        match err {
            ClientError::NotFound => Self::new(EXIT_NOT_FOUND, "not_found", message),
            ClientError::PreconditionFailed { current } => Self {
                current_version: Some(current),
                ..Self::new(EXIT_PRECONDITION_FAILED, "precondition_failed", message)
            },
            ClientError::InvalidArgument { .. } => {
                Self::new(EXIT_USAGE, "invalid_argument", message)
            }
            ClientError::TooLarge { .. } => Self::new(EXIT_USAGE, "too_large", message),
            ClientError::Unavailable { .. } | ClientError::Connect(_) => {
                Self::new(EXIT_UNAVAILABLE, "unavailable", message)
            }
            ClientError::Throttled { .. } => Self::new(EXIT_UNAVAILABLE, "throttled", message),
            ClientError::DeadlineExceeded => {
                Self::new(EXIT_UNAVAILABLE, "deadline_exceeded", message)
            }
            ClientError::OutcomeUnknown { .. } => {
                Self::new(EXIT_UNAVAILABLE, "outcome_unknown", message)
            }
            ClientError::Other {
                code: hexkv_client::Code::Unauthenticated,
                ..
            } => Self::new(EXIT_FAILURE, "unauthenticated", message),
            ClientError::Other {
                code: hexkv_client::Code::PermissionDenied,
                ..
            } => Self::new(EXIT_FAILURE, "permission_denied", message),
            ClientError::Other { .. } => Self::new(EXIT_FAILURE, "failed", message),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        let kind = if err.kind() == io::ErrorKind::BrokenPipe {
            "broken_pipe"
        } else {
            "io"
        };
        Self::new(EXIT_FAILURE, kind, err.to_string())
    }
}

/// Runs a client command; returns the process exit code.
pub fn run(command: ClientCommand) -> u8 {
    let output = command.connection().output;
    // The load generator needs every core; a single call does not.
    let mut builder = if matches!(command, ClientCommand::Bench(_)) {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("hexkv: cannot start the runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let mut stdout = io::stdout().lock();
    match runtime.block_on(execute(command, &mut stdout)) {
        Ok(()) => EXIT_OK,
        // `hexkv list | head`: the reader left; that is not an error of ours.
        Err(f) if f.kind == "broken_pipe" => EXIT_OK,
        Err(failure) => {
            report(&failure, output);
            failure.code
        }
    }
}

fn report(failure: &Failure, output: Output) {
    match output {
        Output::Text => eprintln!("hexkv: {}", failure.message),
        Output::Json => {
            let mut body = json!({"error": failure.kind, "message": failure.message});
            if let Some(current) = failure.current_version {
                body["current_version"] = json!(current.map(Version::get));
            }
            eprintln!("{body}");
        }
    }
}

async fn connect(connection: &Connection) -> Result<Client, Failure> {
    connect_with(
        connection,
        ClientOptions {
            timeout: Duration::from_millis(connection.timeout_ms.max(1)),
            ..ClientOptions::default()
        },
    )
    .await
}

async fn connect_with(connection: &Connection, options: ClientOptions) -> Result<Client, Failure> {
    let client = match connection.protocol {
        Protocol::Grpc => {
            let endpoint = connection
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
            Client::connect(endpoint, options).await?
        }
        Protocol::Http => {
            let endpoint = connection
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:8080".to_owned());
            Client::http(endpoint, options)?
        }
    };
    Ok(match &connection.api_key {
        Some(key) => client.with_api_key(key)?,
        None => client,
    })
}

async fn execute(command: ClientCommand, out: &mut impl Write) -> Result<(), Failure> {
    let connection = command.connection();
    let output = connection.output;
    match &command {
        ClientCommand::Get { key, .. } => {
            let client = connect(connection).await?;
            let entry = client.get(key).await?;
            match output {
                Output::Text => out.write_all(&entry.value)?,
                Output::Json => {
                    let body = json!({
                        "key": entry.key,
                        "version": entry.version.get(),
                        "value": std::str::from_utf8(&entry.value).ok(),
                        "value_base64": base64::engine::general_purpose::STANDARD.encode(&entry.value),
                    });
                    writeln!(out, "{body}")?;
                }
            }
        }
        ClientCommand::Put {
            key,
            value,
            file,
            precondition,
            ..
        } => {
            let value = read_value(value.as_deref(), file.as_deref())?;
            let precondition = match (precondition.if_version, precondition.create_only) {
                (Some(v), _) => Precondition::Version(Version::new(v)),
                (None, true) => Precondition::Absent,
                (None, false) => Precondition::None,
            };
            let client = connect(connection).await?;
            let written = client.put(key, value, precondition).await?;
            match output {
                Output::Text => writeln!(out, "{}", written.version)?,
                Output::Json => writeln!(
                    out,
                    "{}",
                    json!({"key": key, "version": written.version.get(), "created": written.created})
                )?,
            }
        }
        ClientCommand::Delete {
            key, if_version, ..
        } => {
            let precondition = if_version.map_or(Precondition::None, |v| {
                Precondition::Version(Version::new(v))
            });
            let client = connect(connection).await?;
            let deleted = client.delete(key, precondition).await?;
            match output {
                Output::Text => {}
                Output::Json => writeln!(out, "{}", json!({"key": key, "deleted": deleted}))?,
            }
        }
        ClientCommand::List { prefix, limit, .. } => {
            let client = connect(connection).await?;
            list(&client, prefix, *limit, output, out).await?;
        }
        ClientCommand::Bench(args) => bench(args, out).await?,
    }
    out.flush()?;
    Ok(())
}

/// `hexkv bench`: builds the spec, connects, runs, prints the report.
async fn bench(args: &BenchArgs, out: &mut impl Write) -> Result<(), Failure> {
    use hexkv_bench::{Distribution, Spec, Workload};
    let usage = |m: String| Failure::new(EXIT_USAGE, "invalid_argument", m);
    let seconds = |s: f64, what: &str| {
        Duration::try_from_secs_f64(s).map_err(|_| usage(format!("{what}: {s} is not a duration")))
    };
    let spec = Spec {
        workload: match args.workload {
            BenchWorkload::Get => Workload::Get,
            BenchWorkload::Put => Workload::Put,
            BenchWorkload::Mixed => Workload::Mixed {
                read_ratio: args.read_ratio,
            },
            BenchWorkload::Cas => Workload::Cas,
        },
        keys: args.keys,
        key_size: args.key_size,
        value_size: args.value_size,
        distribution: match args.distribution {
            BenchDistribution::Uniform => Distribution::Uniform,
            BenchDistribution::Zipf => Distribution::Zipf {
                exponent: args.zipf_exponent,
            },
        },
        concurrency: args.concurrency,
        rate: args.rate,
        duration: match (args.duration, args.requests) {
            (Some(d), _) => Some(seconds(d, "--duration")?),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        },
        requests: args.requests,
        warmup: seconds(args.warmup, "--warmup")?,
        prefix: args.prefix.clone(),
        preload: !args.no_preload,
    };
    // Every failure counts as it happens: no retries.
    let options = ClientOptions {
        timeout: Duration::from_millis(args.connection.timeout_ms.max(1)),
        retry: hexkv_client::RetryPolicy {
            max_attempts: 1,
            ..hexkv_client::RetryPolicy::default()
        },
        ..ClientOptions::default()
    };
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(connect_with(&args.connection, options).await?);
    }
    let protocol = match args.connection.protocol {
        Protocol::Grpc => "grpc",
        Protocol::Http => "http",
    };
    let progress = args.connection.output == Output::Text;
    let report = hexkv_bench::run(clients, protocol, spec, progress)
        .await
        .map_err(|e| {
            if e.starts_with("preloading") {
                Failure::new(EXIT_UNAVAILABLE, "unavailable", e)
            } else {
                usage(e)
            }
        })?;
    match args.connection.output {
        Output::Text => write!(out, "{}", report.table())?,
        Output::Json => writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(|e| Failure::new(
                EXIT_FAILURE,
                "json",
                e.to_string()
            ))?
        )?,
    }
    Ok(())
}

/// Pages through the listing, printing as it goes (text) or once at the end (JSON).
async fn list(
    client: &Client,
    prefix: &str,
    limit: Option<u64>,
    output: Output,
    out: &mut impl Write,
) -> Result<(), Failure> {
    const PAGE: u64 = 1000;
    let mut remaining = limit.unwrap_or(u64::MAX);
    let mut cursor: Option<String> = None;
    let mut items = Vec::new();
    while remaining > 0 {
        let page_size = remaining.min(PAGE) as u32;
        let page = client.list(prefix, page_size, cursor.as_deref()).await?;
        remaining = remaining.saturating_sub(page.items.len() as u64);
        for (key, version) in page.items {
            match output {
                Output::Text => writeln!(out, "{key}")?,
                Output::Json => items.push(json!({"key": key, "version": version.get()})),
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    if output == Output::Json {
        writeln!(out, "{}", json!({ "items": items }))?;
    }
    Ok(())
}

/// The value to write: the argument, the file (`-`: stdin), or stdin.
fn read_value(value: Option<&str>, file: Option<&std::path::Path>) -> Result<Vec<u8>, Failure> {
    let read_stdin = || -> Result<Vec<u8>, Failure> {
        let mut bytes = Vec::new();
        io::stdin().lock().read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match (value, file) {
        (Some(value), _) => Ok(value.as_bytes().to_vec()),
        (None, Some(path)) if path.as_os_str() == "-" => read_stdin(),
        (None, Some(path)) => std::fs::read(path).map_err(|e| {
            Failure::new(
                EXIT_USAGE,
                "invalid_argument",
                format!("cannot read {}: {e}", path.display()),
            )
        }),
        (None, None) => read_stdin(),
    }
}

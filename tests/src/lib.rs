//! Harness for end-to-end tests: runs the real `hexkv` binary on port 0 and talks to it over
//! real sockets.
//!
//! The binary is built (or found up to date) once per test run with
//! `cargo build -p hexkv-server --bin hexkv`, in the same profile as the tests, and located from
//! cargo's own JSON output, so the tests never run a stale binary. Set `HEXKV_BIN` to test a
//! binary built elsewhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a start may take before the harness gives up (generous: CI machines are slow).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The path of the `hexkv` binary under test.
pub fn hexkv_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("HEXKV_BIN") {
            return PathBuf::from(bin);
        }
        build_hexkv()
    })
}

fn build_hexkv() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace");
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .args(["build", "-p", "hexkv-server", "--bin", "hexkv"])
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit());
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    // Cargo gives this test process the variables of its own package (CARGO_PKG_NAME=hexkv-e2e,
    // CARGO_MANIFEST_DIR, OUT_DIR…). Build scripts that watch them (ring's, via
    // rerun-if-env-changed) would then rebuild on every switch between `cargo test` and this
    // build; remove them so both see the same environment.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
                    | "OUT_DIR"
            )
        {
            command.env_remove(key);
        }
    }
    let output = command.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build of hexkv failed: {}",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "hexkv")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported the hexkv executable")
}

/// A running `hexkv serve`.
pub struct Server {
    child: Child,
    /// The REST API's address.
    pub http: SocketAddr,
    /// The gRPC API's address.
    pub grpc: SocketAddr,
    /// The data directory.
    pub data_dir: PathBuf,
    log: PathBuf,
}

/// Why a server did not start.
#[derive(Debug)]
pub struct StartFailure {
    /// The exit status.
    pub status: ExitStatus,
    /// What it wrote to stdout (logs) and stderr (the error).
    pub stdout: String,
    /// What it wrote to stderr.
    pub stderr: String,
}

impl Server {
    /// Starts hexkv on port 0 with its log in `data_dir`, plus `args`; panics if it fails.
    pub fn start(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        match Self::try_start(data_dir, args, env) {
            Ok(server) => server,
            Err(failure) => panic!(
                "hexkv did not start ({}):\nstderr:\n{}\nstdout:\n{}",
                failure.status, failure.stderr, failure.stdout
            ),
        }
    }

    /// Starts hexkv and waits until it is listening, or until it exits.
    pub fn try_start(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, StartFailure> {
        Self::try_start_on(data_dir, ("127.0.0.1:0", "127.0.0.1:0"), args, env)
    }

    /// As [`Server::start`], with the REST and gRPC listeners on `(http, grpc)`; panics if it
    /// fails.
    pub fn start_on(
        data_dir: &Path,
        listen: (&str, &str),
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        match Self::try_start_on(data_dir, listen, args, env) {
            Ok(server) => server,
            Err(failure) => panic!(
                "hexkv did not start ({}):\nstderr:\n{}\nstdout:\n{}",
                failure.status, failure.stderr, failure.stdout
            ),
        }
    }

    /// As [`Server::try_start`], with the REST and gRPC listeners on `(http, grpc)`.
    pub fn try_start_on(
        data_dir: &Path,
        (http, grpc): (&str, &str),
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Server, StartFailure> {
        let run_dir = data_dir.with_extension("run");
        std::fs::create_dir_all(&run_dir).expect("run dir");
        let ready = run_dir.join("ready.json");
        let _ = std::fs::remove_file(&ready);
        let log = run_dir.join(format!("stdout-{}.log", unique()));
        let stderr = run_dir.join(format!("stderr-{}.log", unique()));
        let mut child = Command::new(hexkv_bin())
            .arg("serve")
            .args(["--http-listen", http, "--grpc-listen", grpc])
            .args(["--log-format", "json"])
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            // The standard OpenTelemetry switches of the machine running the tests stay out.
            .env_remove("OTEL_TRACES_EXPORTER")
            .env_remove("OTEL_SDK_DISABLED")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn hexkv");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Err(StartFailure {
                    status,
                    stdout: read(&log),
                    stderr: read(&stderr),
                });
            }
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let info: serde_json::Value = serde_json::from_str(&text).expect("ready file JSON");
                let addr = |front_end: &str| -> SocketAddr {
                    info[front_end]
                        .as_str()
                        .unwrap_or_else(|| panic!("no {front_end} address in {text}"))
                        .parse()
                        .expect("socket address")
                };
                return Ok(Server {
                    child,
                    http: addr("http"),
                    grpc: addr("grpc"),
                    data_dir: data_dir.to_owned(),
                    log,
                });
            }
            assert!(Instant::now() < deadline, "hexkv did not start in time");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The gRPC endpoint, `http://<addr>`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("send signal");
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait()
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and waits for it.
    pub fn kill9(mut self) {
        self.signal(Signal::SIGKILL);
        self.wait();
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("wait")
    }

    /// The process's resident memory (`VmRSS` of `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc/<pid>/status");
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib * 1024
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        read(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hexkv` with `args` to completion (for subcommands and start failures).
pub fn run_hexkv(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(hexkv_bin())
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run hexkv")
}

/// Runs `hexkv` with `args`, feeding `stdin` to it, and waits for it.
pub fn run_hexkv_stdin(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(hexkv_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("HEXKV_ENDPOINT")
        .env_remove("HEXKV_PROTOCOL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hexkv");
    let mut input = child.stdin.take().expect("stdin");
    // Write from another thread: a large input must not block on a full pipe while hexkv
    // waits to write its output.
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("wait for hexkv");
    writer.join().expect("stdin writer");
    output
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

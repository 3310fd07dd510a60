//! A throwaway PostgreSQL for tests, for any service: it knows nothing of the schema. (hexkv's
//! test kit re-exports it as `hexkv_testkit::postgres`.)
//!
//! [`database`] gives each test a fresh, empty database, dropped when the [`TestDatabase`] is:
//! - on the server named by `DATABASE_URL`, when it is set (a URL whose user may create
//!   databases; its own database is only used to create and drop the test ones);
//! - otherwise on a server this module starts once per test process from the local PostgreSQL
//!   binaries (`initdb`, `pg_ctl` on `PATH` or under `/usr/lib/postgresql/*/bin`), in a temp
//!   directory, on a free port of 127.0.0.1, run as `nobody` when the tests run as root (PostgreSQL
//!   refuses root). A watchdog process stops the server and removes the directory when the test
//!   process ends, however it ends.
//!
//! With neither, [`database`] prints a loud `SKIPPED` line and returns `None`, unless `CI` is set:
//! then it panics, so CI never passes by skipping.
//!
//! [`LocalCluster::create`] starts a dedicated server that a test may stop and start again (to
//! show what the service does when its database goes away).

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};

/// Where test databases are created.
enum Server {
    External(String),
    Local(LocalCluster),
}

impl Server {
    fn admin_url(&self) -> String {
        match self {
            Server::External(url) => url.clone(),
            Server::Local(cluster) => cluster.admin_url(),
        }
    }
}

/// The shared server of this test process: `Ok(None)` when there is no PostgreSQL.
fn server() -> &'static Result<Option<Server>, String> {
    static SERVER: OnceLock<Result<Option<Server>, String>> = OnceLock::new();
    SERVER.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL")
            && !url.is_empty()
        {
            return Ok(Some(Server::External(url)));
        }
        match find_binaries() {
            None => Ok(None),
            Some(bin) => LocalCluster::create_in(&bin).map(|c| Some(Server::Local(c))),
        }
    })
}

/// A fresh database for one test, dropped (with its connections) when this is dropped.
pub struct TestDatabase {
    url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// The URL of the database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates a fresh database on the server at `admin_url`.
    pub async fn create_on(admin_url: &str) -> Result<TestDatabase, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "hexkv_test_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            fastrand::u32(..)
        );
        let mut admin = PgConnection::connect(admin_url)
            .await
            .map_err(|e| format!("cannot connect to the test PostgreSQL: {e}"))?;
        admin
            // The name is ours (digits and underscores), not input: safe to format in.
            .execute(AssertSqlSafe(format!(
                "CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'"
            )))
            .await
            .map_err(|e| format!("cannot create a test database: {e}"))?;
        let _ = admin.close().await;
        Ok(TestDatabase {
            url: with_database(admin_url, &name),
            name,
            admin_url: admin_url.to_owned(),
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a runtime; use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                admin
                    .execute(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!(
                "hexkv-testkit: could not drop test database {}: {e}",
                self.name
            );
        }
    }
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    // postgres://user@host:port/db — the database is the path after the authority.
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let authority_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A fresh database for the calling test, or `None` (after a loud message) when no PostgreSQL
/// is available. Panics instead of skipping when `CI` is set.
pub async fn database() -> Option<TestDatabase> {
    let admin_url = match server() {
        Ok(Some(server)) => server.admin_url(),
        Ok(None) => {
            skip("no PostgreSQL: set DATABASE_URL or install the PostgreSQL server binaries");
            return None;
        }
        Err(e) => panic!("the throwaway PostgreSQL did not start: {e}"),
    };
    match TestDatabase::create_on(&admin_url).await {
        Ok(db) => Some(db),
        Err(e) => panic!("{e}"),
    }
}

/// A dedicated server (which the test may stop and start) with a fresh database on it, or `None`
/// after [`skip`] when no server can be started.
pub async fn dedicated() -> Option<(std::sync::Arc<LocalCluster>, TestDatabase)> {
    let cluster = match LocalCluster::create() {
        Ok(cluster) => std::sync::Arc::new(cluster),
        Err(e) => {
            skip(&format!("cannot start a dedicated PostgreSQL: {e}"));
            return None;
        }
    };
    match TestDatabase::create_on(&cluster.admin_url()).await {
        Ok(db) => Some((cluster, db)),
        Err(e) => panic!("{e}"),
    }
}

/// Says loudly that a test is skipped, or fails it when `CI` is set.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("a PostgreSQL test")
        .to_owned();
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("{test}: {reason} (CI is set, so this fails instead of skipping)");
    }
    eprintln!("\n*** SKIPPED {test}: {reason} ***\n");
}

/// Finds `initdb` and `pg_ctl`: on `PATH`, else the newest `/usr/lib/postgresql/*/bin`.
pub fn find_binaries() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&path).find(|d| has_tools(d))
    {
        // PATH may hold symlinks (/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl):
        // use the real directory, where the rest of the installation is.
        return std::fs::canonicalize(dir.join("pg_ctl"))
            .ok()
            .and_then(|real| real.parent().map(Path::to_owned))
            .or(Some(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| has_tools(bin))
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// A PostgreSQL server of its own in a temp directory, for one test process.
pub struct LocalCluster {
    bin: PathBuf,
    root: PathBuf,
    port: u16,
    /// Who runs the server: `nobody` when the tests run as root.
    user: Option<(u32, u32)>,
    /// Closing its stdin stops the server and removes `root`.
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

impl LocalCluster {
    /// Creates and starts a cluster from the local binaries.
    pub fn create() -> Result<LocalCluster, String> {
        let bin = find_binaries().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) found")?;
        Self::create_in(&bin)
    }

    fn create_in(bin: &Path) -> Result<LocalCluster, String> {
        static N: AtomicU64 = AtomicU64::new(0);
        let root = std::env::temp_dir().join(format!(
            "hexkv-pg-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        let user = unprivileged_user()?;
        if let Some((uid, gid)) = user {
            nix::unistd::chown(
                &root,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| format!("chown {}: {e}", root.display()))?;
        }
        let mut cluster = LocalCluster {
            bin: bin.to_owned(),
            root,
            port: 0,
            user,
            watchdog: Mutex::new(None),
        };
        cluster.spawn_watchdog()?;
        cluster.run(
            "initdb",
            &[
                "-D",
                cluster.data().to_str().ok_or("non-UTF-8 temp dir")?,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
        )?;
        // A free port can be taken between our probe and the server's bind: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.start() {
                Ok(()) => return Ok(cluster),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300 \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.root.display()
        );
        let log = self.root.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().ok_or("non-UTF-8 temp dir")?,
                "-l",
                log.to_str().ok_or("non-UTF-8 temp dir")?,
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Stops the server (fast shutdown: open connections are closed) and waits for it to exit.
    pub fn stop(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data().to_str().ok_or("non-UTF-8 temp dir")?,
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Freezes the server (SIGSTOP to the postmaster and every backend): connections stay open
    /// and nothing answers, as when a database host hangs.
    pub fn pause(&self) -> Result<(), String> {
        self.signal_all(nix::sys::signal::Signal::SIGSTOP)
    }

    /// Lets a paused server run again (SIGCONT).
    pub fn resume(&self) -> Result<(), String> {
        self.signal_all(nix::sys::signal::Signal::SIGCONT)
    }

    fn signal_all(&self, signal: nix::sys::signal::Signal) -> Result<(), String> {
        use nix::unistd::Pid;
        let pid_file = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("{}: {e}", pid_file.display()))?;
        let postmaster: i32 = text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("no pid in postmaster.pid")?;
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").map_err(|e| e.to_string())? {
            let Ok(entry) = entry else { continue };
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<i32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        for pid in pids {
            nix::sys::signal::kill(Pid::from_raw(pid), signal)
                .map_err(|e| format!("signal {signal} to {pid}: {e}"))?;
        }
        Ok(())
    }

    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(&self.root)
            .env_remove("PGDATA")
            .env("LC_ALL", "C");
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt as _;
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let output = self
            .command(self.bin.join(tool))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {tool}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// A shell that waits for its stdin to close (when this process ends, or the cluster is
    /// dropped), then stops the server and removes the directory.
    fn spawn_watchdog(&mut self) -> Result<(), String> {
        let script = r#"read _unused; "$1/pg_ctl" -D "$2/data" -m immediate -w stop >/dev/null 2>&1; rm -rf "$2""#;
        let mut child = self
            .command("/bin/sh")
            .args(["-c", script, "hexkv-pg-watchdog"])
            .arg(&self.bin)
            .arg(&self.root)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start the watchdog: {e}"))?;
        let stdin = child.stdin.take().ok_or("no watchdog stdin")?;
        *self.watchdog.lock().map_err(|e| e.to_string())? = Some((child, stdin));
        Ok(())
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // A test that failed while the server was paused must not leave it frozen.
        let _ = self.resume();
        if let Ok(mut watchdog) = self.watchdog.lock()
            && let Some((mut child, mut stdin)) = watchdog.take()
        {
            let _ = stdin.write_all(b"\n");
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// `nobody`'s uid and gid when running as root; `None` otherwise.
fn unprivileged_user() -> Result<Option<(u32, u32)>, String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(None);
    }
    let user = nix::unistd::User::from_name("nobody")
        .map_err(|e| e.to_string())?
        .ok_or("running as root, and there is no user `nobody` to run PostgreSQL as")?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_rewritten() {
        assert_eq!(
            with_database("postgres://u:p@h:5/admin?sslmode=disable", "t1"),
            "postgres://u:p@h:5/t1?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t1"), "postgres://h/t1");
        assert_eq!(with_database("postgres://h:5/", "t1"), "postgres://h:5/t1");
    }
}

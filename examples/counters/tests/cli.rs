//! The command line the platform gives every service: `config show` prints the effective
//! settings with secrets redacted, `config check FILE` names the key it refuses, and settings
//! that cannot be used stop the start with exit code 2 and the key.

use std::process::{Command, Output};

fn counters(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hexkv-example-counters"));
    command.args(args).env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_show_applies_every_layer_and_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counters.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_in_flight = 7\n[store]\nbackend = \"postgres\"\n",
    )
    .unwrap();
    let out = counters(
        &["config", "show", "--config", file.to_str().unwrap()],
        &[
            (
                "COUNTERS_STORE__POSTGRES_URL",
                "postgres://user:hunter2@db/counters",
            ),
            ("COUNTERS_HTTP__LISTEN", "127.0.0.1:9999"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    let settings: toml::Value = toml::from_str(&shown).expect("TOML");
    assert_eq!(settings["limits"]["max_in_flight"].as_integer(), Some(7));
    assert_eq!(settings["http"]["listen"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(
        settings["store"]["postgres_url"].as_str(),
        Some("<redacted>")
    );
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[test]
fn config_check_and_the_start_name_the_key_they_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[log]\nlevel = \"debug\"\n").unwrap();
    let out = counters(&["config", "check", good.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with(": ok\n"));

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "[limits]\nmax_inflight = 7\n").unwrap();
    let out = counters(&["config", "check", typo.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("max_inflight"),
        "{}",
        text(&out.stderr)
    );

    // PostgreSQL without its URL: refused at start, naming the key, before anything listens.
    let out = counters(&[], &[("COUNTERS_STORE__BACKEND", "postgres")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("store.postgres_url"),
        "{}",
        text(&out.stderr)
    );
    // Beyond loopback without an API key: refused, naming the listener.
    let out = counters(&[], &[("COUNTERS_HTTP__LISTEN", "0.0.0.0:0")]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        text(&out.stderr).contains("auth.keys"),
        "{}",
        text(&out.stderr)
    );
}

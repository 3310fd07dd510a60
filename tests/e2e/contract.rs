//! The REST API against its contract: the served OpenAPI document is the one kept in
//! `docs/openapi.json`, and schemathesis (from PyPI) generates requests from it against the real
//! binary with every check on: no 5xx; every response matches the document (each status it
//! lists for the operation, content type, headers, body schema); malformed requests get a 4xx;
//! schema-valid requests are accepted (the answers that are right for valid input are in
//! `tests/schemathesis.toml`); unsupported methods get 405 with `Allow`; and the stateful
//! phase follows the document's links. One case of the tool's own is set aside in
//! `tests/schemathesis_hooks.py`, which says why.
//!
//! schemathesis is found as `$SCHEMATHESIS`, else `schemathesis` on `PATH`; `.ci/run` installs
//! it. Without it the test says so loudly and passes, except under CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use hexkv_e2e::Server;

use crate::data_dir;

fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SCHEMATHESIS") {
        return Some(PathBuf::from(path));
    }
    Command::new("schemathesis")
        .arg("--version")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|_| PathBuf::from("schemathesis"))
}

fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
}

#[tokio::test]
async fn the_served_document_is_the_one_in_docs() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let served = reqwest::get(server.url("/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let kept = std::fs::read_to_string(workspace().join("docs/openapi.json")).unwrap();
    assert_eq!(served.trim_end(), kept.trim_end());
}

#[tokio::test]
async fn schemathesis_finds_no_5xx_and_no_response_off_the_schema() {
    let Some(schemathesis) = schemathesis() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "schemathesis is not installed, and CI is set: the contract test must run"
        );
        eprintln!(
            "*** SKIPPED the API contract test: schemathesis not found (pip install schemathesis) ***"
        );
        return;
    };
    let (tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let url = server.url("/openapi.json");
    let config = workspace().join("tests/schemathesis.toml");
    let hooks = workspace().join("tests");
    // schemathesis keeps a cache in its working directory: a temporary one.
    let cwd = tmp.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .current_dir(cwd)
            .arg("--config-file")
            .arg(config)
            .args(["run", &url, "--max-examples", "50", "--seed", "1"])
            .args(["--request-timeout", "10"])
            .env("NO_COLOR", "1")
            .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
            .env("PYTHONPATH", hooks)
            .output()
            .expect("run schemathesis")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    // It really ran: every operation was tested, in every phase that applies.
    assert!(report.contains("Tested: 7"), "{report}");
    for phase in ["✅ Coverage", "✅ Fuzzing", "✅ Stateful"] {
        assert!(report.contains(phase), "{phase} missing:\n{report}");
    }
}

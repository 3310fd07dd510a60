//! Configuration reload in the real binary: the file edited while clients run, SIGHUP, an
//! invalid file kept out, and feature flags flipped by editing the file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hexkv_e2e::Server;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use nix::sys::signal::Signal;
use reqwest::{Client, StatusCode};
use tonic::Code;

use crate::data_dir;

/// Replaces the configuration file the way editors and Kubernetes do: a new file renamed over
/// the old one.
fn write_config(path: &Path, body: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The JSON log lines whose message is `message`.
fn lines(server: &Server, message: &str) -> Vec<serde_json::Value> {
    server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == message)
        .collect()
}

/// Waits until `message` has been logged more than `seen` times; returns the newest such line.
async fn logged(server: &Server, message: &str, seen: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = lines(server, message);
        if found.len() > seen {
            return found.last().unwrap().clone();
        }
        assert!(
            Instant::now() < deadline,
            "never logged {message:?}:\n{}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start_with_config(body: &str) -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let (tmp, data) = data_dir();
    let file = tmp.path().join("hexkv.toml");
    write_config(&file, body);
    let server = Server::start(&data, &["--config", file.to_str().unwrap()], &[]);
    (tmp, file, server)
}

/// A client keeps reading while the file changes the log level (warn → info) and turns
/// throttling on: none of its requests fails, request lines start to appear, and a greedy client
/// is now throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_level_and_a_rate_limit_change_while_a_client_runs() {
    let (_tmp, file, server) = start_with_config("[log]\nlevel = \"warn\"\n");
    let server = Arc::new(server);
    let client = Client::new();
    let stop = Arc::new(AtomicBool::new(false));
    let steady = {
        let (client, server, stop) = (client.clone(), Arc::clone(&server), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let r = client
                    .get(server.url("/v1/kv/k"))
                    .header("x-api-key", "steady")
                    .send()
                    .await
                    .expect("the server answers");
                answers.push(r.status());
                // 300 a minute: half the rate the reload allows.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        lines(&server, "request finished").is_empty(),
        "nothing below WARN yet"
    );

    write_config(
        &file,
        "[log]\nlevel = \"info\"\n[limits]\nthrottle_per_minute = 600\nthrottle_burst = 20\n",
    );
    let reloaded = logged(&server, "configuration reloaded", 0).await;
    let changed = reloaded["changed"].as_str().unwrap_or_default().to_owned();
    for key in [
        "log.level",
        "limits.throttle_per_minute",
        "limits.throttle_burst",
    ] {
        assert!(changed.contains(key), "{reloaded}");
    }
    // Request lines appear now.
    logged(&server, "request finished", 0).await;

    // A greedy client is held to its burst.
    let mut throttled = 0;
    for _ in 0..40 {
        let r = client
            .get(server.url("/v1/kv/k"))
            .header("x-api-key", "greedy")
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            throttled += 1;
        }
    }
    assert!(throttled > 0, "the new rate applies");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let answers = steady.await.unwrap();
    assert!(answers.len() >= 4, "{answers:?}");
    assert!(
        answers.iter().all(|s| *s == StatusCode::NOT_FOUND),
        "a steady client's request failed: {answers:?}"
    );
}

/// `read_only` turned on and off by editing the file; an invalid file in between is refused
/// and changes nothing; a setting that needs a restart is named; SIGHUP reloads too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_flags_follow_the_file_and_an_invalid_file_is_kept_out() {
    let (_tmp, file, server) = start_with_config("[flags]\nread_only = false\n");
    let client = Client::new();
    let put = |body: &'static str| client.put(server.url("/v1/kv/k")).body(body).send();
    assert_eq!(put("one").await.unwrap().status(), StatusCode::CREATED);

    write_config(&file, "[flags]\nread_only = true\n");
    logged(&server, "configuration reloaded", 0).await;
    let refused = put("two").await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let problem: serde_json::Value =
        serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(problem["code"], "read_only");
    let read = client.get(server.url("/v1/kv/k")).send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK, "reads go on");
    assert_eq!(&read.bytes().await.unwrap()[..], b"one");

    // Invalid: a typo in a flag's name. Refused; read_only stays on.
    write_config(&file, "[flags]\nread_onyl = false\n");
    let refusal = logged(
        &server,
        "configuration reload refused; the running configuration is kept",
        0,
    )
    .await;
    assert!(
        refusal["error"]
            .as_str()
            .unwrap()
            .contains("flags.read_onyl"),
        "{refusal}"
    );
    assert_eq!(
        put("three").await.unwrap().status(),
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Back to writable, with a change that needs a restart.
    write_config(
        &file,
        "[flags]\nread_only = false\n[limits]\nmax_value_bytes = 2048\n",
    );
    logged(&server, "configuration reloaded", 1).await;
    let warning = logged(
        &server,
        "these settings change only on restart; their running values are kept",
        0,
    )
    .await;
    assert!(
        warning["settings"]
            .as_str()
            .unwrap()
            .contains("limits.max_value_bytes"),
        "{warning}"
    );
    assert_eq!(put("four").await.unwrap().status(), StatusCode::OK);

    // SIGHUP reloads without a file change.
    server.signal(Signal::SIGHUP);
    logged(&server, "received SIGHUP: reloading the configuration", 0).await;
    assert_eq!(
        client
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// `list_keys` at 50%: each client (here, each address: no keys are configured) gets the same
/// answer every time, over REST and gRPC alike, and some clients get the listing while others
/// get 404 `feature_disabled` / UNIMPLEMENTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_percentage_rollout_gates_the_listing_per_client() {
    let (_tmp, _file, server) = start_with_config("[flags]\nlist_keys = 50\n");
    let (mut on, mut off) = (0, 0);
    for i in 10..50 {
        let address = std::net::IpAddr::from([127, 0, 0, i]);
        let client = Client::builder().local_address(address).build().unwrap();
        let mut answers = Vec::new();
        for _ in 0..2 {
            let r = client.get(server.url("/v1/kv")).send().await.unwrap();
            let status = r.status();
            if status == StatusCode::NOT_FOUND {
                let problem: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                assert_eq!(problem["code"], "feature_disabled");
            } else {
                assert_eq!(status, StatusCode::OK);
            }
            answers.push(status);
        }
        assert_eq!(answers[0], answers[1], "{address} got two answers");
        let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
            .unwrap()
            .local_address(Some(address))
            .connect()
            .await
            .unwrap();
        let over_grpc = KeyValueClient::new(channel)
            .list(pb::ListRequest {
                prefix: Bytes::new(),
                limit: 0,
                cursor: String::new(),
            })
            .await;
        if answers[0] == StatusCode::OK {
            on += 1;
            assert!(over_grpc.is_ok(), "{address}: {over_grpc:?}");
        } else {
            off += 1;
            assert_eq!(
                over_grpc.unwrap_err().code(),
                Code::Unimplemented,
                "{address}"
            );
        }
    }
    assert!(on > 0 && off > 0, "on {on}, off {off}");
}

/// `hexkv config check FILE` validates a file before it is deployed or reloaded.
#[test]
fn config_check_validates_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[flags]\nlist_keys = 30\n[limits]\nmax_in_flight = 64\n",
    )
    .unwrap();
    let out = hexkv_e2e::run_hexkv(&["config", "check", good.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[flags]\nlist_keys = 130\n").unwrap();
    let out = hexkv_e2e::run_hexkv(&["config", "check", bad.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flags.list_keys") && stderr.contains("0 to 100"),
        "{stderr}"
    );
}

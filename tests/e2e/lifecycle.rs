//! Start, shutdown and configuration of the real binary.

use std::time::{Duration, Instant};

use hexkv_e2e::{Server, run_hexkv};
use nix::sys::signal::Signal;
use reqwest::{Client, StatusCode};

use crate::data_dir;

/// After SIGTERM, `/readyz` fails while the server keeps serving for the readiness delay; a
/// second SIGTERM cuts the delay short, and the process exits 0.
#[tokio::test]
async fn sigterm_drains_with_readiness_failing_first() {
    let (_tmp, data) = data_dir();
    // A delay far longer than the test needs, so a slow machine cannot close the window; the
    // second signal ends it.
    let mut server = Server::start(
        &data,
        &[],
        &[("HEXKV_SHUTDOWN__READINESS_DELAY_MS", "120000")],
    );
    let client = Client::new();
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    server.signal(Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut saw_not_ready = false;
    while Instant::now() < deadline {
        match client.get(server.url("/readyz")).send().await {
            Ok(r) if r.status() == StatusCode::SERVICE_UNAVAILABLE => {
                let body: serde_json::Value =
                    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
                assert_eq!(body["status"], "not_ready");
                saw_not_ready = true;
                break;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    assert!(saw_not_ready, "/readyz never answered 503 during the drain");
    // gRPC health follows: NOT_SERVING while draining.
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "hexkv.v1.KeyValue".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    // Requests are still served while draining.
    let live = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);

    server.signal(Signal::SIGTERM);
    let status = server.wait();
    assert!(status.success(), "{status}");
    let logs = server.logs();
    assert!(logs.contains("skipping the readiness delay"), "{logs}");
    assert!(logs.contains("shutdown complete"), "{logs}");
}

#[tokio::test]
async fn a_data_directory_serves_one_process_at_a_time() {
    let (_tmp, data) = data_dir();
    let _first = Server::start(&data, &[], &[]);
    let failure = match Server::try_start(&data, &[], &[]) {
        Ok(_) => panic!("two processes opened one data directory"),
        Err(failure) => failure,
    };
    assert_eq!(failure.status.code(), Some(1));
    assert!(failure.stderr.contains("in use"), "{}", failure.stderr);
}

#[test]
fn invalid_configuration_names_the_key_and_exits_2() {
    let out = run_hexkv(&["serve"], &[("HEXKV_LIMITS__MAX_VALUE_BYTES", "0")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("limits.max_value_bytes"), "{stderr}");

    let out = run_hexkv(&["serve", "--http-listen", "not-an-address"], &[]);
    assert_eq!(out.status.code(), Some(2));

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("hexkv.toml");
    std::fs::write(&file, "[http]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = run_hexkv(&["--config", file.to_str().unwrap(), "config", "show"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lisen"), "{stderr}");

    // A flag that is not UTF-8 is a usage error, not a crash.
    use std::os::unix::ffi::OsStrExt as _;
    let out = std::process::Command::new(hexkv_e2e::hexkv_bin())
        .args(["config", "show", "--data-dir"])
        .arg(std::ffi::OsStr::from_bytes(b"/tmp/\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("UTF-8"),
        "{out:?}"
    );
}

#[test]
fn config_show_prints_the_effective_configuration() {
    let out = run_hexkv(
        &["config", "show", "--fsync", "interval"],
        &[("HEXKV_HTTP__LISTEN", "127.0.0.1:9999")],
    );
    assert!(out.status.success());
    let shown: toml::Value = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(shown["http"]["listen"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(shown["store"]["memory"]["fsync"].as_str(), Some("interval"));
}

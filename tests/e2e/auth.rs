//! API keys in the real binary: keys made by `hexkv auth hash-key`, configured as hashes,
//! required on both front ends and by the command-line client, rotated by a reload; and the
//! refusal to serve beyond loopback without keys.

use std::path::Path;
use std::time::{Duration, Instant};

use hexkv_client::{Client as KvClient, ClientError, ClientOptions, Code, Precondition};
use hexkv_e2e::{Server, run_hexkv};
use reqwest::{Client, StatusCode};

use crate::data_dir;

/// A new key and its hash, from the binary.
pub(crate) fn generate() -> (String, String) {
    let out = run_hexkv(&["auth", "hash-key", "--generate"], &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .to_owned()
    };
    (field("key:"), field("hash:"))
}

fn keys_config(keys: &[(&str, &str, &str, Option<&str>)]) -> String {
    let mut body = String::new();
    for (name, hash, role, prefix) in keys {
        body.push_str(&format!(
            "[[auth.keys]]\nname = \"{name}\"\nhash = \"{hash}\"\nrole = \"{role}\"\n"
        ));
        if let Some(prefix) = prefix {
            body.push_str(&format!("prefix = \"{prefix}\"\n"));
        }
    }
    body
}

fn write_config(path: &Path, body: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn keys_guard_rest_grpc_and_the_cli_and_rotate_on_reload() {
    let (writer_key, writer_hash) = generate();
    let (reader_key, reader_hash) = generate();
    let (tmp, data) = data_dir();
    let file = tmp.path().join("hexkv.toml");
    write_config(
        &file,
        &keys_config(&[
            ("writer", &writer_hash, "write", Some("app/")),
            ("reader", &reader_hash, "read", None),
        ]),
    );
    let server = Server::start(&data, &["--config", file.to_str().unwrap()], &[]);
    let http = Client::new();
    let url = server.url("/v1/kv/app/greeting");

    // REST: no key, a wrong key, the wrong role.
    let status = http.put(&url).body("hi").send().await.unwrap().status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = http
        .put(&url)
        .bearer_auth("hexkv_wrong")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = http
        .put(&url)
        .bearer_auth(&reader_key)
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = http
        .put(&url)
        .bearer_auth(&writer_key)
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // Probes stay open by default.
    let status = http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);

    // gRPC through the client SDK.
    let grpc = KvClient::connect(server.grpc_endpoint(), ClientOptions::default())
        .await
        .unwrap();
    match grpc.get("app/greeting").await {
        Err(ClientError::Other { code, .. }) => assert_eq!(code, Code::Unauthenticated),
        other => panic!("expected UNAUTHENTICATED, got {other:?}"),
    }
    let reader = grpc.clone().with_api_key(&reader_key).unwrap();
    assert_eq!(
        reader.get("app/greeting").await.unwrap().value.as_ref(),
        b"hi"
    );
    match reader.put("app/x", "v", Precondition::None).await {
        Err(ClientError::Other { code, .. }) => assert_eq!(code, Code::PermissionDenied),
        other => panic!("expected PERMISSION_DENIED, got {other:?}"),
    }
    let writer = grpc.with_api_key(&writer_key).unwrap();
    match writer.put("outside", "v", Precondition::None).await {
        Err(ClientError::Other { code, .. }) => assert_eq!(code, Code::PermissionDenied),
        other => panic!("expected PERMISSION_DENIED outside the prefix, got {other:?}"),
    }

    // The command-line client takes the key from HEXKV_API_KEY.
    let endpoint = server.url("");
    let get = [
        "get",
        "app/greeting",
        "--protocol",
        "http",
        "--endpoint",
        &endpoint,
    ];
    let out = run_hexkv(&get, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthenticated"));
    let out = run_hexkv(&get, &[("HEXKV_API_KEY", &reader_key)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"hi");

    // Rotation: the reader's key replaced by a new one, live.
    let (new_key, new_hash) = generate();
    write_config(
        &file,
        &keys_config(&[
            ("writer", &writer_hash, "write", Some("app/")),
            ("reader", &new_hash, "read", None),
        ]),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = http
            .get(&url)
            .bearer_auth(&new_key)
            .send()
            .await
            .unwrap()
            .status();
        if status == StatusCode::OK {
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(Instant::now() < deadline, "the new key never worked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = http
        .get(&url)
        .bearer_auth(&reader_key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the old key is revoked");

    // Refusals were logged with the key's name, and no key ever reached the log.
    let logs = server.logs();
    assert!(logs.contains("request refused by authentication"), "{logs}");
    assert!(logs.contains(r#""key_name":"reader""#), "{logs}");
    for secret in [&writer_key, &reader_key, &new_key] {
        assert!(!logs.contains(secret.as_str()), "a key was logged");
    }
}

#[tokio::test]
async fn serving_beyond_loopback_without_keys_refuses_to_start() {
    let (_tmp, data) = data_dir();
    let args = [
        "serve",
        "--http-listen",
        "0.0.0.0:0",
        "--grpc-listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let out = run_hexkv(&args, &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("auth.keys") && stderr.contains("0.0.0.0:0"),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing was started");
}

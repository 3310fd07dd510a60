//! The command-line client (`hexkv get|put|delete|list`) against the real service: both
//! protocols, binary values through stdin and stdout, JSON output, and every exit code.

use std::process::Output;

use hexkv_e2e::{Server, run_hexkv_stdin};
use serde_json::Value as Json;

use crate::data_dir;

const NOT_FOUND: i32 = 3;
const PRECONDITION_FAILED: i32 = 4;
const UNAVAILABLE: i32 = 5;
const USAGE: i32 = 2;

/// The protocols and the endpoint flags that reach `server` with them.
fn protocols(server: &Server) -> [(&'static str, [String; 4]); 2] {
    [
        (
            "grpc",
            [
                "--endpoint".into(),
                server.grpc_endpoint(),
                "--protocol".into(),
                "grpc".into(),
            ],
        ),
        (
            "http",
            [
                "--endpoint".into(),
                server.url(""),
                "--protocol".into(),
                "http".into(),
            ],
        ),
    ]
}

/// Runs `hexkv <args> <connection>` with `stdin`.
fn cli(args: &[&str], connection: &[String], stdin: &[u8]) -> Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(connection.iter().map(String::as_str));
    run_hexkv_stdin(&all, stdin)
}

#[track_caller]
fn assert_exit(output: &Output, code: i32, what: &str) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: stdout {:?}, stderr {:?}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn json(bytes: &[u8]) -> Json {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(bytes)))
}

#[test]
fn values_round_trip_byte_exact_over_both_protocols() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    // Every byte value, a trailing newline and a NUL included.
    let binary: Vec<u8> = (0..=255u8).chain([b'\n', 0]).collect();
    let file = data.with_extension("value");
    std::fs::write(&file, b"from a file").unwrap();
    let file = file.to_str().unwrap();

    for (protocol, conn) in protocols(&server) {
        let key = format!("{protocol}/bin");
        let put = cli(&["put", &key], &conn, &binary);
        assert_exit(&put, 0, "put from stdin");
        let version: u64 = String::from_utf8(put.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();

        let get = cli(&["get", &key], &conn, b"");
        assert_exit(&get, 0, "get");
        assert_eq!(
            get.stdout, binary,
            "{protocol}: stdout is the value, byte-exact"
        );

        let get = cli(&["get", &key, "--output", "json"], &conn, b"");
        assert_exit(&get, 0, "get json");
        let body = json(&get.stdout);
        assert_eq!(body["version"], version);
        assert_eq!(body["key"], key.as_str());
        assert_eq!(body["value"], Json::Null, "not UTF-8");
        assert!(
            body["value_base64"]
                .as_str()
                .unwrap()
                .starts_with("AAECAwQF")
        );

        let arg = format!("{protocol}/arg");
        assert_exit(&cli(&["put", &arg, "héllo"], &conn, b""), 0, "put arg");
        assert_eq!(cli(&["get", &arg], &conn, b"").stdout, "héllo".as_bytes());

        let from_file = format!("{protocol}/file");
        assert_exit(
            &cli(&["put", &from_file, "--file", file], &conn, b""),
            0,
            "put --file",
        );
        let get = cli(&["get", &from_file, "-o", "json"], &conn, b"");
        assert_eq!(json(&get.stdout)["value"], "from a file");

        let dash = format!("{protocol}/dash");
        assert_exit(
            &cli(&["put", &dash, "--file", "-"], &conn, b"piped"),
            0,
            "put --file -",
        );
        assert_eq!(cli(&["get", &dash], &conn, b"").stdout, b"piped");

        // An empty value is a value.
        let empty = format!("{protocol}/empty");
        assert_exit(&cli(&["put", &empty, ""], &conn, b""), 0, "put empty");
        let get = cli(&["get", &empty], &conn, b"");
        assert_exit(&get, 0, "get empty");
        assert!(get.stdout.is_empty());
    }
}

#[test]
fn preconditions_and_deletes_with_their_exit_codes() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    for (protocol, conn) in protocols(&server) {
        let key = format!("{protocol}/cas");
        let created = cli(
            &["put", &key, "v1", "--create-only", "-o", "json"],
            &conn,
            b"",
        );
        assert_exit(&created, 0, "create");
        let created = json(&created.stdout);
        assert_eq!(created["created"], true);
        let v1 = created["version"].as_u64().unwrap();

        let again = cli(&["put", &key, "v1", "--create-only"], &conn, b"");
        assert_exit(
            &again,
            PRECONDITION_FAILED,
            "create-only on an existing key",
        );
        assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("version is {v1}")));

        let v1s = v1.to_string();
        let swapped = cli(&["put", &key, "v2", "--if-version", &v1s], &conn, b"");
        assert_exit(&swapped, 0, "compare-and-swap");

        let stale = cli(
            &["put", &key, "v3", "--if-version", &v1s, "-o", "json"],
            &conn,
            b"",
        );
        assert_exit(&stale, PRECONDITION_FAILED, "stale compare-and-swap");
        let err = json(&stale.stderr);
        assert_eq!(err["error"], "precondition_failed");
        assert!(err["current_version"].as_u64().unwrap() > v1);
        assert_eq!(cli(&["get", &key], &conn, b"").stdout, b"v2");

        let stale_delete = cli(&["delete", &key, "--if-version", &v1s], &conn, b"");
        assert_exit(&stale_delete, PRECONDITION_FAILED, "stale delete");

        let deleted = cli(&["delete", &key, "-o", "json"], &conn, b"");
        assert_exit(&deleted, 0, "delete");
        let expected = if protocol == "grpc" {
            Json::Bool(true)
        } else {
            Json::Null // the REST API does not say
        };
        assert_eq!(json(&deleted.stdout)["deleted"], expected);
        assert_exit(&cli(&["delete", &key], &conn, b""), 0, "delete again");

        let missing = cli(&["get", &key], &conn, b"");
        assert_exit(&missing, NOT_FOUND, "get of a deleted key");
        assert!(missing.stdout.is_empty());
        let missing = cli(&["get", &key, "-o", "json"], &conn, b"");
        assert_eq!(json(&missing.stderr)["error"], "not_found");
    }
}

#[test]
fn bad_input_is_a_usage_error_and_changes_nothing() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &["--max-value-bytes", "16"], &[]);
    for (protocol, conn) in protocols(&server) {
        let what = |w: &str| format!("{protocol}: {w}");
        // Rejected by the server.
        let bad_key = cli(&["put", "bad\u{7}key", "v"], &conn, b"");
        assert_exit(&bad_key, USAGE, &what("a control character in the key"));
        let key = format!("{protocol}/big");
        let big = cli(&["put", &key], &conn, &[b'x'; 17]);
        assert_exit(&big, USAGE, &what("a value over the limit"));
        assert_exit(
            &cli(&["get", &key], &conn, b""),
            NOT_FOUND,
            &what("not written"),
        );
        // Rejected by the command line.
        assert_exit(&cli(&["get"], &conn, b""), USAGE, &what("no key"));
        assert_exit(
            &cli(
                &["put", "k", "v", "--if-version", "1", "--create-only"],
                &conn,
                b"",
            ),
            USAGE,
            &what("two preconditions"),
        );
        assert_exit(
            &cli(&["put", "k", "v", "--if-version", "seven"], &conn, b""),
            USAGE,
            &what("a version that is not a number"),
        );
        assert_exit(
            &cli(&["put", "k", "--file", "/nonexistent/value"], &conn, b""),
            USAGE,
            &what("an unreadable file"),
        );
        assert_exit(
            &cli(&["get", "k"], &conn, b""),
            NOT_FOUND,
            &what("nothing written"),
        );
    }
}

#[test]
fn an_unreachable_service_is_exit_code_5() {
    // Bind and drop a listener to find a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    for protocol in ["grpc", "http"] {
        let conn = [
            "--endpoint".to_owned(),
            format!("http://127.0.0.1:{port}"),
            "--protocol".to_owned(),
            protocol.to_owned(),
            "--timeout-ms".to_owned(),
            "500".to_owned(),
        ];
        let out = cli(&["get", "k", "-o", "json"], &conn, b"");
        assert_exit(&out, UNAVAILABLE, protocol);
        assert_eq!(json(&out.stderr)["error"], "unavailable");
    }
}

#[tokio::test]
async fn list_pages_through_every_key_in_order() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &["--fsync", "never"], &[]);
    // More keys than one page of the CLI's listing (1000).
    let client = reqwest::Client::new();
    let mut expected: Vec<String> = (0..1203).map(|i| format!("many/{i:05}")).collect();
    for chunk in expected.chunks(64) {
        let puts = chunk.iter().map(|k| {
            let client = client.clone();
            let url = server.url(&format!("/v1/kv/{k}"));
            async move { client.put(url).body("x").send().await.unwrap().status() }
        });
        for status in futures_join_all(puts).await {
            assert!(status.is_success());
        }
    }
    crate::put(&client, &server, "other/1", b"y".to_vec()).await;
    expected.sort();

    for (protocol, conn) in protocols(&server) {
        let listed = cli(&["list", "many/"], &conn, b"");
        assert_exit(&listed, 0, "list");
        let keys: Vec<String> = String::from_utf8(listed.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(keys, expected, "{protocol}");

        let limited = cli(&["list", "many/", "--limit", "3", "-o", "json"], &conn, b"");
        assert_exit(&limited, 0, "list --limit");
        let items = json(&limited.stdout)["items"].as_array().unwrap().clone();
        let keys: Vec<&str> = items.iter().map(|i| i["key"].as_str().unwrap()).collect();
        assert_eq!(keys, &expected[..3], "{protocol}");
        assert!(items.iter().all(|i| i["version"].as_u64().unwrap() > 0));

        let all = cli(&["list"], &conn, b"");
        assert_eq!(String::from_utf8(all.stdout).unwrap().lines().count(), 1204);
    }
}

/// Awaits every future (a `join_all` without the futures crate).
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("task"));
    }
    out
}

#[test]
fn other_failures_are_exit_code_1() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    // gRPC sent to the REST port: an HTTP/2 server that answers 404, which no gRPC server does.
    let wrong_port = [
        "--endpoint".to_owned(),
        server.url(""),
        "--protocol".to_owned(),
        "grpc".to_owned(),
    ];
    let out = cli(&["get", "k", "-o", "json"], &wrong_port, b"");
    assert_exit(&out, 1, "gRPC to the REST port");
    assert_eq!(json(&out.stderr)["error"], "failed");

    // A value that cannot be written to stdout.
    let conn = &protocols(&server)[0].1;
    assert_exit(&cli(&["put", "k", "v"], conn, b""), 0, "put");
    let Ok(full) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
        return; // no /dev/full on this system
    };
    let out = std::process::Command::new(hexkv_e2e::hexkv_bin())
        .args(["get", "k"])
        .args(conn)
        .stdout(full)
        .output()
        .expect("run hexkv");
    assert_exit(&out, 1, "stdout is /dev/full");
}

/// `hexkv probe`, the container's health check: 0 for a healthy service, 1 for a closed port
/// or a non-2xx answer.
#[test]
fn probe_reports_health_by_exit_code() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let out = hexkv_e2e::run_hexkv(&["probe", &server.url("/healthz")], &[]);
    assert_exit(&out, 0, "probe of /healthz");
    assert!(String::from_utf8_lossy(&out.stdout).contains("200"));
    let out = hexkv_e2e::run_hexkv(&["probe", &server.url("/no/such/route")], &[]);
    assert_exit(&out, 1, "probe of a 404");
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let out = hexkv_e2e::run_hexkv(&["probe", &format!("http://{closed}/healthz")], &[]);
    assert_exit(&out, 1, "probe of a closed port");
    let out = hexkv_e2e::run_hexkv(&["probe", "https://127.0.0.1:1/"], &[]);
    assert_exit(&out, 1, "probe of an https URL");
}

//! The counters binary on the platform's shell, as an operator runs it: a configuration file
//! with the environment over it, TLS with a certificate from files, an API key confined to a
//! prefix of counter names, readiness, a metrics scrape, a reload on SIGHUP that rotates the
//! key, and a graceful exit on SIGTERM.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A request over TLS to `addr`, trusting `root`; the whole response.
async fn https(addr: SocketAddr, root: &rcgen::Certificate, request: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn serves_over_tls_from_its_configuration_reloads_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config = dir.path().join("counters.toml");
    // The file's address is taken; the environment's (a free port) must win over it.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // One API key, for the counters whose names start with `page.`; the probes stay open.
    let write_config = |level: &str, api_key: &str| {
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"{}\"\n[tls]\ncert = {cert:?}\nkey = {key:?}\n\
                 [log]\nlevel = \"{level}\"\n[shutdown]\nreadiness_delay_ms = 3000\n\
                 [[auth.keys]]\nname = \"pages\"\nhash = \"{}\"\nrole = \"write\"\nprefix = \"page.\"\n",
                taken.local_addr().unwrap(),
                hexkv_platform::auth::hash_key(api_key),
            ),
        )
        .unwrap()
    };
    write_config("info", "first-key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hexkv-example-counters"))
        .arg("--config")
        .arg(&config)
        .env("COUNTERS_HTTP__LISTEN", "127.0.0.1:0")
        .env("COUNTERS_GRPC__LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, mut lines) = common::listening(&mut child);
    assert_ne!(addr, taken.local_addr().unwrap());

    let add = |name: &str, api_key: Option<&str>| {
        let body = r#"{"delta": 2}"#;
        let authorization = api_key
            .map(|k| format!("authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "POST /v1/counters/{name} HTTP/1.1\r\nhost: localhost\r\n{authorization}\
             content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let root = certified.cert.clone();
        async move { https(addr, &root, &request).await }
    };
    let response = add("page.views", Some("first-key")).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""value":2"#), "{response}");
    // Without the key, or outside its prefix, nothing is added.
    let response = add("page.views", None).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(
        response.contains(r#""code":"unauthenticated""#),
        "{response}"
    );
    assert!(
        response.contains(&format!(
            r#"www-authenticate: Bearer realm="{}""#,
            hexkv_example_counters::NAME
        )),
        "{response}"
    );
    let response = add("orders", Some("first-key")).await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains(r#""code":"permission_denied""#),
        "{response}"
    );
    let ready = https(
        addr,
        &certified.cert,
        "GET /readyz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    assert!(ready.contains(r#""name":"store","ok":true"#), "{ready}");
    let scrape = https(
        addr,
        &certified.cert,
        "GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    assert!(
        scrape.lines().any(
            |l| l.starts_with("hexkv_http_request_duration_seconds_count")
                && l.contains(r#"method="POST""#)
                && l.contains(r#"route="/v1/counters/{name}""#)
                && l.contains(r#"status="200""#)
                && l.ends_with(" 1")
        ),
        "the POST is counted by route: {scrape}"
    );

    // A reload (SIGHUP; the file's change triggers one too) applies the new log level and
    // rotates the key.
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    write_config("debug", "second-key");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let reloaded = loop {
        let line = lines.next().expect("the service logs the reload").unwrap();
        if line.contains("configuration reloaded") {
            break line;
        }
    };
    assert!(reloaded.contains(r#""log_level":"debug""#), "{reloaded}");
    let response = add("page.views", Some("first-key")).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let response = add("page.views", Some("second-key")).await;
    assert!(response.contains(r#""value":4"#), "{response}");

    // SIGTERM: readiness fails at once, while the listener still serves for the delay.
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let readyz = "GET /readyz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n";
    let draining = loop {
        let answer = https(addr, &certified.cert, readyz).await;
        if answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert!(
        draining.contains(r#""name":"draining","ok":false"#),
        "{draining}"
    );
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
    let logged: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        logged.iter().any(|l| l.contains("closing the listeners")),
        "the drain ran: {logged:#?}"
    );
}

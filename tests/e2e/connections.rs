//! Slow and idle clients in the real binary: connections that trickle their request headers
//! (slowloris), or never send their preface, are closed within `limits.header_read_timeout_ms`;
//! connections past the per-address cap are closed as soon as they are accepted; idle
//! connections are closed after `limits.idle_timeout_ms` — and all the while a normal client and
//! the probes are served.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hexkv_e2e::Server;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use reqwest::{Client, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

use crate::data_dir;

/// How long the server gives a connection for its headers, in the test.
const HEADER_TIMEOUT: Duration = Duration::from_millis(1_000);

/// A connection from `from` to `to`.
async fn connect(from: IpAddr, to: SocketAddr) -> tokio::net::TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

/// A slowloris connection: a request line, then one header byte every 100 ms, never the blank
/// line that ends the headers. Returns how long the server kept it open, or `None` if it was
/// still open after `give_up`.
async fn trickle(from: IpAddr, to: SocketAddr, give_up: Duration) -> Option<Duration> {
    let mut stream = connect(from, to).await;
    let opened = Instant::now();
    let _ = stream
        .write_all(b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n")
        .await;
    let mut buf = [0_u8; 512];
    while opened.elapsed() < give_up {
        if stream.write_all(b"x").await.is_err() {
            return Some(opened.elapsed());
        }
        // Closed by the server: the read ends (EOF, or a reset).
        let read = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0) | Err(_))) {
            return Some(opened.elapsed());
        }
    }
    None
}

/// A connection that sends nothing at all (no HTTP/2 preface, no request line): how long it
/// stayed open.
async fn silent(from: IpAddr, to: SocketAddr, give_up: Duration) -> Option<Duration> {
    let mut stream = connect(from, to).await;
    let opened = Instant::now();
    let mut buf = [0_u8; 512];
    loop {
        match tokio::time::timeout(give_up, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(opened.elapsed()),
            // A server may say something before closing (an HTTP/2 SETTINGS frame).
            Ok(Ok(_)) => continue,
        }
    }
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_clients_are_cut_off_and_normal_ones_still_served() {
    let (_tmp, data) = data_dir();
    let server = Server::start(
        &data,
        &[],
        &[
            ("HEXKV_LIMITS__HEADER_READ_TIMEOUT_MS", "1000"),
            ("HEXKV_LIMITS__IDLE_TIMEOUT_MS", "1500"),
            ("HEXKV_LIMITS__MAX_CONNECTIONS_PER_CLIENT", "40"),
        ],
    );
    let attacker: IpAddr = "127.0.0.1".parse().unwrap();
    let give_up = Duration::from_secs(30);

    // 100 slowloris connections on the REST port and 20 silent ones on the gRPC port, all from
    // one address: 40 are admitted, the rest closed at once.
    let mut slow = Vec::new();
    for _ in 0..100 {
        slow.push(tokio::spawn(trickle(attacker, server.http, give_up)));
    }
    for _ in 0..20 {
        slow.push(tokio::spawn(silent(attacker, server.grpc, give_up)));
    }

    // Meanwhile a normal client, from another address, and the probes are served.
    let normal = Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    for round in 0..5 {
        for probe in ["/healthz", "/readyz"] {
            let response = normal.get(server.url(probe)).send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{probe} in round {round}"
            );
        }
        let put = normal
            .put(server.url(&format!("/v1/kv/during-{round}")))
            .body("v")
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), StatusCode::CREATED);
        let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
            .unwrap()
            .local_address(Some(IpAddr::from([127, 0, 0, 2])))
            .connect()
            .await
            .unwrap();
        let entry = KeyValueClient::new(channel)
            .get(pb::GetRequest {
                key: format!("during-{round}").into_bytes().into(),
            })
            .await
            .unwrap()
            .into_inner()
            .entry
            .unwrap();
        assert_eq!(&entry.value[..], b"v");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every slow connection was closed, the admitted ones after about the header timeout.
    let mut lifetimes = Vec::new();
    for task in slow {
        let lifetime = task
            .await
            .unwrap()
            .expect("a slow connection was never closed");
        lifetimes.push(lifetime);
    }
    lifetimes.sort();
    let refused = lifetimes
        .iter()
        .filter(|l| **l < HEADER_TIMEOUT / 2)
        .count();
    assert!(
        refused >= 120 - 40,
        "{refused} closed at once: {lifetimes:?}"
    );
    let longest = *lifetimes.last().unwrap();
    assert!(
        longest < HEADER_TIMEOUT * 5,
        "the slowest was held {longest:?}"
    );
    eprintln!(
        "closed at once: {refused}; the admitted ones after {:?} to {longest:?}",
        lifetimes[refused.min(lifetimes.len() - 1)]
    );

    // The metrics say so, and the open connections are back to the normal client's.
    let text = normal
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric(&text, "hexkv_connections_refused_total{") >= 80.0,
        "{text}"
    );
    assert!(metric(&text, "hexkv_connections_timed_out_total{") >= 40.0);
    assert!(metric(&text, "hexkv_connections_open{") >= 1.0);

    // An idle keep-alive connection is closed too.
    let mut idle = connect(IpAddr::from([127, 0, 0, 4]), server.http).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0_u8; 4096];
    let read = idle.read(&mut buf).await.unwrap();
    assert!(buf[..read].starts_with(b"HTTP/1.1 200"));
    let waited = Instant::now();
    let closed = tokio::time::timeout(give_up, async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle connection stayed open");
    eprintln!(
        "the idle connection was closed after {:?}",
        waited.elapsed()
    );
}

//! What the real binary tells operators: the Prometheus exposition after known traffic, the
//! request log lines, and log sampling.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hexkv_e2e::Server;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use reqwest::{Client, StatusCode};
use tonic::Code;

use crate::{data_dir, put};

/// One sample of the exposition: the metric name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Parses Prometheus text format (0.0.4): every sample line, by name and labels. Checks the
/// format as it goes: each sample belongs to a family declared by `# TYPE` before it.
fn parse(text: &str) -> BTreeMap<Series, f64> {
    let mut families: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let name = parts.next().expect("a family name");
            let kind = parts.next().expect("a type");
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                "{line}"
            );
            families.push(name.to_owned());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("labels end with }");
                let mut labels = BTreeMap::new();
                // Label values here never contain `",`; the parser relies on it.
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
                    labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                }
                (name.to_owned(), labels)
            }
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| families.iter().any(|f| f == base))
            .unwrap_or(&name);
        assert!(
            families.iter().any(|f| f == family),
            "sample without a # TYPE: {line}"
        );
        samples.insert((name, labels), value);
    }
    samples
}

/// The value of `name{labels}`, 0 when absent.
fn value(samples: &BTreeMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .get(&(name.to_owned(), labels))
        .copied()
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_known_traffic() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let http = Client::new();
    let mut grpc = KeyValueClient::connect(server.grpc_endpoint())
        .await
        .unwrap();

    for key in ["a", "b", "c"] {
        let (status, _) = put(&http, &server, key, b"v".to_vec()).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    for key in ["a", "b", "missing"] {
        http.get(server.url(&format!("/v1/kv/{key}")))
            .send()
            .await
            .unwrap();
    }
    http.delete(server.url("/v1/kv/c")).send().await.unwrap();
    http.get(server.url("/no/such/route")).send().await.unwrap();
    grpc.get(pb::GetRequest {
        key: Bytes::from_static(b"a"),
    })
    .await
    .unwrap();
    let missing = grpc
        .get(pb::GetRequest {
            key: Bytes::from_static(b"missing"),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let r = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    let m = parse(&text);
    // The histogram's `_count` series counts the requests.
    let http_total = "hexkv_http_request_duration_seconds_count";
    let route = "/v1/kv/{*key}";
    let series = |method, route, status| [("method", method), ("route", route), ("status", status)];
    assert_eq!(
        value(&m, http_total, &series("PUT", route, "201")),
        3.0,
        "{text}"
    );
    assert_eq!(value(&m, http_total, &series("GET", route, "200")), 2.0);
    assert_eq!(value(&m, http_total, &series("GET", route, "404")), 1.0);
    assert_eq!(value(&m, http_total, &series("DELETE", route, "204")), 1.0);
    // A path that matches no route is one series, whatever the path.
    assert_eq!(
        value(&m, http_total, &series("GET", "unmatched", "404")),
        1.0
    );
    assert!(
        value(
            &m,
            "hexkv_http_request_duration_seconds_sum",
            &series("PUT", route, "201")
        ) > 0.0
    );
    let rpc = |code| {
        [
            ("code", code),
            ("method", "Get"),
            ("service", "hexkv.v1.KeyValue"),
        ]
    };
    let grpc_total = "hexkv_grpc_request_duration_seconds_count";
    assert_eq!(value(&m, grpc_total, &rpc("OK")), 1.0);
    assert_eq!(value(&m, grpc_total, &rpc("NOT_FOUND")), 1.0);

    // The store saw 3 puts, 5 gets (3 over REST, 2 over gRPC) and a delete.
    let store = |op| [("backend", "memory"), ("operation", op), ("outcome", "ok")];
    let store_count = "hexkv_store_operation_duration_seconds_count";
    assert_eq!(value(&m, store_count, &store("put")), 3.0);
    assert_eq!(value(&m, store_count, &store("get")), 5.0);
    assert_eq!(value(&m, store_count, &store("delete")), 1.0);

    // Two keys live; four writes, each acknowledged after its own group commit and fsync.
    assert_eq!(value(&m, "hexkv_keys", &[]), 2.0);
    assert_eq!(value(&m, "hexkv_log_group_commit_records_sum", &[]), 4.0);
    assert!(value(&m, "hexkv_log_fsync_duration_seconds_count", &[]) >= 1.0);
    // The memory store goes without the store decorators (`resilience.store.apply = remote`).
    assert!(
        !m.keys()
            .any(|(name, _)| name == "hexkv_store_breaker_state"),
        "a breaker around the memory store"
    );
    let build = m
        .iter()
        .find(|((name, _), _)| name == "hexkv_build_info")
        .expect("hexkv_build_info");
    assert_eq!(*build.1, 1.0);
    assert_eq!(build.0.1["version"], env!("CARGO_PKG_VERSION"));
    assert!(build.0.1["features"].contains("memory"), "{:?}", build.0);

    // Each request logged one line with its route, status, latency and request id; no value.
    let logs = server.logs();
    let finished: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "request finished")
        .collect();
    let put_line = finished
        .iter()
        .find(|l| l["span"]["method"] == "PUT")
        .expect("a PUT was logged");
    assert_eq!(put_line["span"]["route"], route);
    assert_eq!(put_line["status"], "201");
    assert!(put_line["latency_us"].is_u64());
    assert!(put_line["span"]["request_id"].as_str().unwrap().len() > 8);
    let grpc_line = finished
        .iter()
        .find(|l| l["span"]["protocol"] == "grpc" && l["status"] == "NOT_FOUND")
        .expect("a gRPC call was logged");
    assert_eq!(grpc_line["span"]["rpc.method"], "Get");
    assert!(!logs.contains("\"v\""), "a value was logged");
}

/// `resilience.store.apply = always` puts the decorators around the memory store too: its
/// breaker reports its state, and requests still go through.
#[tokio::test]
async fn the_store_decorators_can_wrap_the_memory_store() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[("HEXKV_RESILIENCE__STORE__APPLY", "always")]);
    let http = Client::new();
    let r = http
        .put(server.url("/v1/kv/k"))
        .body("v")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = http.get(server.url("/v1/kv/k")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "v");
    let r = http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = crate::metrics_text(&http, &server).await;
    let m = parse(&text);
    let breaker = (String::from("hexkv_store_breaker_state"), BTreeMap::new());
    assert_eq!(m.get(&breaker), Some(&0.0), "{text}");
}

/// With `first = 5, thereafter = 0`, only five of twenty identical log lines per interval are
/// written; the rest are counted, reported in a line of their own, and in the metrics.
#[tokio::test]
async fn sampling_drops_repeated_lines_and_counts_them() {
    const REQUESTS: u64 = 20;
    let (_tmp, data) = data_dir();
    let server = Server::start(
        &data,
        &[],
        &[
            ("HEXKV_LOG__SAMPLING__FIRST", "5"),
            ("HEXKV_LOG__SAMPLING__THEREAFTER", "0"),
            ("HEXKV_LOG__SAMPLING__INTERVAL_MS", "2000"),
        ],
    );
    let http = Client::new();
    for _ in 0..REQUESTS {
        let r = http.get(server.url("/v1/kv/k")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    // Lines written plus lines reported dropped account for every request; the report comes
    // at the end of the interval.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (written, dropped) = loop {
        let lines: Vec<serde_json::Value> = server
            .logs()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let written = lines
            .iter()
            .filter(|l| l["message"] == "request finished" && l["span"]["route"] == "/v1/kv/{*key}")
            .count() as u64;
        let dropped: u64 = lines
            .iter()
            .filter(|l| {
                l["message"] == "log sampling dropped events"
                    && l["site_target"] == "hexkv_telemetry::observe"
            })
            .filter_map(|l| l["dropped"].as_u64())
            .sum();
        if written + dropped >= REQUESTS || Instant::now() > deadline {
            break (written, dropped);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        written + dropped,
        REQUESTS,
        "written {written}, dropped {dropped}"
    );
    assert!(dropped > 0);
    assert!(written >= 5);
    let text = crate::metrics_text(&http, &server).await;
    let m = parse(&text);
    assert!(
        value(&m, "hexkv_log_events_dropped_total", &[("level", "INFO")]) >= dropped as f64,
        "{text}"
    );
}

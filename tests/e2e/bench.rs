//! `hexkv bench` against the real binary: short runs of each workload over both protocols
//! report every request, with no errors.

use hexkv_e2e::{Server, run_hexkv};

use crate::data_dir;

fn bench(server: &Server, protocol: &str, extra: &[&str]) -> serde_json::Value {
    let endpoint = match protocol {
        "grpc" => server.grpc_endpoint(),
        _ => server.url(""),
    };
    let mut args = vec![
        "bench",
        "--endpoint",
        &endpoint,
        "--protocol",
        protocol,
        "--requests",
        "300",
        "--concurrency",
        "4",
        "--connections",
        "2",
        "--keys",
        "50",
        "--warmup",
        "0",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = run_hexkv(&args, &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON report")
}

#[test]
fn each_workload_runs_clean_over_both_protocols() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    for (protocol, workload) in [
        ("grpc", "get"),
        ("http", "get"),
        ("grpc", "put"),
        ("http", "mixed"),
        ("grpc", "cas"),
    ] {
        let report = bench(
            &server,
            protocol,
            &["--workload", workload, "--distribution", "zipf"],
        );
        assert_eq!(report["requests"], 300, "{protocol} {workload}: {report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        assert_eq!(report["protocol"], protocol);
        assert_eq!(report["spec"]["workload"]["kind"], workload);
        let ok = report["ok"].as_u64().unwrap();
        let conflicts = report["conflicts"].as_u64().unwrap();
        assert_eq!(ok + conflicts, 300, "{report}");
        if workload != "cas" {
            assert_eq!(conflicts, 0);
        }
        let latency = &report["latency_us"];
        assert!(latency["p50"].as_u64().unwrap() > 0, "{report}");
        assert!(latency["p50"].as_u64() <= latency["p99"].as_u64());
        assert!(latency["p99"].as_u64() <= latency["max"].as_u64());
        assert!(report["throughput_rps"].as_f64().unwrap() > 0.0);
    }
    // The keys the preload wrote are there.
    let listed = run_hexkv(
        &[
            "list",
            "bench/",
            "--endpoint",
            &server.grpc_endpoint(),
            "--limit",
            "1000",
        ],
        &[],
    );
    assert_eq!(String::from_utf8_lossy(&listed.stdout).lines().count(), 50);
}

#[test]
fn an_open_loop_reports_its_rate_and_a_bad_spec_is_a_usage_error() {
    let (_tmp, data) = data_dir();
    let server = Server::start(&data, &[], &[]);
    let report = bench(&server, "grpc", &["--rate", "2000"]);
    assert_eq!(report["spec"]["rate"], 2000.0);
    assert_eq!(report["requests"], 300);
    assert_eq!(report["errors"], serde_json::json!({}));

    let out = run_hexkv(
        &[
            "bench",
            "--endpoint",
            &server.grpc_endpoint(),
            "--workload",
            "mixed",
            "--read-ratio",
            "1.5",
            "--requests",
            "10",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("read ratio"));
}

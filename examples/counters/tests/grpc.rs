//! The gRPC front end over a real socket on 127.0.0.1, served by the platform's `Application`
//! as the binary serves it: API keys confined to a prefix of counter names, each error its
//! code, health beside the service and NOT_SERVING once the drain begins (one test: the
//! process's telemetry starts once).
#![cfg(feature = "memory")]

use std::sync::Arc;
use std::time::Duration;

use hexkv_example_counters::CounterService;
use hexkv_example_counters::grpc::{pb, services};
use hexkv_example_counters::memory::MemoryCounters;
use hexkv_example_counters::settings::Settings;
use hexkv_platform::app::Application;
use hexkv_platform::auth::hash_key;
use pb::counters_client::CountersClient;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

fn with_key<T>(message: T, key: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(key) = key {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    request
}

#[tokio::test]
async fn counters_over_grpc_with_keys_health_and_drain() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("counters.toml");
    std::fs::write(
        &file,
        format!(
            "[shutdown]\nreadiness_delay_ms = 5000\n\
             [[auth.keys]]\nname = \"team-a\"\nhash = \"{}\"\nrole = \"write\"\nprefix = \"team-a.\"\n\
             [[auth.keys]]\nname = \"auditor\"\nhash = \"{}\"\nrole = \"read\"\n",
            hash_key("team-a-key"),
            hash_key("auditor-key"),
        ),
    )
    .unwrap();
    let service = CounterService::new(Arc::new(MemoryCounters::default()));
    let app = Application::<Settings>::new(hexkv_example_counters::NAME, "test", Some(file))
        .unwrap()
        .grpc(
            "grpc",
            "grpc.listen",
            "127.0.0.1:0".parse().unwrap(),
            services(service),
        )
        .unwrap();
    let addr = app.local_addr("grpc").unwrap();
    let shutdown = hexkv_platform::shutdown::Shutdown::default();
    let served = tokio::spawn(app.run_until(shutdown.clone()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut counters = CountersClient::new(channel.clone());
    let add = |name: &str, delta: i64, key: Option<&str>| {
        with_key(
            pb::AddRequest {
                name: name.into(),
                delta,
            },
            key,
        )
    };

    let added = counters
        .add(add("team-a.visits", 3, Some("team-a-key")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((added.name.as_str(), added.value), ("team-a.visits", 3));
    let read = counters
        .get(with_key(
            pb::GetRequest {
                name: "team-a.visits".into(),
            },
            Some("auditor-key"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.value, 3);

    // Who may do what, and each domain error its code.
    for (request, code) in [
        (add("team-a.visits", 1, None), Code::Unauthenticated),
        (
            add("team-a.visits", 1, Some("guess")),
            Code::Unauthenticated,
        ),
        (
            add("team-b.visits", 1, Some("team-a-key")),
            Code::PermissionDenied,
        ),
        (
            add("team-a.visits", 1, Some("auditor-key")),
            Code::PermissionDenied,
        ),
        (
            add("team-a.Bad", 1, Some("team-a-key")),
            Code::InvalidArgument,
        ),
        (
            add("team-a.visits", 0, Some("team-a-key")),
            Code::InvalidArgument,
        ),
    ] {
        let status = counters.add(request).await.unwrap_err();
        assert_eq!(status.code(), code, "{status:?}");
    }
    let missing = counters
        .get(with_key(
            pb::GetRequest {
                name: "team-a.never".into(),
            },
            Some("team-a-key"),
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // Nothing refused was added.
    let read = counters
        .get(with_key(
            pb::GetRequest {
                name: "team-a.visits".into(),
            },
            Some("team-a-key"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.value, 3);

    // Health is open (auth.open_health) and names the service; the drain turns it off first.
    let mut health = HealthClient::new(channel);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in ["", "counters.v1.Counters"] {
        let status = health.check(check(service)).await.unwrap().into_inner();
        assert_eq!(status.status(), ServingStatus::Serving, "{service:?}");
    }
    shutdown.requested.cancel();
    let mut status = ServingStatus::Serving;
    for _ in 0..200 {
        status = health
            .check(check("counters.v1.Counters"))
            .await
            .unwrap()
            .into_inner()
            .status();
        if status == ServingStatus::NotServing {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, ServingStatus::NotServing);
    shutdown.hurried.cancel();
    served.await.unwrap().unwrap();
}

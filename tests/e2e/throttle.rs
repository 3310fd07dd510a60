//! Per-client throttling in the real binary. A client is the name of the API key it
//! authenticated with, else its address — never a header it chooses: one client over its rate
//! gets 429 (and RESOURCE_EXHAUSTED over gRPC, the same bucket) while another is unaffected;
//! rotating headers buys no extra requests; and a stranger who sends a key's *name* cannot drain
//! that key's bucket, while its own guesses are throttled by its address.

use std::net::IpAddr;

use bytes::Bytes;
use hexkv_e2e::Server;
use hexkv_grpc::pb;
use hexkv_grpc::pb::key_value_client::KeyValueClient;
use reqwest::{Client, StatusCode, header};
use tonic::Code;

use crate::data_dir;

/// A REST client whose connections come from `ip` (any address of 127.0.0.0/8 is this machine).
fn client_from(ip: [u8; 4]) -> Client {
    Client::builder()
        .local_address(IpAddr::from(ip))
        .build()
        .unwrap()
}

/// A gRPC call of `Get` carrying `metadata`.
fn get_with(metadata: &[(&'static str, &str)]) -> tonic::Request<pb::GetRequest> {
    let mut request = tonic::Request::new(pb::GetRequest {
        key: Bytes::from_static(b"k"),
    });
    for (name, value) in metadata {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn a_client_over_its_rate_is_refused_and_another_is_not() {
    let (_tmp, data) = data_dir();
    // One request a minute after a burst of three: nothing replenishes during the test.
    let server = Server::start(
        &data,
        &[],
        &[
            ("HEXKV_LIMITS__THROTTLE_PER_MINUTE", "1"),
            ("HEXKV_LIMITS__THROTTLE_BURST", "3"),
        ],
    );
    let alice = client_from([127, 0, 0, 1]);
    // Each request with a header a client may choose freely: none of them makes it another client.
    for n in 0..3 {
        let response = alice
            .get(server.url("/v1/kv/k"))
            .header("x-api-key", format!("rotated-{n}"))
            .header("x-forwarded-for", format!("10.0.0.{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    let refused = alice
        .get(server.url("/v1/kv/k"))
        .header("x-api-key", "rotated-again")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let header_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let after: u64 = refused.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&after), "Retry-After: {after}");
    let problem: serde_json::Value =
        serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(problem["code"], "throttled");
    // The refusal carries its request id, in the body and the header, like every other answer.
    let request_id = problem["request_id"].as_str().expect("a request id");
    assert_eq!(request_id, header_id);

    // Another address is another client, with its own bucket.
    let bob = client_from([127, 0, 0, 2]);
    let response = bob.get(server.url("/v1/kv/k")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // gRPC from alice's address counts against the same bucket, whatever it sends.
    let mut grpc = KeyValueClient::connect(server.grpc_endpoint())
        .await
        .unwrap();
    let status = grpc
        .get(get_with(&[("x-api-key", "yet-another")]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

/// The attack of the security issue: with keys and a throttle configured, a stranger with no
/// credentials sends gRPC calls carrying `x-api-key: app` (`app` being a configured key's
/// name, which 403 messages reveal) and REST requests with guessed keys. The authenticated
/// client using the key `app` is not affected; the stranger is throttled by its address.
#[tokio::test]
async fn a_stranger_cannot_throttle_someone_else_s_key_and_its_guesses_are_throttled() {
    let (key, hash) = crate::auth::generate();
    let (tmp, data) = data_dir();
    let file = tmp.path().join("hexkv.toml");
    std::fs::write(
        &file,
        format!(
            "[limits]\nthrottle_per_minute = 1\nthrottle_burst = 5\n\n\
             [[auth.keys]]\nname = \"app\"\nhash = \"{hash}\"\nrole = \"write\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(&data, &["--config", file.to_str().unwrap()], &[]);

    // The stranger, from 127.0.0.3: gRPC calls that name the victim's key, without credentials.
    let stranger = "127.0.0.3:0".parse::<std::net::SocketAddr>().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(server.grpc_endpoint())
        .unwrap()
        .local_address(Some(stranger.ip()))
        .connect()
        .await
        .unwrap();
    let mut grpc = KeyValueClient::new(channel);
    let mut codes = Vec::new();
    for _ in 0..20 {
        let status = grpc
            .get(get_with(&[("x-api-key", "app")]))
            .await
            .unwrap_err();
        codes.push(status.code());
    }
    // Refused for want of a key while its own bucket lasts, throttled after.
    assert!(
        codes[..5].iter().all(|c| *c == Code::Unauthenticated),
        "{codes:?}"
    );
    assert!(
        codes[5..].iter().all(|c| *c == Code::ResourceExhausted),
        "{codes:?}"
    );
    // Its guesses over REST come from the same address, so they are throttled too: no more
    // answers on whether a key is right.
    let guesser = client_from([127, 0, 0, 3]);
    for guess in ["app", "guess-1", "guess-2"] {
        let response = guesser
            .get(server.url("/v1/kv/k"))
            .bearer_auth(guess)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{guess}");
    }

    // The victim, with its key, from another address: its whole burst is still there.
    let victim = client_from([127, 0, 0, 2]);
    for _ in 0..5 {
        let response = victim
            .get(server.url("/v1/kv/k"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }
    // And its key is one client wherever it connects from: gRPC from the stranger's address,
    // with the key, draws on the same (now empty) bucket.
    let status = grpc
        .get(get_with(&[("authorization", &format!("Bearer {key}"))]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
}

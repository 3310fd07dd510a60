//! TLS on the real binary, with certificates generated here (rcgen): REST and gRPC over TLS,
//! a certificate replaced on disk and served without a restart, client certificates required
//! when `tls.client_ca` is set, and bad settings refused at start.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hexkv_e2e::{Server, run_hexkv};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::data_dir;

struct Ca {
    der: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().clone(),
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate for `localhost` and 127.0.0.1 (server) or a client, signed by `ca`:
/// (certificate PEM, key PEM, certificate DER, key DER).
fn leaf(
    ca: &Ca,
    client: bool,
) -> (
    String,
    String,
    CertificateDer<'static>,
    PrivateKeyDer<'static>,
) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (cert.pem(), key.serialize_pem(), cert.der().clone(), key_der)
}

/// Writes `body` to `path` the way cert-manager and editors do: a new file renamed over the old.
fn replace(path: &Path, body: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// A TLS connection to `addr` trusting `ca`, with a client certificate if given.
async fn connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// One HTTP/1.1 request over a fresh TLS connection; the whole response as text.
async fn https(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
    client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    request: &str,
) -> std::io::Result<String> {
    let mut stream = connect(addr, ca, client, &[b"http/1.1"]).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

fn put(path: &str, body: &str) -> String {
    format!(
        "PUT {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The certificate the server presents to a new connection.
async fn served_cert(addr: SocketAddr, ca: &CertificateDer<'static>) -> CertificateDer<'static> {
    let stream = connect(addr, ca, None, &[b"http/1.1"]).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn http_addr(server: &Server) -> SocketAddr {
    server
        .url("")
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

fn grpc_addr(server: &Server) -> SocketAddr {
    server
        .grpc_endpoint()
        .trim_start_matches("http://")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn rest_and_grpc_over_tls_with_the_certificate_reloaded_live() {
    let ca = new_ca("hexkv test CA");
    let (cert_pem, key_pem, first_der, _) = leaf(&ca, false);
    let (tmp, data) = data_dir();
    let dir = tmp.path().join("tls");
    std::fs::create_dir(&dir).unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    replace(&cert, &cert_pem);
    replace(&key, &key_pem);
    let config = tmp.path().join("hexkv.toml");
    std::fs::write(
        &config,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]);
    let addr = http_addr(&server);

    // REST over TLS.
    let response = https(addr, &ca.der, None, &put("/v1/kv/secret", "s3cr3t"))
        .await
        .unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    let response = https(addr, &ca.der, None, &get("/v1/kv/secret"))
        .await
        .unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("s3cr3t"),
        "{response}"
    );
    // Plain HTTP on the TLS port gets nowhere.
    let plain = reqwest::get(server.url("/healthz")).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    // A client that does not trust the CA refuses the server.
    let other = new_ca("another CA");
    assert!(
        https(addr, &other.der, None, &get("/healthz"))
            .await
            .is_err()
    );

    // gRPC over TLS, through the client SDK on a TLS channel (ALPN h2).
    let grpc = grpc_addr(&server);
    let ca_der = ca.der.clone();
    let channel = tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let ca_der = ca_der.clone();
            async move {
                let stream = connect(grpc, &ca_der, None, &[b"h2"]).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
        .unwrap();
    let client =
        hexkv_client::Client::from_channel(channel, hexkv_client::ClientOptions::default());
    let entry = client.get("secret").await.unwrap();
    assert_eq!(entry.value.as_ref(), b"s3cr3t");

    // A new certificate (new key) written over the files is served without a restart.
    assert_eq!(served_cert(addr, &ca.der).await, first_der);
    let (cert_pem, key_pem, second_der, _) = leaf(&ca, false);
    replace(&key, &key_pem);
    replace(&cert, &cert_pem);
    let deadline = Instant::now() + Duration::from_secs(30);
    while served_cert(addr, &ca.der).await != second_der {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(server.logs().contains("TLS certificate reloaded"));
    // A broken file does not replace a good certificate.
    replace(&cert, "not a certificate");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.logs().contains("TLS certificate reload failed") {
        assert!(
            Instant::now() < deadline,
            "the failed reload was never logged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served_cert(addr, &ca.der).await, second_der);
    let response = https(addr, &ca.der, None, &get("/readyz")).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_set() {
    let ca = new_ca("hexkv test CA");
    let clients = new_ca("clients CA");
    let strangers = new_ca("strangers CA");
    let (cert_pem, key_pem, _, _) = leaf(&ca, false);
    let (tmp, data) = data_dir();
    let write = |name: &str, body: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, body).unwrap();
        path
    };
    let (cert, key, client_ca) = (
        write("tls.crt", &cert_pem),
        write("tls.key", &key_pem),
        write("clients.crt", &clients.pem),
    );
    let config = write(
        "hexkv.toml",
        &format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            client_ca.display()
        ),
    );
    let server = Server::start(&data, &["--config", config.to_str().unwrap()], &[]);
    let addr = http_addr(&server);

    let (_, _, client_der, client_key) = leaf(&clients, true);
    let response = https(
        addr,
        &ca.der,
        Some((client_der, client_key)),
        &get("/healthz"),
    )
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    for client in [None, Some(leaf(&strangers, true))] {
        let client = client.map(|(_, _, der, key)| (der, key));
        let refused = https(addr, &ca.der, client, &get("/healthz")).await;
        assert!(
            refused.as_ref().map_or(true, |r| !r.contains("200 OK")),
            "served without a trusted client certificate: {refused:?}"
        );
    }
}

#[tokio::test]
async fn bad_tls_settings_stop_the_start_with_the_key_named() {
    let (tmp, data) = data_dir();
    let dir = data.to_str().unwrap();
    // A certificate without its key: a configuration error (exit 2).
    let out = run_hexkv(
        &[
            "serve",
            "--data-dir",
            dir,
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
        &[("HEXKV_TLS__CERT", "/nonexistent/tls.crt")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.key"));
    // Files that cannot be read: the start fails (exit 1) naming the setting and the file.
    let missing = tmp.path().join("missing.crt");
    let out = run_hexkv(
        &[
            "serve",
            "--data-dir",
            dir,
            "--http-listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ],
        &[
            ("HEXKV_TLS__CERT", missing.to_str().unwrap()),
            ("HEXKV_TLS__KEY", missing.to_str().unwrap()),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tls.cert") && stderr.contains("missing.crt"),
        "{stderr}"
    );
}

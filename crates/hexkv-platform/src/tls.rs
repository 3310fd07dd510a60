//! TLS on the listeners (feature `tls`): rustls, certificates reloaded from their files while
//! serving, optional client-certificate authentication.
//!
//! - [`TlsSetup::load`] reads `[tls]`: the certificate chain and key (PEM), and the CA that
//!   client certificates must chain to, if any.
//! - Each handshake asks a [`CertStore`] for the current certificate, so replacing it (a new
//!   file, as cert-manager or a Kubernetes Secret update does) changes what the next handshake
//!   presents, without a restart and without touching open connections. [`watch`] reloads it
//!   when the files change (debounced like the configuration file), and a reload that fails keeps
//!   the old certificate.
//! - [`TlsSetup::server_config`] is what each listener's acceptor uses; the handshakes themselves
//!   run in each connection's own task, under `limits.header_read_timeout_ms`
//!   ([`crate::serve`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use crate::config::{RELOAD_DEBOUNCE, TlsConfig};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its private key.
fn load_certified_key(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("tls.cert: cannot read {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!(
                "tls.cert: {} is not a PEM certificate chain",
                cert.display()
            )
        })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "tls.cert: {} holds no certificate",
        cert.display()
    );
    let key_der = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "tls.key: cannot read a PEM private key from {}",
            key.display()
        )
    })?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .with_context(|| format!("tls.key: {} is not a usable private key", key.display()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .with_context(|| "tls.key: the key does not belong to the certificate in tls.cert")?;
    Ok(certified)
}

/// The certificate presented to clients, replaceable while serving.
#[derive(Debug)]
pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Reads the certificate and key again; on failure the current pair stays.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = load_certified_key(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(())
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// The TLS settings of both front ends.
#[derive(Clone)]
pub struct TlsSetup {
    /// The certificate in use.
    pub certs: Arc<CertStore>,
    verifier: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
}

impl TlsSetup {
    /// Reads `[tls]`; `None` when TLS is off (no certificate configured).
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<Self>> {
        if config.cert.as_os_str().is_empty() {
            return Ok(None);
        }
        let current = load_certified_key(&config.cert, &config.key)?;
        let verifier = if config.client_ca.as_os_str().is_empty() {
            None
        } else {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(&config.client_ca).with_context(|| {
                format!("tls.client_ca: cannot read {}", config.client_ca.display())
            })? {
                let cert = cert.with_context(|| {
                    format!("tls.client_ca: {} is not PEM", config.client_ca.display())
                })?;
                roots
                    .add(cert)
                    .context("tls.client_ca: not a usable CA certificate")?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .context("tls.client_ca")?;
            Some(verifier)
        };
        Ok(Some(Self {
            certs: Arc::new(CertStore {
                cert: config.cert.clone(),
                key: config.key.clone(),
                current: RwLock::new(Arc::new(current)),
            }),
            verifier,
        }))
    }

    /// The rustls configuration of a listener offering the `alpn` protocols.
    pub fn server_config(&self, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match &self.verifier {
            Some(verifier) => builder.with_client_cert_verifier(Arc::clone(verifier)),
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_cert_resolver(Arc::clone(&self.certs) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

/// How a listener's connections are secured: TLS offering `alpn` when `tls` is set (as
/// [`TlsSetup::load`] returns it), else plain TCP.
pub fn transport(
    tls: Option<&TlsSetup>,
    alpn: &[&[u8]],
) -> anyhow::Result<crate::serve::Transport> {
    Ok(match tls {
        Some(tls) => {
            crate::serve::Transport::Tls(tokio_rustls::TlsAcceptor::from(tls.server_config(alpn)?))
        }
        None => crate::serve::Transport::Plain,
    })
}

/// Reloads the certificate when its files change (their directories are watched, so a
/// Kubernetes Secret's symlink swap counts), debounced; stops when the returned watcher drops.
pub fn watch(certs: Arc<CertStore>) -> anyhow::Result<notify::RecommendedWatcher> {
    use notify::Watcher as _;
    let debounced = {
        let certs = Arc::clone(&certs);
        hexkv_resilience::debounce::Last::spawn(RELOAD_DEBOUNCE, move || {
            let certs = Arc::clone(&certs);
            async move {
                match certs.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %certs.cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => tracing::error!(
                        error = %format!("{e:#}"),
                        "TLS certificate reload failed; the current one stays"
                    ),
                }
            }
        })
    };
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            debounced.trigger();
        }
    })
    .context("watching the TLS certificate")?;
    let mut dirs: Vec<&Path> = [&certs.cert, &certs.key]
        .into_iter()
        .map(|p| {
            p.parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        })
        .collect();
    dirs.dedup();
    for dir in dirs {
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    Ok(watcher)
}

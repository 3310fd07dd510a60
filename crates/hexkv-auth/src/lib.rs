//! Who a request is and what it may do: authentication by API key, authorization by role and
//! scope, and feature flags rolled out by the caller's identity ([`flags`]). Nothing here knows a transport or a domain: the platform's admission
//! (`hexkv_platform::http::access`, `hexkv_platform::grpc::access`) reads the credentials and
//! asks what a request touches, and a domain may name the caller's [`Identity`] (hexkv rolls
//! feature flags out by it) without depending on a runtime.
//!
//! A request touches a **resource**, named by bytes the service chooses: a key for hexkv, a
//! counter's name for `examples/counters`. A key's optional **prefix** is its scope: it may touch
//! only resources that start with it, and list only under prefixes that do.
//!
//! The front ends read a bearer token (`Authorization: Bearer <key>` on HTTP, the
//! `authorization` metadata on gRPC), ask [`Authenticator::authenticate`] who it is, and check
//! each operation with [`Principal::authorize`] before calling the service.
//!
//! [`Caller`] is what a front end computes once per request, after authentication, the same way
//! on every transport: the request's [`Identity`] (the authenticated key's name, else the peer
//! address; never a header the client chooses) and whether its credentials hold. Throttling and
//! feature-flag rollouts key on the identity; every route and RPC checks its declared access
//! against the caller.
//!
//! Keys are configured as hashes, never as plaintext: `sha256:<hex>` of the key ([`hash_key`];
//! `hexkv auth hash-key --generate` makes a key and its hash). A key is 256 bits of randomness,
//! so a fast hash is enough: what makes a password hash slow protects guessable secrets, and a
//! guess of a random 256-bit key is hopeless either way — while a slow hash would cost every
//! request milliseconds. The presented key's hash is compared with every configured hash in
//! constant time, so timing tells nothing about how much of a hash matched.

pub mod flags;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a key may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read resources and list them.
    Read,
    /// Read, and change resources (hexkv: put and delete values).
    Write,
    /// Everything, including protected operational endpoints (metrics, health).
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Read a resource (named by raw bytes: the scope check does not need it parsed).
    Read(&'a [u8]),
    /// List the resources under a prefix.
    List(&'a [u8]),
    /// Change a resource.
    Write(&'a [u8]),
    /// Call a protected operational endpoint (metrics, health, reflection).
    Operate,
}

/// Who a request is: the configured key it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key's name (for logs and metrics; never the key).
    pub name: Arc<str>,
    /// What it may do.
    pub role: Role,
    /// The prefix of the resources it is confined to (its scope), if any.
    pub prefix: Option<Arc<str>>,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No credentials were sent.
    #[error("credentials required: send an API key as `Authorization: Bearer <key>`")]
    Missing,
    /// The credentials are malformed or match no configured key.
    #[error("invalid credentials")]
    Invalid,
    /// The key is valid but may not do this.
    #[error("the key {name:?} may not {what}")]
    Forbidden {
        /// The key's name.
        name: Arc<str>,
        /// What was refused, in words.
        what: String,
    },
}

impl AuthError {
    /// A short, stable label for metrics: `missing`, `invalid` or `forbidden`.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Invalid => "invalid",
            AuthError::Forbidden { .. } => "forbidden",
        }
    }
}

impl Principal {
    /// Whether this principal may do `action`.
    pub fn authorize(&self, action: Action<'_>) -> Result<(), AuthError> {
        let forbidden = |what: String| AuthError::Forbidden {
            name: Arc::clone(&self.name),
            what,
        };
        let (needed, key, verb) = match action {
            Action::Read(key) => (Role::Read, Some(key), "read"),
            Action::List(prefix) => (Role::Read, Some(prefix), "list"),
            Action::Write(key) => (Role::Write, Some(key), "write"),
            Action::Operate => (Role::Admin, None, "call operational endpoints"),
        };
        if self.role < needed {
            return Err(forbidden(format!(
                "{verb} (its role is {}, {needed} is needed)",
                self.role
            )));
        }
        if let (Some(scope), Some(key)) = (&self.prefix, key)
            && !key.starts_with(scope.as_bytes())
        {
            // A listing must stay inside the scope too: its prefix must start with the scope's.
            return Err(forbidden(format!("{verb} outside its prefix {scope:?}")));
        }
        Ok(())
    }
}

/// Who a request comes from, for throttling and feature-flag rollouts.
///
/// Computed once per request, after authentication: the name of the API key the request
/// authenticated with, else the address of its peer. Never a header or field the client chooses
/// freely, so a client cannot act as another (drain someone else's throttle bucket) nor become a
/// new client at will (rotate a header for a fresh bucket per request). Unauthenticated requests,
/// and those with a wrong key, are one client per address: guessing keys is throttled too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// Authenticated with the API key of this name.
    Key(Arc<str>),
    /// Not authenticated: the peer's IP address.
    Address(IpAddr),
    /// Not authenticated, and the peer is not known (an in-process call in a test).
    Unknown,
}

impl fmt::Display for Identity {
    /// `key:<name>`, `addr:<ip>` or `addr:unknown`, as rollouts hash it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Key(name) => write!(f, "key:{name}"),
            Identity::Address(ip) => write!(f, "addr:{ip}"),
            Identity::Unknown => f.write_str("addr:unknown"),
        }
    }
}

/// What authentication found out about one request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No key is configured: authentication is off and every request is let in.
    NotRequired,
    /// A configured key.
    Valid(Principal),
    /// Authentication is on and the request sent no key, or one that is not configured.
    Refused(AuthError),
}

/// One request's caller: its [`Identity`] and its [`Credentials`], computed once, before any
/// route or RPC runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who it is, for throttling and rollouts.
    pub identity: Identity,
    /// Whether its credentials hold.
    pub credentials: Credentials,
}

impl Caller {
    /// Authenticates a request that sent `authorization` (the header's or metadata's value, if
    /// any) from `peer`; `authenticator` is `None` when no key is configured.
    pub fn authenticate(
        authenticator: Option<&Authenticator>,
        authorization: Option<&[u8]>,
        peer: Option<IpAddr>,
    ) -> Self {
        let by_address = || peer.map_or(Identity::Unknown, Identity::Address);
        let Some(authenticator) = authenticator else {
            return Self {
                identity: by_address(),
                credentials: Credentials::NotRequired,
            };
        };
        match authenticator.authenticate(authorization) {
            Ok(principal) => Self {
                identity: Identity::Key(Arc::clone(&principal.name)),
                credentials: Credentials::Valid(principal),
            },
            Err(err) => Self {
                identity: by_address(),
                credentials: Credentials::Refused(err),
            },
        }
    }

    /// The configured key the request authenticated with, if any.
    pub fn principal(&self) -> Option<&Principal> {
        match &self.credentials {
            Credentials::Valid(principal) => Some(principal),
            _ => None,
        }
    }

    /// Whether the request may go on to a route that needs a key (of any role): its key is
    /// valid, or authentication is off.
    pub fn authenticated(&self) -> Result<(), AuthError> {
        match &self.credentials {
            Credentials::NotRequired | Credentials::Valid(_) => Ok(()),
            Credentials::Refused(err) => Err(err.clone()),
        }
    }

    /// Whether the request may do `action`: always when authentication is off; otherwise its
    /// key must be valid and allow it ([`Principal::authorize`]).
    pub fn authorize(&self, action: Action<'_>) -> Result<(), AuthError> {
        match &self.credentials {
            Credentials::NotRequired => Ok(()),
            Credentials::Valid(principal) => principal.authorize(action),
            Credentials::Refused(err) => Err(err.clone()),
        }
    }
}

/// A configured API key: its name, the hash of the key, its role and optional prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// `sha256:<64 hex digits>`, from `hexkv auth hash-key`.
    pub hash: String,
    /// What the key may do.
    pub role: Role,
    /// Confine the key to resources (hexkv: keys) starting with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Why a key configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key {name:?}: {reason}")]
pub struct KeyConfigError {
    /// The configured key's name.
    pub name: String,
    /// What is wrong.
    pub reason: String,
}

/// The hash prefix of the one supported scheme.
const SCHEME: &str = "sha256:";

/// The configured hash of `key`: `sha256:<hex>`.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut out = String::with_capacity(SCHEME.len() + 64);
    out.push_str(SCHEME);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix(SCHEME)?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

struct Entry {
    hash: [u8; 32],
    principal: Principal,
}

/// The configured keys, ready to check presented ones.
pub struct ApiKeys {
    entries: Vec<Entry>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeys")
            .field("keys", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl ApiKeys {
    /// Checks and takes the configured keys: every hash well-formed, names unique and non-empty.
    pub fn new(configs: &[ApiKeyConfig]) -> Result<Self, KeyConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(configs.len());
        for config in configs {
            let error = |reason: &str| KeyConfigError {
                name: config.name.clone(),
                reason: reason.to_owned(),
            };
            if config.name.trim().is_empty() {
                return Err(error("the name must not be empty"));
            }
            if entries.iter().any(|e| *e.principal.name == *config.name) {
                return Err(error("the name is used twice"));
            }
            let hash = parse_hash(&config.hash).ok_or_else(|| {
                error("hash must be sha256:<64 hex digits> (from `hexkv auth hash-key`)")
            })?;
            if entries.iter().any(|e| e.hash == hash) {
                return Err(error("the same key is configured twice"));
            }
            entries.push(Entry {
                hash,
                principal: Principal {
                    name: config.name.as_str().into(),
                    role: config.role,
                    prefix: config.prefix.as_deref().map(Arc::from),
                },
            });
        }
        Ok(Self { entries })
    }

    /// Whether no key is configured (authentication off).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal of a presented key, comparing its hash with every configured one in
    /// constant time.
    pub fn identify(&self, key: &str) -> Option<Principal> {
        let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&presented)) {
                found = Some(&entry.principal);
            }
        }
        found.cloned()
    }
}

/// The key of an `Authorization` value: `Bearer <key>` (the scheme in any case).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, key) = header.trim().split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
}

/// The keys in force, replaceable while running (a configuration reload rotates keys).
pub struct Authenticator {
    keys: RwLock<Arc<ApiKeys>>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator over `keys`.
    pub fn new(keys: ApiKeys) -> Self {
        Self {
            keys: RwLock::new(Arc::new(keys)),
        }
    }

    /// Replaces the keys; requests already authenticated keep their principal.
    pub fn set(&self, keys: ApiKeys) {
        *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys);
    }

    /// Who sent `authorization` (the header's or metadata's value, if any).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Principal, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let text = std::str::from_utf8(value).map_err(|_| AuthError::Invalid)?;
        let key = bearer(text).ok_or(AuthError::Invalid)?;
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(PoisonError::into_inner));
        keys.identify(key).ok_or(AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, key: &str, role: Role, prefix: Option<&str>) -> ApiKeyConfig {
        ApiKeyConfig {
            name: name.into(),
            hash: hash_key(key),
            role,
            prefix: prefix.map(str::to_owned),
        }
    }

    fn authenticator() -> Authenticator {
        Authenticator::new(
            ApiKeys::new(&[
                config("reader", "r-key", Role::Read, None),
                config("app", "w-key", Role::Write, Some("app/")),
                config("ops", "a-key", Role::Admin, None),
            ])
            .unwrap(),
        )
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        // SHA-256 of "abc", from FIPS 180-2.
        assert_eq!(
            hash_key("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_hash(&hash_key("abc")).map(|h| h[0]), Some(0xba));
    }

    #[test]
    fn keys_identify_their_principal_and_nothing_else_does() {
        let auth = authenticator();
        let who = |h: &str| auth.authenticate(Some(h.as_bytes()));
        assert_eq!(who("Bearer r-key").unwrap().name.as_ref(), "reader");
        assert_eq!(who("bearer   w-key ").unwrap().name.as_ref(), "app");
        assert_eq!(auth.authenticate(None), Err(AuthError::Missing));
        for bad in [
            "Bearer nope",
            "Basic r-key",
            "Bearer",
            "r-key",
            "Bearer r-key2",
        ] {
            assert_eq!(who(bad), Err(AuthError::Invalid), "{bad}");
        }
        assert_eq!(
            auth.authenticate(Some(&[0xff, 0xfe])),
            Err(AuthError::Invalid)
        );
    }

    #[test]
    fn roles_include_the_ones_below() {
        let auth = authenticator();
        let reader = auth.authenticate(Some(b"Bearer r-key")).unwrap();
        let ops = auth.authenticate(Some(b"Bearer a-key")).unwrap();
        assert!(reader.authorize(Action::Read(b"x")).is_ok());
        assert!(reader.authorize(Action::List(b"")).is_ok());
        let denied = reader.authorize(Action::Write(b"x")).unwrap_err();
        assert_eq!(denied.reason(), "forbidden");
        assert!(denied.to_string().contains("role is read"), "{denied}");
        assert!(reader.authorize(Action::Operate).is_err());
        for action in [
            Action::Read(b"x"),
            Action::Write(b"x"),
            Action::List(b""),
            Action::Operate,
        ] {
            assert!(ops.authorize(action).is_ok());
        }
    }

    #[test]
    fn a_prefix_confines_reads_writes_and_listings() {
        let app = authenticator().authenticate(Some(b"Bearer w-key")).unwrap();
        assert!(app.authorize(Action::Write(b"app/x")).is_ok());
        assert!(app.authorize(Action::Read(b"app/")).is_ok());
        assert!(app.authorize(Action::List(b"app/sub/")).is_ok());
        assert!(app.authorize(Action::Write(b"other")).is_err());
        assert!(app.authorize(Action::Read(b"ap")).is_err());
        // Listing everything, or a prefix wider than the scope, would show other keys.
        assert!(app.authorize(Action::List(b"")).is_err());
        assert!(app.authorize(Action::List(b"app")).is_err());
    }

    #[test]
    fn bad_configurations_are_refused_with_the_key_named() {
        let err = ApiKeys::new(&[ApiKeyConfig {
            name: "x".into(),
            hash: "plaintext-key".into(),
            role: Role::Read,
            prefix: None,
        }])
        .unwrap_err();
        assert_eq!(err.name, "x");
        assert!(err.reason.contains("sha256:"));
        let twice = [
            config("a", "k1", Role::Read, None),
            config("a", "k2", Role::Read, None),
        ];
        assert!(ApiKeys::new(&twice).is_err());
        let same_key = [
            config("a", "k1", Role::Read, None),
            config("b", "k1", Role::Read, None),
        ];
        assert!(ApiKeys::new(&same_key).is_err());
    }

    #[test]
    fn a_caller_is_its_key_s_name_else_its_address() {
        let auth = authenticator();
        let peer: IpAddr = "192.0.2.7".parse().unwrap();
        let app = Caller::authenticate(Some(&auth), Some(b"Bearer w-key"), Some(peer));
        assert_eq!(app.identity, Identity::Key("app".into()));
        assert_eq!(app.identity.to_string(), "key:app");
        assert_eq!(app.principal().map(|p| &*p.name), Some("app"));
        assert!(app.authorize(Action::Write(b"app/x")).is_ok());
        // A wrong key, or none, is the address: one client however the credentials vary.
        for sent in [None, Some(&b"Bearer guess-1"[..]), Some(b"Bearer app")] {
            let stranger = Caller::authenticate(Some(&auth), sent, Some(peer));
            assert_eq!(stranger.identity, Identity::Address(peer), "{sent:?}");
            assert_eq!(stranger.identity.to_string(), "addr:192.0.2.7");
            assert!(stranger.authenticated().is_err());
            assert!(stranger.authorize(Action::Read(b"x")).is_err());
        }
        // Without keys every request is let in, and is its address.
        let open = Caller::authenticate(None, Some(b"Bearer anything"), Some(peer));
        assert_eq!(open.identity, Identity::Address(peer));
        assert_eq!(open.credentials, Credentials::NotRequired);
        assert!(open.authorize(Action::Operate).is_ok());
        assert_eq!(
            Caller::authenticate(None, None, None).identity.to_string(),
            "addr:unknown"
        );
    }

    #[test]
    fn keys_rotate_while_running() {
        let auth = authenticator();
        auth.set(ApiKeys::new(&[config("new", "n-key", Role::Read, None)]).unwrap());
        assert!(auth.authenticate(Some(b"Bearer r-key")).is_err());
        assert!(auth.authenticate(Some(b"Bearer n-key")).is_ok());
    }
}

//! API keys for front-end tests: three keys, one per role, the writer confined to `app/`.

use hexkv_auth::{ApiKeyConfig, ApiKeys, Authenticator, Role, hash_key};

/// A `read` key, unconfined.
pub const READER: &str = "reader-key-0123456789abcdef";
/// A `write` key confined to the prefix `app/`.
pub const APP: &str = "app-key-0123456789abcdef";
/// An `admin` key.
pub const ADMIN: &str = "admin-key-0123456789abcdef";

fn key(name: &str, secret: &str, role: Role, prefix: Option<&str>) -> ApiKeyConfig {
    ApiKeyConfig {
        name: name.into(),
        hash: hash_key(secret),
        role,
        prefix: prefix.map(str::to_owned),
    }
}

/// An authenticator knowing [`READER`] (`reader`), [`APP`] (`app`) and [`ADMIN`] (`ops`).
pub fn authenticator() -> Authenticator {
    Authenticator::new(
        ApiKeys::new(&[
            key("reader", READER, Role::Read, None),
            key("app", APP, Role::Write, Some("app/")),
            key("ops", ADMIN, Role::Admin, None),
        ])
        .expect("valid keys"),
    )
}

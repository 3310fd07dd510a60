//! [`KeyValueService`]: the application core behind the driving port.
//!
//! It owns the rules that are configuration rather than type invariants (the value size limit,
//! the `read_only` feature flag) and the service's lifecycle (draining at shutdown), and delegates storage to whichever [`KvStore`]
//! the composition root gave it. It knows no transport and no database.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    DeleteOutcome, Entry, Key, ListQuery, Page, Precondition, PutOutcome, Value, ValueError,
};
use crate::error::KvError;
use crate::flags::{FeatureFlags, LIST_KEYS, READ_ONLY};
use crate::ports::{Check, KeyValueApi, KvStore, Readiness};
use hexkv_auth::Identity;

/// Limits the service enforces on every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest value accepted, in bytes.
    pub max_value_bytes: usize,
}

impl Limits {
    /// The default value size limit: 1 MiB.
    pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
    /// The largest value limit any configuration may set: 64 MiB. Stores may rely on it to bound
    /// their records.
    pub const HARD_MAX_VALUE_BYTES: usize = 64 * 1024 * 1024;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_value_bytes: Self::DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// The key-value service: implements [`KeyValueApi`] over any [`KvStore`].
pub struct KeyValueService {
    store: Arc<dyn KvStore>,
    limits: Limits,
    flags: Arc<FeatureFlags>,
}

impl KeyValueService {
    /// A service over `store`, enforcing `limits`.
    pub fn new(store: Arc<dyn KvStore>, limits: Limits) -> Self {
        Self::with_flags(store, limits, Arc::new(crate::flags::defaults()))
    }

    /// A service that consults `flags` on every request ([`crate::flags::READ_ONLY`] for writes,
    /// [`crate::flags::LIST_KEYS`] by client for listings).
    pub fn with_flags(store: Arc<dyn KvStore>, limits: Limits, flags: Arc<FeatureFlags>) -> Self {
        Self {
            store,
            limits,
            flags,
        }
    }

    /// The feature flags the service consults.
    pub fn flags(&self) -> &Arc<FeatureFlags> {
        &self.flags
    }

    fn writable(&self) -> Result<(), KvError> {
        if self.flags.is_on(READ_ONLY, "") {
            return Err(KvError::ReadOnly);
        }
        Ok(())
    }
}

#[async_trait]
impl KeyValueApi for KeyValueService {
    async fn get(&self, key: &Key) -> Result<Entry, KvError> {
        self.store.get(key).await?.ok_or(KvError::NotFound)
    }

    async fn put(
        &self,
        key: Key,
        value: Value,
        precondition: Precondition,
    ) -> Result<PutOutcome, KvError> {
        let max = self.limits.max_value_bytes;
        if value.len() > max {
            return Err(ValueError::TooLarge {
                len: value.len(),
                max,
            }
            .into());
        }
        self.writable()?;
        Ok(self.store.put(key, value, precondition).await?)
    }

    async fn delete(
        &self,
        key: &Key,
        precondition: Precondition,
    ) -> Result<DeleteOutcome, KvError> {
        self.writable()?;
        Ok(self.store.delete(key, precondition).await?)
    }

    async fn list(&self, query: &ListQuery, client: &Identity) -> Result<Page, KvError> {
        if !self.flags.is_on(LIST_KEYS, &client.to_string()) {
            return Err(KvError::FeatureDisabled(LIST_KEYS));
        }
        Ok(self.store.list(query).await?)
    }

    async fn readiness(&self) -> Readiness {
        let store = self.store.check().await;
        Readiness {
            checks: vec![Check {
                name: "store",
                ok: store.is_ok(),
                detail: store.err().map(|e| e.to_string()),
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Version;
    use crate::error::StoreError;
    use crate::ports::MockKvStore;
    use mockall::predicate::eq;

    fn key(k: &str) -> Key {
        Key::new(k).unwrap()
    }

    fn service(store: MockKvStore, max_value_bytes: usize) -> KeyValueService {
        KeyValueService::new(Arc::new(store), Limits { max_value_bytes })
    }

    #[tokio::test]
    async fn get_of_absent_key_is_not_found() {
        let mut store = MockKvStore::new();
        store
            .expect_get()
            .with(eq(key("a")))
            .returning(|_| Ok(None));
        let err = service(store, 10).get(&key("a")).await.unwrap_err();
        assert!(matches!(err, KvError::NotFound), "{err:?}");
    }

    #[tokio::test]
    async fn read_only_refuses_writes_before_the_store_and_serves_reads() {
        let mut store = MockKvStore::new();
        store.expect_put().never();
        store.expect_delete().never();
        store.expect_get().times(1).returning(|_| Ok(None));
        let service = service(store, 10);
        service
            .flags()
            .replace([(READ_ONLY.to_owned(), crate::Rollout::On)]);
        let put = service
            .put(key("a"), Value::from("v"), Precondition::None)
            .await;
        assert!(matches!(put, Err(KvError::ReadOnly)), "{put:?}");
        let delete = service.delete(&key("a"), Precondition::None).await;
        assert!(matches!(delete, Err(KvError::ReadOnly)), "{delete:?}");
        // A value over the limit is still a 4xx: bad input first.
        let big = service
            .put(key("a"), Value::from("0123456789ab"), Precondition::None)
            .await;
        assert!(matches!(big, Err(KvError::InvalidValue(_))), "{big:?}");
        assert!(matches!(
            service.get(&key("a")).await,
            Err(KvError::NotFound)
        ));
    }

    #[tokio::test]
    async fn oversized_value_is_rejected_before_the_store() {
        let mut store = MockKvStore::new();
        store.expect_put().never();
        let err = service(store, 4)
            .put(key("a"), Value::from("12345"), Precondition::None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                KvError::InvalidValue(ValueError::TooLarge { len: 5, max: 4 })
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn value_at_the_limit_reaches_the_store_with_its_precondition() {
        let mut store = MockKvStore::new();
        store
            .expect_put()
            .withf(|k, v, p| {
                k.as_str() == "a" && v.as_bytes() == b"1234" && *p == Precondition::Absent
            })
            .times(1)
            .returning(|_, _, _| {
                Ok(PutOutcome {
                    version: Version::new(7),
                    created: true,
                })
            });
        let outcome = service(store, 4)
            .put(key("a"), Value::from("1234"), Precondition::Absent)
            .await
            .unwrap();
        assert_eq!(outcome.version, Version::new(7));
    }

    #[tokio::test]
    async fn store_errors_keep_their_meaning() {
        let mut store = MockKvStore::new();
        store.expect_delete().returning(|_, _| {
            Err(StoreError::PreconditionFailed {
                current: Some(Version::new(3)),
            })
        });
        store.expect_list().returning(|_| {
            Err(StoreError::Unavailable {
                reason: "disk full".into(),
                retry_after: Some(std::time::Duration::from_secs(1)),
            })
        });
        store
            .expect_get()
            .returning(|_| Err(StoreError::internal("boom")));
        let svc = service(store, 4);
        assert!(matches!(
            svc.delete(&key("a"), Precondition::Version(Version::new(2))).await,
            Err(KvError::PreconditionFailed { current: Some(v) }) if v == Version::new(3)
        ));
        assert!(matches!(
            svc.list(&ListQuery::all(), &Identity::Unknown).await,
            Err(KvError::Unavailable { retry_after: Some(d), .. }) if d.as_secs() == 1
        ));
        assert!(matches!(
            svc.get(&key("a")).await,
            Err(KvError::Internal(_))
        ));
    }

    /// `list_keys` is decided here, by client: a percentage turns it on for a stable share of
    /// clients, each of which gets the same answer every time, and the store is not asked for
    /// the others.
    #[tokio::test]
    async fn the_listing_flag_is_decided_by_client_before_the_store() {
        let mut store = MockKvStore::new();
        let empty = || Page {
            items: Vec::new(),
            next_cursor: None,
        };
        store.expect_list().returning(move |_| Ok(empty()));
        let flags = Arc::new(crate::flags::defaults());
        flags.replace([(LIST_KEYS.to_owned(), crate::Rollout::Percent(50))]);
        let svc = KeyValueService::with_flags(
            Arc::new(store),
            Limits { max_value_bytes: 4 },
            Arc::clone(&flags),
        );
        let (mut on, mut off) = (0, 0);
        for i in 0..40u8 {
            let client = Identity::Address(std::net::IpAddr::from([10, 0, 0, i]));
            let first = svc.list(&ListQuery::all(), &client).await;
            let again = svc.list(&ListQuery::all(), &client).await;
            assert_eq!(first.is_ok(), again.is_ok(), "{client}");
            match first {
                Ok(_) => on += 1,
                Err(KvError::FeatureDisabled(name)) => {
                    assert_eq!(name, LIST_KEYS);
                    off += 1;
                }
                Err(other) => panic!("{other:?}"),
            }
        }
        assert!(on > 0 && off > 0, "on {on}, off {off}");
        flags.replace([(LIST_KEYS.to_owned(), crate::Rollout::Off)]);
        let mut store = MockKvStore::new();
        store.expect_list().never();
        let svc =
            KeyValueService::with_flags(Arc::new(store), Limits { max_value_bytes: 4 }, flags);
        assert!(matches!(
            svc.list(&ListQuery::all(), &Identity::Unknown).await,
            Err(KvError::FeatureDisabled(_))
        ));
    }

    #[tokio::test]
    async fn readiness_follows_store_and_draining() {
        let mut store = MockKvStore::new();
        let mut calls = 0;
        store.expect_check().returning(move || {
            calls += 1;
            if calls == 2 {
                Err(StoreError::unavailable("log poisoned"))
            } else {
                Ok(())
            }
        });
        let svc = service(store, 4);
        assert!(svc.readiness().await.is_ready());

        let r = svc.readiness().await;
        assert!(!r.is_ready());
        assert_eq!(
            r.checks[0].detail.as_deref(),
            Some("store unavailable: log poisoned")
        );
    }
}

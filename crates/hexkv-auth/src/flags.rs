//! Feature flags: named switches, evaluated per request, that can change while the service runs.
//!
//! A flag is off, on, or on for a percentage of clients. A percentage rollout puts each client
//! in one of 100 buckets by a stable hash (FNV-1a) of the flag's name and the client's
//! [`Identity`](crate::Identity) (its API key's name, else its address), so a client sees the
//! same answer on every request and from every replica, and raising the percentage only adds
//! clients. A service names its flags and their defaults (on the platform,
//! `ServiceSettings::KNOWN_FLAGS`); the platform reads them from `[flags]` and changes them on
//! reload.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// A flag's setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    /// Off for everyone.
    Off,
    /// On for everyone.
    On,
    /// On for this percentage of clients (0–100), chosen by a stable hash of their identity.
    Percent(u8),
}

impl Rollout {
    /// Whether the flag `name` is on for `identity`.
    pub fn is_on_for(self, name: &str, identity: &str) -> bool {
        match self {
            Rollout::Off => false,
            Rollout::On => true,
            Rollout::Percent(p) => bucket(name, identity) < u32::from(p.min(100)),
        }
    }
}

/// The client's bucket for `name`, 0–99: FNV-1a over the name, a separator and the identity.
pub fn bucket(name: &str, identity: &str) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for byte in name.bytes().chain([0xff]).chain(identity.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    (hash % 100) as u32
}

/// The current flags; cheap to read on every request, replaced whole on a reload.
#[derive(Debug, Default)]
pub struct FeatureFlags {
    flags: RwLock<Arc<BTreeMap<String, Rollout>>>,
}

impl FeatureFlags {
    /// Flags with these defaults (a service's known flags).
    pub fn with_defaults(known: &[(&str, Rollout)]) -> Self {
        let flags = Self::default();
        flags.replace(known.iter().map(|(n, r)| ((*n).to_owned(), *r)));
        flags
    }

    /// Replaces every flag.
    pub fn replace(&self, flags: impl IntoIterator<Item = (String, Rollout)>) {
        let flags = Arc::new(flags.into_iter().collect());
        *self.flags.write().unwrap_or_else(|e| e.into_inner()) = flags;
    }

    /// Whether `name` is on for the client `identity`; an unknown flag is off.
    pub fn is_on(&self, name: &str, identity: &str) -> bool {
        self.flags
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .is_some_and(|r| r.is_on_for(name, identity))
    }

    /// The flags now.
    pub fn snapshot(&self) -> Arc<BTreeMap<String, Rollout>> {
        Arc::clone(&self.flags.read().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "one";
    const TWO: &str = "two";

    #[test]
    fn on_off_and_unknown() {
        let flags = FeatureFlags::with_defaults(&[(ONE, Rollout::Off), (TWO, Rollout::On)]);
        assert!(!flags.is_on(ONE, ""));
        assert!(flags.is_on(TWO, "key:alice"));
        assert!(!flags.is_on("no_such_flag", "key:alice"));
        flags.replace([(ONE.to_owned(), Rollout::On)]);
        assert!(flags.is_on(ONE, ""));
        assert!(!flags.is_on(TWO, "key:alice"), "replaced whole");
    }
    #[test]
    fn a_percentage_rolls_out_to_about_that_share_stably_and_monotonically() {
        let clients: Vec<String> = (0..10_000)
            .map(|i| format!("addr:10.0.{}.{}", i / 256, i % 256))
            .collect();
        let on = |p: u8| -> Vec<bool> {
            clients
                .iter()
                .map(|c| Rollout::Percent(p).is_on_for(TWO, c))
                .collect()
        };
        let (ten, thirty) = (on(10), on(30));
        let share = |v: &[bool]| v.iter().filter(|x| **x).count();
        // 10 000 clients: within a few points of the percentage.
        assert!((800..=1200).contains(&share(&ten)), "{}", share(&ten));
        assert!(
            (2700..=3300).contains(&share(&thirty)),
            "{}",
            share(&thirty)
        );
        // Raising the percentage only adds clients; the same client always gets the same answer.
        assert!(ten.iter().zip(&thirty).all(|(a, b)| !a || *b));
        assert_eq!(ten, on(10));
        assert!(on(0).iter().all(|x| !x));
        assert!(on(100).iter().all(|x| *x));
        // Buckets differ per flag, so one flag's early adopters are not every flag's.
        let other: Vec<bool> = clients
            .iter()
            .map(|c| Rollout::Percent(10).is_on_for(ONE, c))
            .collect();
        assert_ne!(ten, other);
    }
}

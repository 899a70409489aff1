//! The process's admission tag keyring: a random key until a serving key is loaded, then the key
//! derived from it, the one before a change still verifying for a while
//! ([`crate::core::mutate::tag`]). Admissions read it; loading a serving certificate sets it.

use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use k8s_openapi::jiff::Timestamp;

use crate::core::mutate::tag::{Keyring, TagKey};

/// The process's keyring.
static KEYRING: LazyLock<RwLock<Arc<Keyring>>> =
    LazyLock::new(|| RwLock::new(Arc::new(Keyring::new(TagKey::random()))));

/// The keyring admissions tag and check with now.
pub fn keyring() -> Arc<Keyring> {
    KEYRING
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Makes the key derived from the serving key `pem` the one admissions tag with, called whenever
/// the webhook loads its serving certificate. The same key again changes nothing; a PEM without a
/// private key (the TLS stack wouldn't have loaded it either) is logged and the key stays.
pub fn use_serving_key(pem: &[u8]) {
    let Some(next) = TagKey::from_serving_key(pem) else {
        tracing::warn!(
            "no private key found in the serving key's PEM; the admission tag key stays"
        );
        return;
    };
    let mut keyring = KEYRING.write().unwrap_or_else(PoisonError::into_inner);
    if keyring.tags_with(&next) {
        return;
    }
    *keyring = Arc::new(keyring.rotated(next, Timestamp::now()));
    tracing::info!("admission tag key derived from the serving key");
}

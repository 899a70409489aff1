//! The admission tag (`jobtrace.dev/admission-tag`): an HMAC-SHA256 over what a reinvocation of
//! the same create request keeps of the first pass (the object's kind, namespace and name, its
//! trace id, span id and `jobtrace.dev/admitted-at`), so that only the webhook can write a stamp
//! that passes for a reinvocation. A creator can't make a tag that verifies for ids or a stamp of
//! its choosing, and a tag copied from another object holds only for that object's namespace,
//! name and kind.
//!
//! The key is derived (HKDF-SHA256, with a label of its own) from the private key of the serving
//! certificate, which every replica reads from the same Secret: the replicas share it with
//! nothing new to distribute, and whoever can't read that Secret can't tag. A process that has
//! loaded no serving key (the in-process tests) uses a random key of its own. When the serving
//! key changes, the key before it still verifies for as long as a request lives, so a stamp
//! written just before the change holds in its reinvocation; any other tag that doesn't verify
//! makes the object a fresh create, with new ids, which is always safe.
//!
//! The keys are an input of the mutation ([`super::Admission::keys`]); the process's own keyring,
//! which follows the serving key, is the webhook's ([`crate::k8s::webhook::keys`]).

use std::fmt;

use base64::Engine;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use ring::{hkdf, hmac};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::core::context::{SpanId, TraceId};

/// The salt and info of the key's derivation: the serving key yields a key for this use only.
const SALT: &[u8] = b"jobtrace.dev/admission-tag";
const INFO: &[u8] = b"jobtrace admission tag v1";
/// How long the key before a change still verifies: a request's lifetime and the clock skew
/// between replicas, as long as a stamp can pass for a reinvocation at all.
const PREVIOUS_KEY_GRACE: SignedDuration =
    SignedDuration::from_secs(super::REQUEST_LIFETIME.as_secs() + super::CLOCK_SKEW.as_secs());
/// The length of a tag: 32 bytes in unpadded base64url.
const TAG_LENGTH: usize = 43;

/// The kind of object a tag is for, so that a pod's tag never holds on a Job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Job,
    Pod,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Self::Job => "Job",
            Self::Pod => "Pod",
        }
    }
}

/// A key tags are written and checked with.
#[derive(Clone)]
pub struct TagKey {
    material: [u8; 32],
    key: hmac::Key,
}

impl TagKey {
    fn from_material(material: [u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, &material),
            material,
        }
    }

    /// A key of this process alone, for a webhook that serves without a serving key of its own.
    pub fn random() -> Self {
        Self::from_material(rand::random())
    }

    /// The key derived from the serving certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1),
    /// the same in every replica that serves with it; `None` when the PEM holds no private key.
    pub fn from_serving_key(pem: &[u8]) -> Option<Self> {
        let der = PrivateKeyDer::from_pem_slice(pem).ok()?;
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(der.secret_der());
        let mut material = [0; 32];
        prk.expand(&[INFO], hmac::HMAC_SHA256)
            .and_then(|okm| okm.fill(&mut material))
            .ok()?;
        Some(Self::from_material(material))
    }
}

impl PartialEq for TagKey {
    fn eq(&self, other: &Self) -> bool {
        self.material == other.material
    }
}

impl fmt::Debug for TagKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TagKey(..)")
    }
}

/// What a tag vouches for: the object it was written on, and what a reinvocation keeps.
#[derive(Debug, Clone, Copy)]
pub struct Stamped<'a> {
    pub kind: Kind,
    pub namespace: &'a str,
    /// The object's name as admission sees it: empty for one created with `generateName` (the
    /// apiserver names it after admission), the same in every pass of one request.
    pub name: &'a str,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `jobtrace.dev/admitted-at`, as written.
    pub admitted_at: &'a str,
}

impl Stamped<'_> {
    /// The bytes tagged: each field after its length, so that no two objects' fields read alike.
    fn message(&self) -> Vec<u8> {
        let fields: [&[u8]; 6] = [
            self.kind.label().as_bytes(),
            self.namespace.as_bytes(),
            self.name.as_bytes(),
            &self.trace_id.0,
            &self.span_id.0,
            self.admitted_at.as_bytes(),
        ];
        let mut message = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
        for field in fields {
            message.extend_from_slice(&(field.len() as u64).to_be_bytes());
            message.extend_from_slice(field);
        }
        message
    }
}

/// The keys a replica tags and checks with: the current one, and the one before it until its
/// grace ends.
#[derive(Debug, Clone)]
pub struct Keyring {
    current: TagKey,
    previous: Option<(TagKey, Timestamp)>,
}

impl Keyring {
    /// Whether `key` is the one this keyring tags with.
    pub fn tags_with(&self, key: &TagKey) -> bool {
        self.current == *key
    }

    pub fn new(current: TagKey) -> Self {
        Self {
            current,
            previous: None,
        }
    }

    /// The keyring once the key changed to `next` at `at`: the current key is still accepted
    /// for `PREVIOUS_KEY_GRACE` after.
    #[must_use]
    pub fn rotated(&self, next: TagKey, at: Timestamp) -> Self {
        Self {
            previous: Some((self.current.clone(), at + PREVIOUS_KEY_GRACE)),
            current: next,
        }
    }

    /// The tag of `stamped`, under the current key.
    pub fn tag(&self, stamped: &Stamped) -> String {
        let tag = hmac::sign(&self.current.key, &stamped.message());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    /// Whether `tag` is the tag of `stamped` under the current key, or under the previous one
    /// before `now` is past its grace. Compared in constant time.
    pub fn verifies(&self, stamped: &Stamped, tag: &str, now: Timestamp) -> bool {
        if tag.len() != TAG_LENGTH {
            return false;
        }
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(tag) else {
            return false;
        };
        let message = stamped.message();
        let previous = self
            .previous
            .as_ref()
            .filter(|(_, until)| now <= *until)
            .map(|(key, _)| key);
        std::iter::once(&self.current)
            .chain(previous)
            .any(|key| hmac::verify(&key.key, &message, &tag).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamped() -> Stamped<'static> {
        Stamped {
            kind: Kind::Job,
            namespace: "reports",
            name: "nightly",
            trace_id: TraceId([0x4b; 16]),
            span_id: SpanId([0xa; 8]),
            admitted_at: "2026-11-23T10:00:00Z",
        }
    }

    fn now() -> Timestamp {
        "2026-11-23T10:00:01Z".parse().unwrap()
    }

    #[test]
    fn the_serving_key_gives_every_replica_the_same_key_and_only_it() {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let one = TagKey::from_serving_key(pem.as_bytes()).unwrap();
        let two = TagKey::from_serving_key(pem.as_bytes()).unwrap();
        assert_eq!(one, two);
        let tag = Keyring::new(one).tag(&stamped());
        assert_eq!(tag.len(), TAG_LENGTH);
        assert!(Keyring::new(two).verifies(&stamped(), &tag, now()));
        let other = rcgen::KeyPair::generate().unwrap().serialize_pem();
        let other = TagKey::from_serving_key(other.as_bytes()).unwrap();
        assert!(!Keyring::new(other).verifies(&stamped(), &tag, now()));
        assert_eq!(TagKey::from_serving_key(b"not a key"), None);
        assert_ne!(TagKey::random(), TagKey::random());
    }

    #[test]
    fn a_tag_holds_for_what_it_was_written_for_alone() {
        let keyring = Keyring::new(TagKey::random());
        let tag = keyring.tag(&stamped());
        assert!(keyring.verifies(&stamped(), &tag, now()));
        let others = [
            Stamped {
                kind: Kind::Pod,
                ..stamped()
            },
            Stamped {
                namespace: "tenant-b",
                ..stamped()
            },
            Stamped {
                name: "copied",
                ..stamped()
            },
            Stamped {
                trace_id: TraceId([0x4c; 16]),
                ..stamped()
            },
            Stamped {
                span_id: SpanId([0xb; 8]),
                ..stamped()
            },
            Stamped {
                admitted_at: "2026-11-23T10:00:00.000001Z",
                ..stamped()
            },
            // Fields that would read alike if they were only put one after the other.
            Stamped {
                namespace: "reportsn",
                name: "ightly",
                ..stamped()
            },
        ];
        for other in others {
            assert!(!keyring.verifies(&other, &tag, now()), "{other:?}");
        }
        for malformed in ["", "x", &tag[1..], &format!("{tag}="), &tag.to_uppercase()] {
            assert!(
                !keyring.verifies(&stamped(), malformed, now()),
                "{malformed}"
            );
        }
    }

    #[test]
    fn the_key_before_a_change_holds_as_long_as_a_request_lives() {
        let before = Keyring::new(TagKey::random());
        let tag = before.tag(&stamped());
        let after = before.rotated(TagKey::random(), now());
        assert!(after.verifies(&stamped(), &tag, now() + SignedDuration::from_secs(65)));
        assert!(!after.verifies(&stamped(), &tag, now() + SignedDuration::from_secs(66)));
        let new_tag = after.tag(&stamped());
        assert_ne!(new_tag, tag);
        assert!(
            !before.verifies(&stamped(), &new_tag, now()),
            "a replica not yet rotated"
        );
        let twice = after.rotated(TagKey::random(), now());
        assert!(
            !twice.verifies(&stamped(), &tag, now()),
            "only the one before"
        );
    }
}

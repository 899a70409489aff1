//! The jobtrace values the unit tests build their admissions from. Objects (Jobs, pods, reviews,
//! policies) and ids are the test kit's (`jobtrace_testkit::fixtures`), shared with the
//! integration tests and the benchmarks; these are of the crate's own types, which a unit test
//! must take from the crate it tests.

use jobtrace_testkit::fixtures::now;

use crate::core::context::{RequestContext, SpanId, TraceId};
use crate::core::mutate::Admission;
use crate::core::mutate::tag::{Keyring, TagKey};
use crate::core::policy::{Resolution, TraceSettings};

/// An admission in namespace `reports` at the kit's `now`, giving `span` to a new object.
pub fn admission(span: SpanId) -> Admission<'static> {
    Admission {
        namespace: "reports",
        new_span: span,
        new_trace: TraceId([0x5a; 16]),
        now: now(),
        request: RequestContext::none(),
        keys: keys(),
    }
}

/// The admission tag keys of the tests' admissions: one random key for the whole process.
pub fn keys() -> &'static Keyring {
    static KEYS: std::sync::LazyLock<Keyring> =
        std::sync::LazyLock::new(|| Keyring::new(TagKey::random()));
    &KEYS
}

/// The cluster defaults, no policy.
pub fn defaults() -> Resolution {
    crate::core::policy::resolve(
        &TraceSettings::default(),
        [],
        &std::collections::BTreeMap::new(),
    )
}

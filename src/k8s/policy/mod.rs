//! The `JobTracePolicy` objects as the apiserver holds them: a watch-backed copy the webhook
//! resolves against ([`Policies`]), their status, and the Jobs webhook's `matchConditions` kept in
//! step with them. The types and the resolution itself are pure: [`crate::core::policy`].

mod cache;
pub mod match_conditions;
pub mod status;

pub use cache::Policies;

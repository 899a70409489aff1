//! The pure core: plain functions over plain data, with no Kubernetes client, no HTTP and no
//! clock or randomness taken implicitly. W3C trace context, the admission patches, policy
//! resolution and span building live here; the edges ([`crate::k8s`]) call them.

pub mod context;
pub mod mutate;
pub mod names;
pub mod patch;
pub mod policy;
pub mod slim;
pub mod spans;

//! The edges: everything that talks to the apiserver or the network. The admission webhook and
//! its server, the controller's stages, the OTLP client, the certificates, the webhook's
//! registration, the policies' watch and status, and the metrics port. They call the pure
//! [`crate::core`].

pub mod certs;
pub mod controller;
pub mod logging;
pub mod metrics;
pub mod metrics_port;
pub mod otlp;
pub mod pages;
pub mod policy;
pub mod registration;
pub mod release;
pub mod selftrace;
pub mod serve;
pub mod tls;
pub mod webhook;

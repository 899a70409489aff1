//! End-to-end tests against the local control plane (`make cluster-up`): a real kube-apiserver,
//! controller-manager and scheduler, kwok as the simulated nodes and a kubelet on containerd as the
//! real one, and Jaeger. Run them with `make e2e`.

mod certs;
mod chart;
mod clients;
mod cluster;
mod durable;
mod edges;
mod exporter_tls;
mod faults;
mod faults_serial;
mod hostile;
mod image;
mod jaeger;
mod pods;
mod policy;
mod readiness;
mod real_node;
mod security;
mod spans;
mod trace_command;
mod ui;
mod webhook;

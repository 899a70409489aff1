//! Every name jobtrace reads or writes on Kubernetes objects and in containers' environments:
//! those of the client library, which creators and Job programs share with the operator.

pub use jobtrace_context::names::*;

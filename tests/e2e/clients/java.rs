//! The java client example (examples/java/): see the module's contract in mod.rs.

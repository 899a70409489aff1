//! The node client example (examples/node/): see the module's contract in mod.rs.

//! The go client example (examples/go/): see the module's contract in mod.rs.

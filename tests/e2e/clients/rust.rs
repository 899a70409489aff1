//! The rust client example (examples/rust/): see the module's contract in mod.rs.

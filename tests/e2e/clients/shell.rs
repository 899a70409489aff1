//! The shell client example (examples/shell/): see the module's contract in mod.rs.

//! The queue client example (examples/queue/): see the module's contract in mod.rs.

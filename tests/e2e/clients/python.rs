//! The python client example (examples/python/): see the module's contract in mod.rs.

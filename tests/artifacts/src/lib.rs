//! Paths of the wasm32-wasip2 guests the tests run, built by this crate's
//! build script once per test build.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

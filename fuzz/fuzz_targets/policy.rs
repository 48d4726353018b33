//! The network policy under arbitrary rules, names and addresses: the
//! matcher (`host/src/policy.rs`) and its driver (`host/src/policy_fuzz.rs`,
//! which says what an input is and what must hold), compiled in here by
//! path, without the rest of the host and its wasmtime.

#![no_main]

#[allow(dead_code)]
#[path = "../../host/src/policy.rs"]
mod policy;
#[path = "../../host/src/policy_fuzz.rs"]
mod policy_fuzz;

libfuzzer_sys::fuzz_target!(|data: &[u8]| policy_fuzz::drive(data));

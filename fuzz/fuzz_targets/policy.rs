//! The network policy under arbitrary rules, names and addresses: the
//! matcher (`host/src/policy.rs`) through its driver
//! (`host/src/policy_fuzz.rs`, which says what an input is and what must
//! hold).

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockshim_host::policy_fuzz::drive(data));

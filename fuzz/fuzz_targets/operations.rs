//! The host's socket operations under arbitrary sequences of calls and
//! arguments, on real sockets against a native loopback peer: the driver
//! (`host/src/ops_fuzz.rs`) says what an input is and what must hold.
//! Run it alone (one job): it checks the process's descriptor count.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| sockshim_host::ops_fuzz::drive(data));

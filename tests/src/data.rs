//! The test data both sides agree on: a deterministic byte stream and a
//! checksum. Compiled into the native harness and into the wasm test guest.

/// `len` bytes of a deterministic stream (xorshift64).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// FNV-1a (64 bit) of `data`.
pub fn fnv1a(data: &[u8]) -> u64 {
    fnv1a_continue(0xcbf2_9ce4_8422_2325, data)
}

/// FNV-1a of a stream fed in pieces: `fnv1a_continue(fnv1a(a), b)` is
/// `fnv1a` of `a` followed by `b`.
pub fn fnv1a_continue(hash: u64, data: &[u8]) -> u64 {
    data.iter().fold(hash, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

//! Receive buffers that start at a page boundary, for every bulk receiver
//! of the benchmark: the native ones (bench/src) and each guest, which all
//! include this file by path.
//!
//! The kernel's copy of received bytes into a buffer costs more or less
//! with the buffer's offset in its page: on this machine a guest receiving
//! 1 GiB at page offset 336 took about 10 % less CPU than at 2624 or 0. Each
//! allocator puts a 64 KiB buffer at an offset of its own (the wasi:sockets
//! 0.3 guest's was at 336 when it listened, the sockshim guest's at 2624),
//! so without this the systems would be compared at different offsets.
//! docs/benchmarks.md has the measurement.

#![allow(dead_code)] // each including crate uses one of the two

/// The page size the offsets are taken in.
pub const PAGE: usize = 4096;

/// `len` zeroed bytes at a page boundary, inside an allocation a page
/// longer.
pub struct PageAligned(Vec<u8>);

impl PageAligned {
    pub fn new(len: usize) -> PageAligned {
        PageAligned(vec![0u8; len + PAGE])
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let at = self.0.as_ptr().align_offset(PAGE);
        let len = self.0.len() - PAGE;
        &mut self.0[at..at + len]
    }
}

/// For a read into a `Vec`'s spare capacity (a wasi:sockets 0.3 stream):
/// a `Vec` whose spare capacity is exactly `len` bytes from a page
/// boundary, with its length, the prefix to truncate back to before each
/// read. `None` if the allocator moved the buffer when it shrank it.
pub fn page_aligned_spare(len: usize) -> Option<(Vec<u8>, usize)> {
    let mut buf: Vec<u8> = Vec::with_capacity(len + PAGE);
    let at = buf.as_ptr().align_offset(PAGE);
    buf.resize(at, 0);
    let start = buf.as_ptr();
    buf.shrink_to(at + len);
    (buf.as_ptr() == start && buf.capacity() == at + len).then_some((buf, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffers_start_at_a_page_boundary_and_hold_len_bytes() {
        for len in [1, 4096, 65536, 100_000] {
            let mut buf = PageAligned::new(len);
            let slice = buf.as_mut_slice();
            assert_eq!(slice.len(), len);
            assert_eq!(slice.as_ptr() as usize % PAGE, 0);
            let (vec, at) = page_aligned_spare(len).expect("shrunk in place");
            assert_eq!(vec.len(), at);
            assert_eq!(vec.capacity() - vec.len(), len);
            assert_eq!(vec[at..].as_ptr() as usize % PAGE, 0);
        }
    }
}

//! `recv_into` without a copy: the host receives straight into the
//! caller's buffer.
//!
//! The contract's `recv` returns a `list<u8>`. The host lowers it by asking
//! the plugin's allocator for a buffer of the requested size (the canonical
//! ABI's `realloc`), calling recv(2) into that buffer and shrinking it to
//! what arrived; the generated binding then wraps the buffer in a `Vec`.
//! For `recv_into(buf)` that `Vec` would have to be copied into `buf`.
//!
//! The component model lets a module give import calls their own
//! allocator, the export `cabi_import_realloc`. This module exports one
//! that behaves exactly as the module's `cabi_realloc`, except while
//! [`receive_into`] runs: then the first allocation of exactly the caller's
//! buffer size is answered with the caller's buffer, and shrinking that
//! buffer keeps it in place. The `Vec` the binding builds then points into
//! the caller's buffer; [`receive_into`] recognises it by its address and
//! forgets it instead of freeing it. Anything else the call allocates (an
//! error's text) goes to the real allocator, and should a text still land
//! in the buffer it is copied out and forgotten the same way.
//!
//! The call made is the contract's `recv-into`, `recv` for a plugin that
//! lends the buffer: a host may then allocate it before it knows the
//! outcome and receive while it waits, which saves a system call per
//! receive, as a failed receive loses nothing of the plugin's. Without the
//! export, [`receive_into`] calls `recv`.
//!
//! Nothing depends on the export being used: if the linker drops it, or the
//! host copies a small receive into a buffer of its own, the bytes arrive
//! in an allocated `Vec` and are copied, as before.
//!
//! A module can export only one `cabi_import_realloc`. The export comes
//! with the default feature `in-place-recv`; a plugin that links another
//! definition (another version of this crate, or code of its own) turns the
//! feature off, and then every `recv_into` copies.

use crate::bindings::{self, ErrorCode};
use std::cell::Cell;

/// A buffer of the caller's, as the allocator hands it out.
#[derive(Clone, Copy)]
struct Region {
    ptr: *mut u8,
    len: usize,
}

/// Where the caller's buffer stands during a receive.
// Only the allocator, which exists on wasm32 with `in-place-recv` alone,
// reads an offer and takes it.
#[cfg_attr(
    not(all(target_arch = "wasm32", feature = "in-place-recv")),
    allow(dead_code)
)]
#[derive(Clone, Copy)]
enum Buffer {
    /// No receive is running.
    None,
    /// Offered to the next import allocation of exactly its size.
    Offered(Region),
    /// Taken by an allocation, until the call returns.
    Taken(Region),
}

thread_local! {
    /// The caller's buffer of the receive in progress.
    static BUFFER: Cell<Buffer> = const { Cell::new(Buffer::None) };
    /// How many receives landed in the caller's buffer.
    static IN_PLACE: Cell<u64> = const { Cell::new(0) };
}

/// How many `recv_into` calls (and reads of sockets and their files) on
/// this thread had the host receive straight into the caller's buffer, with
/// no copy in the plugin. The others (small receives the host copies, the
/// end of the stream, errors) copied what they got.
pub fn receives_in_place() -> u64 {
    IN_PLACE.get()
}

/// Calls `recv` (a `recv` of at most `buf.len()` bytes) so that what it
/// receives lands in `buf` if the host allocates it there, and returns how
/// many bytes arrived.
pub(crate) fn receive_into(
    buf: &mut [u8],
    recv: impl FnOnce() -> Result<Vec<u8>, ErrorCode>,
) -> Result<usize, ReceiveError> {
    let region = Region {
        ptr: buf.as_mut_ptr(),
        len: buf.len(),
    };
    BUFFER.set(Buffer::Offered(region));
    let result = recv();
    let placed = matches!(BUFFER.replace(Buffer::None), Buffer::Taken(_));
    match result {
        Ok(bytes) if placed && bytes.as_ptr() == region.ptr.cast_const() => {
            let len = bytes.len();
            // The `Vec` owns the caller's buffer, which no allocator gave
            // out: it must not be freed. The bytes are already in place.
            std::mem::forget(bytes);
            if len > region.len {
                return Err(ReceiveError::TooLong(len));
            }
            IN_PLACE.set(IN_PLACE.get() + 1);
            Ok(len)
        }
        Ok(bytes) => {
            let target = buf
                .get_mut(..bytes.len())
                .ok_or(ReceiveError::TooLong(bytes.len()))?;
            target.copy_from_slice(&bytes);
            Ok(bytes.len())
        }
        Err(code) if placed => Err(ReceiveError::Failed(own_texts(code, region))),
        Err(code) => Err(ReceiveError::Failed(code)),
    }
}

/// The host's receive of at most `max_len` bytes into the buffer on offer:
/// `recv-into`, which may allocate the result before it knows the outcome
/// (and so skip a system call), where this module's allocator lends the
/// caller's buffer; `recv`, which never leaves an allocation unreturned,
/// where it does not.
pub(crate) fn recv_lent(host: &bindings::Socket, max_len: u64) -> Result<Vec<u8>, ErrorCode> {
    if cfg!(all(target_arch = "wasm32", feature = "in-place-recv")) {
        host.recv_into(max_len)
    } else {
        host.recv(max_len)
    }
}

/// What an import allocation of `new_len` bytes (a fresh one when
/// `old_len` is zero) gets from the caller's buffer: the buffer itself
/// when it is on offer and exactly that size, or when it was taken and
/// shrinks; `None` when the module's allocator must answer.
#[cfg(any(all(target_arch = "wasm32", feature = "in-place-recv"), test))]
fn from_callers_buffer(old_ptr: *mut u8, old_len: usize, new_len: usize) -> Option<*mut u8> {
    match BUFFER.get() {
        Buffer::Offered(region) if old_len == 0 && region.len == new_len => {
            BUFFER.set(Buffer::Taken(region));
            Some(region.ptr)
        }
        Buffer::Taken(region) if old_len != 0 && region.ptr == old_ptr && new_len <= region.len => {
            Some(region.ptr)
        }
        _ => None,
    }
}

/// Why [`receive_into`] failed.
pub(crate) enum ReceiveError {
    /// The host's error.
    Failed(ErrorCode),
    /// The host returned more bytes than the buffer holds.
    TooLong(usize),
}

/// `code` with any text that lives in `region` copied to the heap; the
/// original, which no allocator gave out, is forgotten.
fn own_texts(code: ErrorCode, region: Region) -> ErrorCode {
    let own = |text: String| {
        if text.as_ptr() == region.ptr.cast_const() {
            let copy = text.as_str().to_owned();
            std::mem::forget(text);
            copy
        } else {
            text
        }
    };
    match code {
        ErrorCode::AccessDenied(text) => ErrorCode::AccessDenied(own(text)),
        ErrorCode::InvalidArgument(text) => ErrorCode::InvalidArgument(own(text)),
        ErrorCode::LimitReached(text) => ErrorCode::LimitReached(own(text)),
        other => other,
    }
}

#[cfg(all(target_arch = "wasm32", feature = "in-place-recv"))]
mod export {
    use super::{BUFFER, Buffer, from_callers_buffer};

    unsafe extern "C" {
        /// The module's allocator for the canonical ABI (wasi-libc's, or
        /// wit-bindgen's on other targets).
        fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8;
    }

    /// The allocator of import calls' results (see the module's
    /// documentation): `cabi_realloc`, except for the caller's buffer.
    ///
    /// # Safety
    ///
    /// As `cabi_realloc`: called by the component model's lowering only.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn cabi_import_realloc(
        old_ptr: *mut u8,
        old_len: usize,
        align: usize,
        new_len: usize,
    ) -> *mut u8 {
        if let Some(ptr) = from_callers_buffer(old_ptr, old_len, new_len) {
            return ptr;
        }
        if let Buffer::Taken(region) = BUFFER.get()
            && region.ptr == old_ptr
        {
            // Growing the caller's buffer (no host does): a real
            // allocation, leaving the caller's buffer alone; the result is
            // then copied.
            // SAFETY: a fresh allocation, then a copy of at most the
            // caller's buffer into it.
            unsafe {
                let new = cabi_realloc(std::ptr::null_mut(), 0, align, new_len);
                std::ptr::copy_nonoverlapping(old_ptr, new, old_len.min(region.len));
                return new;
            }
        }
        // SAFETY: the caller's contract is `cabi_realloc`'s.
        unsafe { cabi_realloc(old_ptr, old_len, align, new_len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a host does when it lowers a `list<u8>` result of `data.len()`
    /// bytes into a buffer of `max_len`: allocate `max_len` through the
    /// import allocator, write, shrink. Allocations the caller's buffer
    /// does not serve come from the global allocator, as `cabi_realloc`'s
    /// do.
    fn host_lowers(max_len: usize, data: &[u8]) -> Vec<u8> {
        let ptr = from_callers_buffer(std::ptr::null_mut(), 0, max_len).unwrap_or_else(|| {
            let mut fresh = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(max_len));
            fresh.as_mut_ptr()
        });
        // SAFETY: `ptr` holds `max_len >= data.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), ptr, data.len()) };
        let shrunk = from_callers_buffer(ptr, max_len, data.len());
        // The binding's view of the result. When the caller's buffer served
        // it, `receive_into` forgets it; otherwise the capacity is the
        // allocation's, so dropping it frees what was allocated.
        let capacity = if shrunk.is_some() {
            data.len()
        } else {
            max_len
        };
        // SAFETY: as the generated binding does, over what was allocated.
        unsafe { Vec::from_raw_parts(ptr, data.len(), capacity) }
    }

    #[test]
    fn a_receive_of_the_buffers_size_lands_in_the_buffer() {
        let before = receives_in_place();
        let mut buf = vec![0u8; 64];
        let got = receive_into(&mut buf, || Ok(host_lowers(64, b"hello"))).ok();
        assert_eq!(got, Some(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(receives_in_place(), before + 1);
        assert!(matches!(BUFFER.get(), Buffer::None));
    }

    #[test]
    fn an_allocation_of_another_size_is_copied() {
        let before = receives_in_place();
        let mut buf = vec![0u8; 64];
        // A host that copies a small receive allocates what arrived.
        let got = receive_into(&mut buf, || Ok(host_lowers(3, b"abc"))).ok();
        assert_eq!(got, Some(3));
        assert_eq!(&buf[..3], b"abc");
        assert_eq!(receives_in_place(), before);
    }

    #[test]
    fn more_bytes_than_the_buffer_holds_is_an_error() {
        let mut buf = vec![0u8; 2];
        let got = receive_into(&mut buf, || Ok(host_lowers(3, b"abc")));
        assert!(matches!(got, Err(ReceiveError::TooLong(3))));
    }

    #[test]
    fn an_error_text_in_the_buffer_is_copied_out() {
        let mut buf = vec![0u8; 4];
        let got = receive_into(&mut buf, || {
            let text = host_lowers(4, b"oops");
            // SAFETY: the bytes are ASCII; ownership passes to the String
            // as in the generated binding.
            let text = unsafe { String::from_utf8_unchecked(text) };
            Err(ErrorCode::InvalidArgument(text))
        });
        match got {
            Err(ReceiveError::Failed(ErrorCode::InvalidArgument(text))) => {
                assert_eq!(text, "oops");
                assert_ne!(text.as_ptr(), buf.as_ptr());
            }
            _ => panic!("expected the error with its text"),
        }
    }
}

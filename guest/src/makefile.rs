//! [`SocketFile`]: the buffered file object of
//! [`Socket::makefile`](crate::Socket::makefile).

use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::rc::Rc;

use crate::bindings;
use crate::socket::{recv_into, send};

/// The buffer size of [`Socket::makefile`](crate::Socket::makefile), Python's
/// `io.DEFAULT_BUFFER_SIZE`.
pub const DEFAULT_BUFFER_SIZE: usize = 8192;

/// What a `makefile` mode allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mode {
    read: bool,
    write: bool,
}

impl Mode {
    /// Parses a mode as CPython's `socket.makefile` does: only the
    /// characters `r`, `w` and `b`; writable if it has `w`, readable if it
    /// has `r` or no `w`. Text mode (no `b`) is refused here.
    pub(crate) fn parse(mode: &str) -> io::Result<Mode> {
        if mode.chars().any(|c| !matches!(c, 'r' | 'w' | 'b')) {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("invalid mode {mode:?} (only r, w, b allowed)"),
            ));
        }
        if !mode.contains('b') {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "text mode {mode:?} is not supported: use a binary mode (\"rb\", \"wb\", \
                     \"rwb\"); BufRead's read_line and lines decode UTF-8"
                ),
            ));
        }
        let write = mode.contains('w');
        let read = mode.contains('r') || !write;
        Ok(Mode { read, write })
    }

    fn as_str(self) -> &'static str {
        match (self.read, self.write) {
            (true, true) => "rwb",
            (false, true) => "wb",
            _ => "rb",
        }
    }
}

/// The reading side of a file object: CPython's `SocketIO.readinto`.
struct RawReader {
    host: Rc<bindings::Socket>,
    /// Set by a read that timed out; every later read fails.
    timed_out: bool,
}

impl Read for RawReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.timed_out {
            // CPython: OSError("cannot read from timed out object"). What
            // arrived after the timeout might be the rest of a message
            // whose start was lost; reading on would silently misframe.
            return Err(io::Error::other("cannot read from timed out object"));
        }
        recv_into(&self.host, buf).inspect_err(|err| {
            if err.kind() == ErrorKind::TimedOut {
                self.timed_out = true;
            }
        })
    }
}

/// The writing side of a file object: CPython's `SocketIO.write`.
struct RawWriter {
    host: Rc<bindings::Socket>,
}

impl Write for RawWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(&self.host, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A buffered file object on a connection, from
/// [`Socket::makefile`](crate::Socket::makefile); corresponds to the
/// `BufferedReader`, `BufferedWriter` or `BufferedRWPair` over a
/// `SocketIO` that Python's `socket.makefile` returns.
///
/// A readable file (`"rb"`, `"rwb"`) implements [`Read`] and [`BufRead`]
/// (`read_line`, `lines`, `read_until`, `read_exact`, …); a writable one
/// (`"wb"`, `"rwb"`) implements [`Write`], keeping writes in its buffer
/// until it is full or [`flush`](Write::flush) is called. Reading from a
/// file that is not readable, or writing to one that is not writable, fails
/// with [`ErrorKind::Unsupported`] ("File not open for reading" /
/// "File not open for writing"). As with Python's `BufferedRWPair`, reading
/// from an `"rwb"` file does not flush what was written: flush a request
/// before reading its answer.
///
/// **Timeouts.** Reads and writes wait according to the socket's timeout,
/// as it is when they run. Once a read has timed out, the file refuses
/// every further read with "cannot read from timed out object" (kind
/// [`ErrorKind::Other`]), as CPython's `SocketIO` does: bytes that arrive
/// later could be the end of a message whose start was consumed, and
/// reading on would misframe it silently. Writes are not affected.
///
/// **Lifetime.** The file object shares the connection with its socket
/// (CPython's `_io_refs`): the connection stays open while the socket or
/// any of its file objects lives. After
/// [`Socket::close`](crate::Socket::close), the socket refuses use but its
/// file objects keep working; the host closes the connection when the last
/// of them is closed or dropped.
///
/// **Closing.** [`close`](SocketFile::close) flushes and reports the
/// error; dropping a writable file flushes too, ignoring errors (as
/// `BufWriter` does). After `close`, every read and write fails with
/// [`ErrorKind::InvalidInput`], "I/O operation on closed file" (Python's
/// `ValueError`).
///
/// ```no_run
/// use std::io::{BufRead, Write};
///
/// let sock = sockshim::create_connection("127.0.0.1:8000", None)?;
/// let mut file = sock.makefile("rwb")?;
/// file.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
/// file.flush()?;
/// let mut status = String::new();
/// file.read_line(&mut status)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct SocketFile {
    reader: Option<BufReader<RawReader>>,
    writer: Option<BufWriter<RawWriter>>,
    mode: Mode,
    closed: bool,
}

impl SocketFile {
    pub(crate) fn new(host: Rc<bindings::Socket>, mode: Mode, buffering: usize) -> SocketFile {
        let reader = mode.read.then(|| {
            // A read buffer of at least one byte: with none, `fill_buf`
            // could not tell an empty buffer from the end of the stream.
            BufReader::with_capacity(
                buffering.max(1),
                RawReader {
                    host: Rc::clone(&host),
                    timed_out: false,
                },
            )
        });
        let writer = mode.write.then(|| {
            BufWriter::with_capacity(
                buffering,
                RawWriter {
                    host: Rc::clone(&host),
                },
            )
        });
        SocketFile {
            reader,
            writer,
            mode,
            closed: false,
        }
    }

    /// The mode, normalized: `"rb"`, `"wb"` or `"rwb"`; corresponds to
    /// Python's `file.mode`.
    pub fn mode(&self) -> &'static str {
        self.mode.as_str()
    }

    /// Whether the file can be read; corresponds to Python's
    /// `file.readable()`.
    pub fn readable(&self) -> bool {
        self.mode.read
    }

    /// Whether the file can be written; corresponds to Python's
    /// `file.writable()`.
    pub fn writable(&self) -> bool {
        self.mode.write
    }

    /// Whether [`close`](SocketFile::close) was called; corresponds to
    /// Python's `file.closed`.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Flushes what was written, then lets go of the connection (which the
    /// host closes if neither the socket nor another file object holds it);
    /// corresponds to Python's `file.close()`.
    ///
    /// The file is closed even if the flush fails, and the flush's error is
    /// returned; what was not flushed is lost. Closing twice does nothing.
    pub fn close(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.reader = None;
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        let result = writer.flush();
        // `into_parts` does not flush again, as dropping would.
        let (raw, _unflushed) = writer.into_parts();
        drop(raw);
        result
    }

    fn reader(&mut self) -> io::Result<&mut BufReader<RawReader>> {
        if self.closed {
            return Err(closed_file());
        }
        self.reader
            .as_mut()
            .ok_or_else(|| io::Error::new(ErrorKind::Unsupported, "File not open for reading"))
    }

    fn writer(&mut self) -> io::Result<&mut BufWriter<RawWriter>> {
        if self.closed {
            return Err(closed_file());
        }
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::new(ErrorKind::Unsupported, "File not open for writing"))
    }
}

/// The error of every operation on a closed [`SocketFile`].
fn closed_file() -> io::Error {
    io::Error::new(ErrorKind::InvalidInput, "I/O operation on closed file")
}

impl fmt::Debug for SocketFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SocketFile")
            .field("mode", &self.mode())
            .field("closed", &self.closed)
            .field(
                "timed_out",
                &self.reader.as_ref().is_some_and(|r| r.get_ref().timed_out),
            )
            .finish()
    }
}

/// Reads through the read buffer; `Ok(0)` is end of stream.
impl Read for SocketFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader()?.read(buf)
    }
}

/// Line and delimiter reading over the read buffer.
impl BufRead for SocketFile {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.reader()?.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        if let Some(reader) = self.reader.as_mut() {
            reader.consume(amount);
        }
    }
}

/// Writes into the write buffer, which goes to the socket when full or on
/// [`flush`](Write::flush). A failed write to the socket keeps the bytes
/// that did not go in the buffer.
impl Write for SocketFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_modes() {
        let rw = |read, write| Mode { read, write };
        assert_eq!(Mode::parse("rb").unwrap(), rw(true, false));
        assert_eq!(Mode::parse("br").unwrap(), rw(true, false));
        assert_eq!(Mode::parse("b").unwrap(), rw(true, false));
        assert_eq!(Mode::parse("wb").unwrap(), rw(false, true));
        assert_eq!(Mode::parse("rwb").unwrap(), rw(true, true));
        assert_eq!(Mode::parse("wrb").unwrap(), rw(true, true));
        assert_eq!(Mode::parse("rwb").unwrap().as_str(), "rwb");
        assert_eq!(Mode::parse("bw").unwrap().as_str(), "wb");
    }

    #[test]
    fn other_modes_are_invalid_input() {
        for mode in ["r", "w", "rw", "", "rb+", "ab", "rbt", "x"] {
            let err = Mode::parse(mode).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{mode:?}");
        }
        assert_eq!(
            Mode::parse("rb+").unwrap_err().to_string(),
            "invalid mode \"rb+\" (only r, w, b allowed)"
        );
        assert!(
            Mode::parse("r")
                .unwrap_err()
                .to_string()
                .starts_with("text mode \"r\" is not supported")
        );
    }
}

//! Files opened through the plugin's preopened directories, for
//! [`Socket::sendfile`](crate::Socket::sendfile).
//!
//! A plugin reaches files only through the directories its host preopened
//! for it (`sockshim run --dir HOST_DIR::GUEST_DIR`). [`File`] opens a file
//! in one of them by path, the way `std::fs::File::open` does, but keeps the
//! `wasi:filesystem` descriptor itself, so that the host can send the file
//! straight to a socket without the data passing through the plugin.

use std::cell::Cell;
use std::fmt;
use std::io::{self, ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasip2::filesystem::preopens;
use wasip2::filesystem::types::{
    Descriptor, DescriptorFlags, DescriptorType, OpenFlags, PathFlags,
};

use crate::error::from_fs;

/// The most bytes one [`Read::read`] asks the host for; a larger buffer is
/// filled by several reads (wasmtime-wasi allocates what it is asked for).
const MAX_READ: usize = 1 << 20;

/// A file opened read-only through the plugin's preopened directories, with
/// its own position for [`Read`] and [`Seek`].
///
/// Its purpose is [`Socket::sendfile`](crate::Socket::sendfile), which takes
/// the file's `wasi:filesystem` descriptor; reading and seeking work as on
/// `std::fs::File` (`pread` at the file's position, which then advances).
/// As with `std::fs::File`, [`Read`] and [`Seek`] are also implemented for
/// `&File`: the position is shared by every reference.
///
/// ```no_run
/// let file = sockshim::fs::File::open("/site/index.html")?;
/// let sock = sockshim::create_connection("127.0.0.1:8000", None)?;
/// let sent = sock.sendfile(&file, 0, None)?;
/// assert_eq!(sent, file.len()?);
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct File {
    descriptor: Descriptor,
    position: Cell<u64>,
}

impl File {
    /// Opens the file at `path` for reading; corresponds to Python's
    /// `open(path, "rb")` (and to `std::fs::File::open`).
    ///
    /// The path is resolved as wasi-libc resolves it for `std::fs`: an
    /// absolute path against the preopened directory whose name is its
    /// longest prefix (whole components only, so `/site` does not match
    /// `/sitemap`); a relative path against a preopen named `.`, or else
    /// against the root (`/`). The host then refuses paths that climb out
    /// of the preopened directory (`..`, absolute symlinks) with
    /// [`ErrorKind::PermissionDenied`]. A path under no preopened directory
    /// is [`ErrorKind::NotFound`], as it is for `std::fs`. Symbolic links
    /// within the directory are followed.
    ///
    /// Opening a directory succeeds (as `open(2)` does), but it cannot be
    /// read or sent. Opening a FIFO waits until a writer opens it.
    pub fn open(path: impl AsRef<Path>) -> io::Result<File> {
        let path = path.as_ref();
        let text = path
            .to_str()
            .ok_or_else(|| io::Error::new(ErrorKind::InvalidInput, "path is not valid UTF-8"))?;
        let preopens = preopens::get_directories();
        let (index, relative) = resolve(preopens.iter().map(|(_, name)| name.as_str()), text)
            .ok_or_else(|| {
                io::Error::new(
                    ErrorKind::NotFound,
                    format!("{text}: not under any preopened directory"),
                )
            })?;
        let (dir, _) = preopens
            .get(index)
            .ok_or_else(|| io::Error::new(ErrorKind::NotFound, "preopened directory vanished"))?;
        let descriptor = dir
            .open_at(
                PathFlags::SYMLINK_FOLLOW,
                &relative,
                OpenFlags::empty(),
                DescriptorFlags::READ,
            )
            .map_err(from_fs)?;
        Ok(File {
            descriptor,
            position: Cell::new(0),
        })
    }

    /// The file's metadata; corresponds to Python's `os.fstat(fd)`.
    pub fn metadata(&self) -> io::Result<Metadata> {
        let stat = self.descriptor.stat().map_err(from_fs)?;
        Ok(Metadata {
            len: stat.size,
            file_type: stat.type_,
            modified: stat.data_modification_timestamp.and_then(|t| {
                UNIX_EPOCH.checked_add(Duration::new(t.seconds, t.nanoseconds.min(999_999_999)))
            }),
        })
    }

    /// The file's size in bytes, from [`metadata`](File::metadata).
    pub fn len(&self) -> io::Result<u64> {
        self.metadata().map(|m| m.len)
    }

    /// Whether the file is empty, from [`metadata`](File::metadata).
    pub fn is_empty(&self) -> io::Result<bool> {
        self.len().map(|len| len == 0)
    }

    /// The position the next [`Read::read`] starts at; corresponds to
    /// Python's `file.tell()`. The same as `Seek::stream_position`, without
    /// needing `&mut`.
    pub fn position(&self) -> u64 {
        self.position.get()
    }

    /// Moves the position to `position` bytes from the start; corresponds to
    /// Python's `file.seek(position)`. A position past the end is allowed:
    /// reads there return end of file.
    pub fn set_position(&self, position: u64) {
        self.position.set(position);
    }

    /// The `wasi:filesystem` descriptor, for calls this type does not wrap.
    pub fn descriptor(&self) -> &Descriptor {
        &self.descriptor
    }

    /// `Read::read`, for both `File` and `&File`.
    fn read_at_position(&self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(MAX_READ);
        let position = self.position.get();
        let (data, _end) = self
            .descriptor
            .read(u64::try_from(want).unwrap_or(u64::MAX), position)
            .map_err(from_fs)?;
        let target = buf.get_mut(..data.len()).ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidData,
                "the host returned more bytes than requested",
            )
        })?;
        target.copy_from_slice(&data);
        let read = u64::try_from(data.len()).unwrap_or(u64::MAX);
        self.position.set(position.saturating_add(read));
        Ok(data.len())
    }

    /// `Seek::seek`, for both `File` and `&File`.
    fn seek_to(&self, to: SeekFrom) -> io::Result<u64> {
        let (base, delta) = match to {
            SeekFrom::Start(offset) => {
                self.position.set(offset);
                return Ok(offset);
            }
            SeekFrom::End(delta) => (self.len()?, delta),
            SeekFrom::Current(delta) => (self.position.get(), delta),
        };
        let position = base.checked_add_signed(delta).ok_or_else(|| {
            io::Error::new(
                ErrorKind::InvalidInput,
                "invalid seek to a negative or overflowing position",
            )
        })?;
        self.position.set(position);
        Ok(position)
    }
}

impl fmt::Debug for File {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("File")
            .field("descriptor", &self.descriptor.handle())
            .field("position", &self.position.get())
            .finish()
    }
}

/// Reads at the file's position (`pread`), which then advances.
impl Read for &File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_at_position(buf)
    }
}

/// As for `&File`.
impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_at_position(buf)
    }
}

/// Moves the file's position; `SeekFrom::End` asks the host for the size.
/// A position before the start is [`ErrorKind::InvalidInput`].
impl Seek for &File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.seek_to(pos)
    }
}

/// As for `&File`.
impl Seek for File {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.seek_to(pos)
    }
}

/// What [`File::metadata`] returns: the size, the type and the last
/// modification time of the file.
#[derive(Debug, Clone, Copy)]
pub struct Metadata {
    len: u64,
    file_type: DescriptorType,
    modified: Option<SystemTime>,
}

impl Metadata {
    /// The size in bytes (for a regular file).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the size is zero.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        matches!(self.file_type, DescriptorType::RegularFile)
    }

    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.file_type, DescriptorType::Directory)
    }

    /// The file's type as `wasi:filesystem` reports it (regular file,
    /// directory, FIFO, character device, …).
    pub fn file_type(&self) -> DescriptorType {
        self.file_type
    }

    /// When the file's data was last modified, as `std::fs::Metadata`'s
    /// `modified` says it; fails with [`ErrorKind::Unsupported`] when the
    /// host's filesystem does not report it.
    pub fn modified(&self) -> io::Result<SystemTime> {
        self.modified.ok_or_else(|| {
            io::Error::new(
                ErrorKind::Unsupported,
                "the filesystem reports no modification time",
            )
        })
    }
}

/// Which of the preopened directories named `names` the path `path` is in,
/// and the path relative to it: the index of the directory in `names` and
/// the remaining path (`.` for the directory itself). `None` when no
/// directory matches.
///
/// As wasi-libc does: a preopen's name loses any `./` prefix and trailing
/// slashes (`.` becomes the empty name, which matches every relative
/// path); a relative path that no such preopen matches is taken relative to
/// the root; a prefix matches only whole components, and the longest match
/// wins.
fn resolve<'a>(names: impl Iterator<Item = &'a str>, path: &str) -> Option<(usize, String)> {
    let names: Vec<&str> = names.map(normalize_preopen).collect();
    let find = |path: &str| {
        names
            .iter()
            .enumerate()
            .filter(|(_, name)| prefix_matches(name, path))
            .max_by_key(|(_, name)| name.len())
            .map(|(index, name)| (index, remainder(name, path)))
    };
    if path.starts_with('/') {
        return find(path);
    }
    find(path).or_else(|| find(&format!("/{path}")))
}

/// A preopen's name as a prefix: no leading `./`, no trailing slashes
/// (except for the root itself), `.` as the empty name.
fn normalize_preopen(name: &str) -> &str {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    if name == "." {
        return "";
    }
    let trimmed = name.trim_end_matches('/');
    if trimmed.is_empty() && name.starts_with('/') {
        "/"
    } else {
        trimmed
    }
}

/// Whether the preopen named `prefix` (normalized) contains `path`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.is_empty() {
        // "." matches every relative path.
        return !path.starts_with('/');
    }
    if prefix == "/" {
        return path.starts_with('/');
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// `path` relative to the preopen `prefix` that matches it.
fn remainder(prefix: &str, path: &str) -> String {
    let rest = path.get(prefix.len()..).unwrap_or_default();
    let rest = rest.trim_start_matches('/');
    if rest.is_empty() {
        ".".to_string()
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(names: &[&str], path: &str) -> Option<(usize, String)> {
        resolve(names.iter().copied(), path)
    }

    #[test]
    fn longest_whole_component_prefix_wins() {
        let names = ["/", "/site", "/site/assets"];
        assert_eq!(resolved(&names, "/site/a.html"), Some((1, "a.html".into())));
        assert_eq!(
            resolved(&names, "/site/assets/x.png"),
            Some((2, "x.png".into()))
        );
        assert_eq!(
            resolved(&names, "/sitemap.xml"),
            Some((0, "sitemap.xml".into()))
        );
        assert_eq!(resolved(&names, "/site"), Some((1, ".".into())));
        assert_eq!(resolved(&names, "/site/"), Some((1, ".".into())));
    }

    #[test]
    fn without_a_root_preopen_other_paths_are_not_found() {
        let names = ["/site"];
        assert_eq!(resolved(&names, "/etc/passwd"), None);
        assert_eq!(resolved(&names, "/sitemap"), None);
        assert_eq!(resolved(&names, "a.html"), None);
    }

    #[test]
    fn relative_paths_use_dot_then_root() {
        assert_eq!(
            resolved(&["/", "."], "dir/a.txt"),
            Some((1, "dir/a.txt".into()))
        );
        assert_eq!(resolved(&["./"], "a.txt"), Some((0, "a.txt".into())));
        assert_eq!(resolved(&["/"], "a.txt"), Some((0, "a.txt".into())));
        assert_eq!(resolved(&["."], "/abs"), None);
    }

    #[test]
    fn preopen_names_are_normalized() {
        assert_eq!(normalize_preopen("/site/"), "/site");
        assert_eq!(normalize_preopen("./data"), "data");
        assert_eq!(normalize_preopen("."), "");
        assert_eq!(normalize_preopen("/"), "/");
        assert_eq!(normalize_preopen("//"), "/");
        // A relative preopen name other than ".": relative paths under it.
        assert_eq!(resolved(&["data"], "data/x"), Some((0, "x".into())));
        assert_eq!(resolved(&["./data/"], "data/x"), Some((0, "x".into())));
    }

    #[test]
    fn climbing_out_is_left_to_the_host() {
        // The host refuses `..` that leaves the directory; resolution keeps
        // it as it is rather than guessing.
        assert_eq!(
            resolved(&["/site"], "/site/../etc/passwd"),
            Some((0, "../etc/passwd".into()))
        );
    }
}

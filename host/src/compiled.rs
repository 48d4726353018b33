//! Compiled plugins kept on disk, so that running a plugin again skips
//! Cranelift: `sockshim run` compiles a plugin once per build of the plugin
//! and of the host, as the `wasmtime` command does with its cache.
//!
//! An entry is the plugin compiled by [`Component::serialize`], named after
//! the SHA-256 of the plugin's bytes and the engine's
//! [`precompile_compatibility_hash`](Engine::precompile_compatibility_hash)
//! (a cryptographic hash: two plugins crafted to collide cannot share an
//! entry, so one cannot run as the other),
//! written to a temporary name and renamed into place. Loading an entry runs
//! the machine code in it, so the directory must be writable by its owner
//! alone, and that owner must be the user running the host, and no one
//! else may be able to replace it: [`open`] refuses any other directory,
//! and one below a directory that another user could write to (unless
//! that directory is sticky, as `/tmp` is) or that another user (not root)
//! owns. An entry that does not load (truncated, from another
//! wasmtime) is compiled again and replaced. The directory keeps the
//! [`MAX_ENTRIES`] entries used last.
//!
//! [`open`]: CompileCache::open

use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use wasmtime::Engine;
use wasmtime::component::Component;

/// How many compiled plugins a cache directory keeps.
pub const MAX_ENTRIES: usize = 64;

/// The file name ending of an entry.
const ENTRY: &str = "cwasm";

/// A directory of compiled plugins (see the module's documentation).
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

impl CompileCache {
    /// The user's cache directory for sockshim: `$XDG_CACHE_HOME/sockshim`,
    /// else `$HOME/.cache/sockshim`; `None` when neither variable is set.
    pub fn default_dir() -> Option<PathBuf> {
        let nonempty = |name| std::env::var_os(name).filter(|v| !v.is_empty());
        nonempty("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| nonempty("HOME").map(|home| Path::new(&home).join(".cache")))
            .map(|cache| cache.join("sockshim"))
    }

    /// Opens `dir` as a cache, creating it (and its parents) readable and
    /// writable by this user alone if it does not exist. Fails when it is
    /// not a directory, not owned by this user, or writable by its group or
    /// by others.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<CompileCache> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let meta = fs::metadata(&dir)?;
        let refuse = |why: &str| {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} {why}", dir.display()),
            ))
        };
        if !meta.is_dir() {
            return refuse("is not a directory");
        }
        if meta.uid() != current_uid()? {
            return refuse("belongs to another user");
        }
        if meta.permissions().mode() & 0o022 != 0 {
            return refuse("is writable by others than its owner");
        }
        check_parents(&dir)?;
        Ok(CompileCache { dir })
    }

    /// The component compiled from `bytes` for `engine`: loaded from the
    /// entry an earlier call made for a compatible engine, or compiled and
    /// stored. Failing to store is not an error: the component is returned
    /// all the same.
    pub fn component(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let entry = self.entry(engine, bytes);
        // A missing entry fails to load like a damaged one.
        // SAFETY: `open` checked that only this user can write to the
        // directory, and entries are written only by `store`, from
        // `Component::serialize`; wasmtime checks that the entry was made by
        // a compatible engine and refuses it otherwise.
        if let Ok(component) = unsafe { Component::deserialize_file(engine, &entry) } {
            // Mark it used, for `evict`.
            let _ = fs::File::open(&entry).and_then(|f| f.set_modified(SystemTime::now()));
            return Ok(component);
        }
        let component = Component::new(engine, bytes)?;
        if let Ok(serialized) = component.serialize()
            && self.store(&entry, &serialized).is_ok()
        {
            self.evict();
        }
        Ok(component)
    }

    /// Where the entry for `bytes` compiled by `engine` lives.
    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        self.dir
            .join(format!("{}.{ENTRY}", entry_key(engine, bytes)))
    }

    /// Writes `serialized` as `entry`, readable by this user alone, through
    /// a temporary file, so no reader sees half an entry.
    fn store(&self, entry: &Path, serialized: &[u8]) -> io::Result<()> {
        let tmp = entry.with_extension(format!("tmp{}", std::process::id()));
        let written = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| io::Write::write_all(&mut f, serialized))
            .and_then(|()| fs::rename(&tmp, entry));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Removes the entries used longest ago beyond [`MAX_ENTRIES`].
    fn evict(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let mut entries: Vec<(SystemTime, PathBuf)> = dir
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == ENTRY))
            .filter_map(|p| Some((fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        if entries.len() <= MAX_ENTRIES {
            return;
        }
        entries.sort();
        let excess = entries.len() - MAX_ENTRIES;
        for (_, path) in entries.into_iter().take(excess) {
            let _ = fs::remove_file(path);
        }
    }
}

/// The SHA-256, in hex, of `bytes` (length first, so no two inputs run
/// together) and of what makes `engine`'s compiled code differ.
fn entry_key(engine: &Engine, bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    /// Feeds what `Hash` writes into the digest.
    struct Feed(Sha256);
    impl Hasher for Feed {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is the result
        }
    }
    let mut feed = Feed(Sha256::new());
    feed.0.update((bytes.len() as u64).to_le_bytes());
    feed.0.update(bytes);
    engine.precompile_compatibility_hash().hash(&mut feed);
    feed.0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Refuses a cache directory that someone other than this user (or root)
/// could replace: one of its ancestors is writable by its group or by
/// others without being sticky, or belongs to another user than this one
/// or root.
fn check_parents(dir: &Path) -> io::Result<()> {
    let dir = dir.canonicalize()?;
    let uid = current_uid()?;
    for parent in dir.ancestors().skip(1) {
        let meta = fs::metadata(parent)?;
        let mode = meta.permissions().mode();
        let refuse = |why: &str| {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is below {}, which {why}",
                    dir.display(),
                    parent.display()
                ),
            ))
        };
        if meta.uid() != uid && meta.uid() != 0 {
            return refuse("belongs to another user");
        }
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return refuse("others than its owner can write to");
        }
    }
    Ok(())
}

/// `bytes` compiled for `engine`, through `cache` when there is one.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    cache: Option<&CompileCache>,
) -> wasmtime::Result<Component> {
    match cache {
        Some(cache) => cache.component(engine, bytes),
        None => Component::new(engine, bytes),
    }
}

/// The effective user id of this process: the owner of `/proc/self`,
/// which needs no `unsafe`.
fn current_uid() -> io::Result<u32> {
    Ok(fs::metadata("/proc/self")?.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: the preamble alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sockshim-compiled-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn entries(dir: &Path) -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    }

    #[test]
    fn a_compile_is_stored_once_and_loaded_after() {
        let dir = scratch("once");
        let cache = CompileCache::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let engine = Engine::default();
        cache.component(&engine, EMPTY_COMPONENT).unwrap();
        let stored = entries(&dir);
        assert_eq!(stored.len(), 1, "{stored:?}");
        let meta = fs::metadata(&stored[0]).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let written = meta.modified().unwrap();

        // Loaded, not compiled and stored again (which would rename a new
        // file into place): the same file, marked used.
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.component(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(entries(&dir), stored);
        let again = fs::metadata(&stored[0]).unwrap();
        assert_eq!(again.ino(), meta.ino());
        assert!(again.modified().unwrap() > written);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_entry_is_compiled_again_and_replaced() {
        let dir = scratch("damaged");
        let cache = CompileCache::open(&dir).unwrap();
        let engine = Engine::default();
        cache.component(&engine, EMPTY_COMPONENT).unwrap();
        let entry = entries(&dir).remove(0);
        let good = fs::read(&entry).unwrap();
        fs::write(&entry, b"not a compiled component").unwrap();
        cache.component(&engine, EMPTY_COMPONENT).unwrap();
        assert_eq!(fs::read(&entry).unwrap(), good);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let dir = scratch("shared");
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = CompileCache::open(&dir).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("writable by others"), "{err}");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(CompileCache::open(&dir).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_oldest_entries_go_beyond_the_limit() {
        let dir = scratch("evict");
        let cache = CompileCache::open(&dir).unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        for i in 0..MAX_ENTRIES {
            let path = dir.join(format!("{i:064x}.{ENTRY}"));
            fs::write(&path, b"x").unwrap();
            let when = old + std::time::Duration::from_secs(i as u64);
            fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(when)
                .unwrap();
        }
        // One more, used now: the oldest goes.
        cache
            .component(&Engine::default(), EMPTY_COMPONENT)
            .unwrap();
        let left = entries(&dir);
        assert_eq!(left.len(), MAX_ENTRIES);
        assert!(!left.contains(&dir.join(format!("{:064x}.{ENTRY}", 0))));
        assert!(left.contains(&dir.join(format!("{:064x}.{ENTRY}", 1))));
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Issue 26, defect 8: the key was a 64-bit SipHash with fixed keys,
    /// which two crafted plugins can share (one would then run as the
    /// other). It is a SHA-256 now: 256 bits, and the same input twice is
    /// the same key.
    #[test]
    fn the_key_is_a_sha256_of_the_plugin_and_the_engine() {
        let engine = Engine::default();
        let key = entry_key(&engine, EMPTY_COMPONENT);
        assert_eq!(key.len(), 64, "{key}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(key, entry_key(&engine, EMPTY_COMPONENT));
        assert_ne!(key, entry_key(&engine, b"\0asm\x0d\0\x01\0\0"));
    }

    /// Issue 26, defect 8: only the cache directory itself was checked, so
    /// one below a directory anyone can write (and so rename or replace)
    /// was accepted.
    #[test]
    fn a_directory_below_one_others_can_write_is_refused() {
        let shared = scratch("shared-parent");
        fs::create_dir_all(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).unwrap();
        let err = CompileCache::open(shared.join("cache")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("can write to"), "{err}");
        // Sticky, as /tmp is: each user's entries are their own.
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(CompileCache::open(shared.join("cache")).is_ok());
        fs::remove_dir_all(&shared).unwrap();
    }
}

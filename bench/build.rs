//! Compiles the benchmark's wasm32-wasip2 guests (bench/guests/*) with a
//! nested `cargo build --release`, once per build of the benchmark, in a
//! target directory of its own (target/bench-wasm) so that it does not wait
//! for the outer build's lock; as tests/artifacts/build.rs does for the tests.
//!
//! The sockshim guest gets its `sendfile` feature when the guest crate has
//! `sockshim::fs` and `Socket::sendfile`; `SOCKSHIM_SENDFILE` says whether it
//! did.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (package, file the build produces, constant naming its path)
const GUESTS: &[(&str, &str, &str)] = &[
    ("sockshim-bench-guest-p2", "bench-p2.wasm", "GUEST_P2"),
    ("sockshim-bench-guest-p3", "bench_p3.wasm", "GUEST_P3"),
    (
        "sockshim-bench-guest-sockshim",
        "bench-sockshim.wasm",
        "GUEST_SOCKSHIM",
    ),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.join("..").canonicalize().unwrap();
    for dir in ["bench/guests", "guest", "wit", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let sendfile = guest_has_sendfile(&workspace);

    let target_dir = workspace.join("target").join("bench-wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", &target_dir)
        // What the outer build set for itself must not leak into the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    if sendfile {
        cmd.args(["--features", "sockshim-bench-guest-sockshim/sendfile"]);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the benchmark's wasm guests");
    if !status.success() {
        panic!(
            "building the benchmark's wasm32-wasip2 guests failed (is the target \
             installed? `rustup target add wasm32-wasip2`)"
        );
    }

    let out_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut consts = String::new();
    for (package, file, name) in GUESTS {
        let path = out_dir.join(file);
        assert!(path.is_file(), "{} was not built", path.display());
        consts.push_str(&format!(
            "/// The `{package}` guest, a wasm32-wasip2 component.\n\
             pub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    consts.push_str(&format!(
        "/// Whether the sockshim guest was built with `Socket::sendfile`.\n\
         pub const SOCKSHIM_SENDFILE: bool = {sendfile};\n"
    ));
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("guests.rs");
    std::fs::write(dest, consts).unwrap();
}

/// Whether the guest crate already has `sockshim::fs::File` and
/// `Socket::sendfile` (they are being added beside this benchmark).
fn guest_has_sendfile(workspace: &Path) -> bool {
    let src = workspace.join("guest").join("src");
    let read = |file: &str| std::fs::read_to_string(src.join(file)).unwrap_or_default();
    let lib = read("lib.rs");
    let has_fs = lib.contains("pub mod fs") || lib.contains("pub use fs");
    has_fs && read("socket.rs").contains("pub fn sendfile")
}

//! Compiles the benchmark's wasm32-wasip2 guests (bench/guests/*) with a
//! nested `cargo build --release`, once per build of the benchmark, in a
//! target directory of its own (target/bench-wasm) so that it does not wait
//! for the outer build's lock; as tests/artifacts/build.rs does for the tests
//! (both through scripts/nested_wasm_build.rs).
//!
//! The sockshim guest gets its `sendfile` feature when the guest crate has
//! `sockshim::fs` and `Socket::sendfile`; `SOCKSHIM_SENDFILE` says whether it
//! did.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("../scripts/nested_wasm_build.rs");

/// (package, file the build produces, constant naming its path)
const GUESTS: &[(&str, &str, &str)] = &[
    ("sockshim-bench-guest-p2", "bench-p2.wasm", "GUEST_P2"),
    ("sockshim-bench-guest-p3", "bench_p3.wasm", "GUEST_P3"),
    (
        "sockshim-bench-guest-sockshim",
        "bench-sockshim.wasm",
        "GUEST_SOCKSHIM",
    ),
    // The example plugin the static workload serves files with.
    ("file-server", "file-server.wasm", "FILE_SERVER"),
    // The soak's echo server (`--soak`).
    ("echo-server", "echo-server.wasm", "ECHO_SERVER"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.join("..").canonicalize().unwrap();
    for dir in [
        "bench/guests",
        "examples/file-server",
        "examples/echo-server",
        "guest",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }
    let sendfile = guest_has_sendfile(&workspace);

    let target_dir = workspace.join("target").join("bench-wasm");
    let packages: Vec<&str> = GUESTS.iter().map(|(package, _, _)| *package).collect();
    let features: &[&str] = if sendfile {
        &["sockshim-bench-guest-sockshim/sendfile"]
    } else {
        &[]
    };
    let out_dir = build_wasm_guests(
        &workspace,
        &target_dir,
        &packages,
        features,
        "the benchmark's wasm32-wasip2 guests",
    );
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

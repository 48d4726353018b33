//! Compiles the wasm32-wasip2 guests the tests run (the test programs and the
//! examples) with a nested `cargo build`, once per test build, in a target
//! directory of its own so that it does not wait for the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

include!("../../scripts/nested_wasm_build.rs");

/// Packages built, and the binaries each provides.
const PACKAGES: &[(&str, &[&str])] = &[
    ("sockshim-test-programs", &["sockshim-test-guest"]),
    ("echo-server", &["echo-server"]),
    ("http-get", &["http-get"]),
    ("file-server", &["file-server"]),
    ("tcp-proxy", &["tcp-proxy"]),
    ("udp-echo", &["udp-echo"]),
    ("dns-query", &["dns-query"]),
    ("echo-check", &["echo-check"]),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let workspace = manifest_dir.join("../..").canonicalize().unwrap();
    for dir in [
        "guest",
        "examples",
        "tests/programs",
        "tests/src/data.rs",
        "wit",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", workspace.join(dir).display());
    }

    let target_dir = workspace.join("target").join("wasm-artifacts");
    let packages: Vec<&str> = PACKAGES.iter().map(|(package, _)| *package).collect();
    let out_dir = build_wasm_guests(
        &workspace,
        &target_dir,
        &packages,
        &[],
        "the wasm32-wasip2 guests",
    );
    let mut consts = String::new();
    for (_, bins) in PACKAGES {
        for bin in *bins {
            let path = out_dir.join(format!("{bin}.wasm"));
            assert!(path.is_file(), "{} was not built", path.display());
            let name = bin.to_uppercase().replace('-', "_");
            consts.push_str(&format!(
                "/// `{bin}.wasm`, built for wasm32-wasip2.\npub const {name}: &str = {:?};\n",
                path.display().to_string()
            ));
        }
    }
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("artifacts.rs");
    std::fs::write(dest, consts).unwrap();
}

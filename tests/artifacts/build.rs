//! Compiles the wasm32-wasip2 guests the tests run (the test programs and the
//! examples) with a nested `cargo build`, once per test build, in a target
//! directory of its own so that it does not wait for the outer build's lock.

use std::path::PathBuf;
use std::process::Command;

/// Packages built, and the binaries each provides.
const PACKAGES: &[(&str, &[&str])] = &[
    ("sockshim-test-programs", &["sockshim-test-guest"]),
    ("echo-server", &["echo-server"]),
    ("http-get", &["http-get"]),
    ("file-server", &["file-server"]),
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
    for (package, _) in PACKAGES {
        cmd.args(["-p", package]);
    }
    let status = cmd
        .status()
        .expect("cannot run cargo to build the wasm guests");
    if !status.success() {
        panic!(
            "building the wasm32-wasip2 guests failed (is the target installed? \
             `rustup target add wasm32-wasip2`)"
        );
    }

    let out_dir = target_dir.join("wasm32-wasip2").join("release");
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

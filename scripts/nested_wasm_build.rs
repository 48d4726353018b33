// The nested build of wasm32-wasip2 guests, shared by bench/build.rs and
// tests/artifacts/build.rs through `include!` (a build script has no other
// way to share code without a crate of its own). Needs `std::path::{Path,
// PathBuf}` and `std::process::Command` in scope.

/// Builds `packages` (with `features`) for wasm32-wasip2 with a nested
/// `cargo build --release` in `target_dir`, a target directory of its own so
/// that it does not wait for the outer build's lock, and returns the
/// directory the `.wasm` files are in. Panics, naming `what`, if the build
/// fails.
fn build_wasm_guests(
    workspace: &Path,
    target_dir: &Path,
    packages: &[&str],
    features: &[&str],
    what: &str,
) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace)
        .args(["build", "--release", "--target", "wasm32-wasip2"])
        .env("CARGO_TARGET_DIR", target_dir)
        // What the outer build set for itself must not leak into the guests.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER");
    for package in packages {
        cmd.args(["-p", package]);
    }
    for feature in features {
        cmd.args(["--features", feature]);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    if !status.success() {
        panic!(
            "building {what} failed (is the target installed? `rustup target add wasm32-wasip2`)"
        );
    }
    target_dir.join("wasm32-wasip2").join("release")
}

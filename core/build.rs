//! Builds the bundled WebAssembly plugins (`../plugins/*`) for `wasm32-wasip2` and puts
//! the components in `$OUT_DIR/plugins/<name>.wasm`, where the host embeds them with
//! `include_bytes!(concat!(env!("OUT_DIR"), "/plugins/<name>.wasm"))`.
//!
//! The plugins are members of this workspace, so the build runs a nested
//! `cargo build --release --target wasm32-wasip2` of the same workspace with its own
//! target directory under `$OUT_DIR`. It installs the target with rustup when the
//! toolchain lacks it.

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// A bundled plugin.
struct Plugin {
    /// Cargo package name.
    package: &'static str,
    /// Crate directory, relative to the workspace root.
    dir: &'static str,
    /// File name under `$OUT_DIR/plugins/`, without `.wasm`.
    name: &'static str,
}

const PLUGINS: &[Plugin] = &[
    Plugin {
        package: "crochet-plugin-rate-limit",
        dir: "plugins/rate-limit",
        name: "rate_limit",
    },
    Plugin {
        package: "crochet-plugin-request-validation",
        dir: "plugins/request-validation",
        name: "request_validation",
    },
    Plugin {
        package: "crochet-plugin-scoring",
        dir: "plugins/scoring",
        name: "scoring",
    },
    Plugin {
        package: "crochet-plugin-chat-adapter",
        dir: "plugins/chat-adapter",
        name: "chat_adapter",
    },
    Plugin {
        package: "crochet-plugin-template",
        dir: "plugins/template",
        name: "template",
    },
    Plugin {
        package: "crochet-plugin-hostile",
        dir: "plugins/testing/hostile",
        name: "hostile",
    },
    Plugin {
        package: "crochet-plugin-echo",
        dir: "plugins/testing/echo",
        name: "echo",
    },
    Plugin {
        package: "crochet-plugin-evil-import",
        dir: "plugins/testing/evil-import",
        name: "evil_import",
    },
];

/// The first 8 bytes of a WebAssembly component (magic, version 0x0d, layer 1).
const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("core/ lives in the workspace root")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));

    println!("cargo:rerun-if-changed=build.rs");
    // `migrations`: `sqlx::migrate!` embeds the folder, and a new file must rebuild it.
    for path in ["wit", "migrations", "Cargo.toml", "Cargo.lock"] {
        rerun_if_changed(&workspace.join(path));
    }
    for plugin in PLUGINS {
        let dir = workspace.join(plugin.dir);
        rerun_if_changed(&dir.join("Cargo.toml"));
        rerun_if_changed(&dir.join("src"));
        if dir.join("wit").exists() {
            rerun_if_changed(&dir.join("wit"));
        }
    }

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    ensure_target(&rustc);

    let target_dir = out_dir.join("wasm-target");
    build(&workspace, &target_dir);

    let plugins_dir = out_dir.join("plugins");
    fs::create_dir_all(&plugins_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", plugins_dir.display()));
    for plugin in PLUGINS {
        let built = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{}.wasm", plugin.package.replace('-', "_")));
        let bytes = fs::read(&built).unwrap_or_else(|e| {
            panic!("the nested build did not produce {}: {e}", built.display())
        });
        assert!(
            bytes.starts_with(COMPONENT_HEADER),
            "{} is not a WebAssembly component (header {:02x?})",
            built.display(),
            &bytes[..bytes.len().min(8)]
        );
        let dest = plugins_dir.join(format!("{}.wasm", plugin.name));
        // Rewrite only on change, so that the host's `include_bytes!` stays fresh.
        if fs::read(&dest).ok().as_deref() != Some(&bytes[..]) {
            fs::write(&dest, &bytes)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", dest.display()));
        }
    }
}

fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Installs `wasm32-wasip2` for the toolchain of `rustc` unless its standard library is
/// already there.
fn ensure_target(rustc: &OsStr) {
    let libdir = || -> Option<PathBuf> {
        let output = Command::new(rustc)
            .args(["--print", "target-libdir", "--target", TARGET])
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        (output.status.success() && dir.is_dir()).then_some(dir)
    };
    if libdir().is_some() {
        return;
    }

    // The toolchain that runs this build: rustup's proxies name it in RUSTUP_TOOLCHAIN;
    // otherwise a rustup sysroot is `<rustup home>/toolchains/<name>`.
    let toolchain = env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| {
            let output = Command::new(rustc)
                .args(["--print", "sysroot"])
                .output()
                .ok()?;
            let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            let parent = sysroot.parent()?;
            (parent.file_name()? == "toolchains")
                .then(|| sysroot.file_name()?.to_str().map(str::to_owned))
                .flatten()
        });

    let mut command = Command::new("rustup");
    command.args(["target", "add", TARGET]);
    if let Some(toolchain) = &toolchain {
        command.args(["--toolchain", toolchain]);
    }
    let shown = format!(
        "rustup target add {TARGET}{}",
        toolchain
            .as_deref()
            .map(|t| format!(" --toolchain {t}"))
            .unwrap_or_default()
    );
    match command.output() {
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "the bundled plugins need the `{TARGET}` target, which {} lacks, and `rustup` \
             is not on PATH to install it: install rustup (https://rustup.rs) or the target's \
             standard library for this toolchain",
            rustc.to_string_lossy()
        ),
        Err(e) => panic!("cannot run `{shown}`: {e}"),
        Ok(output) if !output.status.success() => panic!(
            "`{shown}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ),
        Ok(_) => {}
    }
    if libdir().is_none() {
        panic!(
            "`{shown}` succeeded but {} still has no `{TARGET}` standard library",
            rustc.to_string_lossy()
        );
    }
}

/// Whether an inherited variable would leak this build's settings into the nested one:
/// its target, target directory, flags, profile, features and cfgs, and clippy's wrapper.
fn leaks_into_nested_build(key: &OsStr) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    const EXACT: &[&str] = &[
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_BUILD_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
        "RUSTC_LINKER",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "OUT_DIR",
        "TARGET",
        "HOST",
        "NUM_JOBS",
        "OPT_LEVEL",
        "DEBUG",
        "PROFILE",
    ];
    const PREFIXES: &[&str] = &[
        "CARGO_PROFILE_",
        "CARGO_FEATURE_",
        "CARGO_CFG_",
        "CARGO_MANIFEST_",
        "CARGO_PKG_",
        "DEP_",
        "__CARGO",
    ];
    EXACT.contains(&key) || PREFIXES.iter().any(|p| key.starts_with(p))
}

/// Runs the nested `cargo build` of every plugin.
fn build(workspace: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    command
        .current_dir(workspace)
        .args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    for plugin in PLUGINS {
        command.args(["-p", plugin.package]);
    }
    for (key, _) in env::vars_os() {
        if leaks_into_nested_build(&key) {
            command.env_remove(&key);
        }
    }
    command
        // Intermediate files too, even if a cargo config shares a build-dir.
        .env("CARGO_BUILD_BUILD_DIR", target_dir)
        // Small components: no debug info (names stay, for backtraces).
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo")
        // A 64 KiB shadow stack instead of Rust's 1 MiB default: every instance starts
        // with that much less linear memory, which the pool resets after each call.
        .env("CARGO_ENCODED_RUSTFLAGS", "-Clink-arg=-zstack-size=65536");

    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    if !output.status.success() {
        panic!(
            "building the WebAssembly plugins failed ({}): {:?}\n{}",
            output.status,
            command,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

//! `crochet plugin new`: writes a standalone plugin crate for one world, which builds
//! with `cargo build --release --target wasm32-wasip2` in any folder. The files are the
//! templates in `scaffold/`, with the crate's name and the dependency versions the
//! host's own plugins use filled in, and the WIT contract copied from `wit/`.

use std::fmt;
use std::path::{Path, PathBuf};

/// The WIT contract the generated crate builds against.
const WIT: &str = include_str!("../../../wit/crochet-plugin.wit");
const CARGO_TOML: &str = include_str!("scaffold/Cargo.toml.tmpl");
const CARGO_CONFIG: &str = include_str!("scaffold/cargo-config.toml.tmpl");
const GITIGNORE: &str = include_str!("scaffold/gitignore.tmpl");
const README: &str = include_str!("scaffold/README.md.tmpl");
const PANIC_HOOK: &str = include_str!("scaffold/panic_hook.rs.tmpl");
const POLICY_RS: &str = include_str!("scaffold/policy.rs.tmpl");
const SCORER_RS: &str = include_str!("scaffold/scorer.rs.tmpl");
const ADAPTER_RS: &str = include_str!("scaffold/seller-adapter.rs.tmpl");

/// The exact versions of the guest-side dependencies, those of this repository's
/// `Cargo.lock` (a unit test keeps them equal).
pub const SERDE_VERSION: &str = "1.0.229";
/// See [`SERDE_VERSION`].
pub const SERDE_JSON_VERSION: &str = "1.0.154";
/// See [`SERDE_VERSION`].
pub const WIT_BINDGEN_VERSION: &str = "0.61.1";

/// A world of `wit/crochet-plugin.wit`: what a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `check(call-context) -> decision`.
    Policy,
    /// `score(agent-stats) -> score-result`.
    Scorer,
    /// `adapt-request`, `adapt-response`.
    SellerAdapter,
}

impl World {
    /// Every world, in the order a component is tried against them.
    pub const ALL: [World; 3] = [World::Policy, World::Scorer, World::SellerAdapter];

    /// The world's name in the WIT file.
    pub fn name(self) -> &'static str {
        match self {
            World::Policy => "policy",
            World::Scorer => "scorer",
            World::SellerAdapter => "seller-adapter",
        }
    }

    /// Parses a world's WIT name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a crate cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a valid crate name.
    #[error(
        "`{0}` is not a valid crate name: use 1-64 ASCII letters, digits, `-` or `_`, \
         starting with a letter"
    )]
    InvalidName(String),
    /// The destination exists and is not an empty folder.
    #[error("{} already exists and is not an empty folder", .0.display())]
    Exists(PathBuf),
    /// Writing failed.
    #[error("cannot write {}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The failure.
        error: std::io::Error,
    },
}

/// Names cargo would refuse or that would clash with the crates a plugin uses.
const RESERVED: &[&str] = &[
    "test",
    "core",
    "std",
    "alloc",
    "proc_macro",
    "proc-macro",
    "self",
    "super",
    "crate",
    "serde",
    "serde_json",
    "wit-bindgen",
    "wit_bindgen",
];

/// Checks a crate name: ASCII letters, digits, `-` and `_`, starting with a letter, at
/// most 64 characters, not a reserved name.
pub fn validate_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !RESERVED.contains(&name.to_ascii_lowercase().as_str());
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::InvalidName(name.to_owned()))
    }
}

/// The files of a new crate named `name` for `world`: relative path and content.
pub fn files(name: &str, world: World) -> Result<Vec<(&'static str, String)>, ScaffoldError> {
    validate_name(name)?;
    let krate = name.replace('-', "_");
    let wasm = format!("target/wasm32-wasip2/release/{krate}.wasm");
    let load = match world {
        World::Policy => format!(
            "In the host's `crochet.toml` (policies run in the order listed; listing one \
             replaces the default chain):\n\n```toml\n[[plugins.policy]]\nname = \"{name}\"\n\
             source = \"/path/to/{wasm}\"\nfailure = \"closed\"   # or \"open\"\n\
             config = {{ message = \"blocked\" }}\n```\n\nthen `crochet serve` (or reload \
             the plugins) logs `plugin loaded` with its name."
        ),
        World::Scorer => format!(
            "In the host's `crochet.toml`:\n\n```toml\n[plugins]\nscorer = \
             \"/path/to/{wasm}\"\n```\n\nthen `crochet serve` scores every agent with it."
        ),
        World::SellerAdapter => format!(
            "A seller uploads it for one of their listings (`PUT \
             /api/v1/listings/{{id}}/adapter` with the component and its configuration); \
             the host checks it as `crochet plugin check {wasm} --world seller-adapter` \
             does."
        ),
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{crate}}", &krate)
            .replace("{{world}}", world.name())
            .replace("{{serde}}", SERDE_VERSION)
            .replace("{{serde_json}}", SERDE_JSON_VERSION)
            .replace("{{wit_bindgen}}", WIT_BINDGEN_VERSION)
            .replace("{{panic_hook}}", PANIC_HOOK)
            .replace("{{load}}", &load)
    };
    let lib = match world {
        World::Policy => POLICY_RS,
        World::Scorer => SCORER_RS,
        World::SellerAdapter => ADAPTER_RS,
    };
    Ok(vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", GITIGNORE.to_owned()),
        ("README.md", fill(README)),
        ("src/lib.rs", fill(lib)),
        ("wit/crochet-plugin.wit", WIT.to_owned()),
    ])
}

/// Writes a new crate for `world` into `parent/name` (created; refused when it exists
/// and is not empty) and returns its folder.
pub fn create(parent: &Path, name: &str, world: World) -> Result<PathBuf, ScaffoldError> {
    let files = files(name, world)?;
    let dir = parent.join(name);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| ScaffoldError::Io { path, error }
    };
    if dir.exists() {
        let empty = dir.is_dir() && std::fs::read_dir(&dir).map_err(io(&dir))?.next().is_none();
        if !empty {
            return Err(ScaffoldError::Exists(dir));
        }
    }
    for (relative, content) in files {
        let path = dir.join(relative);
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(io(folder))?;
        }
        std::fs::write(&path, content).map_err(io(&path))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        for good in ["my-plugin", "a", "rate_limit2", "X-y"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "-x",
            "a b",
            "a/b",
            "../x",
            "é",
            "test",
            "serde",
            &"a".repeat(65),
        ] {
            assert!(
                matches!(validate_name(bad), Err(ScaffoldError::InvalidName(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_world_gets_a_complete_crate() {
        let tmp = tempfile::tempdir().unwrap();
        for world in World::ALL {
            let name = format!("my-{}", world.name());
            let dir = create(tmp.path(), &name, world).unwrap();
            let read = |p: &str| std::fs::read_to_string(dir.join(p)).unwrap();
            let cargo = read("Cargo.toml");
            assert!(cargo.contains(&format!("name = \"{name}\"")));
            assert!(cargo.contains("[workspace]"));
            assert!(cargo.contains(r#"crate-type = ["cdylib", "rlib"]"#));
            assert!(!cargo.contains("workspace = true"));
            assert!(!cargo.contains("{{"), "every placeholder is filled");
            assert!(read(".cargo/config.toml").contains("-zstack-size=65536"));
            assert_eq!(read("wit/crochet-plugin.wit"), WIT);
            let lib = read("src/lib.rs");
            // A policy is a `configurable-policy`: the `policy` world plus
            // `validate-config`.
            let bound = match world {
                World::Policy => "configurable-policy",
                other => other.name(),
            };
            assert!(lib.contains(&format!("world: \"{bound}\"")));
            assert!(lib.contains("fn install_panic_hook()"));
            assert!(lib.contains("#[cfg(test)]"));
            assert!(!lib.contains("{{"));
            let readme = read("README.md");
            assert!(readme.contains(&format!("{}.wasm", name.replace('-', "_"))));
            assert!(readme.contains("rustup target add wasm32-wasip2"));
            assert!(read(".gitignore").contains("/target"));
        }
    }

    #[test]
    fn an_existing_folder_is_refused_unless_empty() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("empty")).unwrap();
        assert!(create(tmp.path(), "empty", World::Policy).is_ok());
        // Now it has files.
        assert!(matches!(
            create(tmp.path(), "empty", World::Scorer),
            Err(ScaffoldError::Exists(_))
        ));
        std::fs::write(tmp.path().join("file"), "x").unwrap();
        assert!(matches!(
            create(tmp.path(), "file", World::Policy),
            Err(ScaffoldError::Exists(_))
        ));
    }

    #[test]
    fn pinned_versions_are_the_workspace_ones() {
        let lock =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.lock")).unwrap();
        for (name, version) in [
            ("serde", SERDE_VERSION),
            ("serde_json", SERDE_JSON_VERSION),
            ("wit-bindgen", WIT_BINDGEN_VERSION),
        ] {
            let entry = format!("name = \"{name}\"\nversion = \"{version}\"\n");
            assert!(lock.contains(&entry), "Cargo.lock has {name} {version}");
        }
    }

    #[test]
    fn worlds_parse_by_name() {
        for world in World::ALL {
            assert_eq!(World::parse(world.name()), Some(world));
        }
        assert_eq!(World::parse("adapter"), None);
    }
}

//! Checks of the rules `ARCHITECTURE.md` states about the code's shape: which modules
//! may import which, and that no table stores a body. They read the sources and the
//! migrations, so a change that breaks a rule fails here with the file that broke it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The domain modules (and the seller client below them).
const DOMAINS: &[&str] = &[
    "admin",
    "identity",
    "catalog",
    "gateway",
    "ledger",
    "payments",
    "reputation",
    "plugins",
    "seller_client",
];

/// (module, the `crate::` modules it must not import).
fn rules() -> Vec<(&'static str, Vec<&'static str>)> {
    let not_domains = |extra: &[&'static str]| {
        let mut v: Vec<&'static str> = DOMAINS.to_vec();
        v.extend_from_slice(extra);
        v
    };
    vec![
        ("storage", not_domains(&["http", "app"])),
        ("secrets", not_domains(&["http", "app"])),
        ("text", not_domains(&["http", "app"])),
        ("config", not_domains(&["http", "app"])),
        (
            "metrics",
            not_domains(&["http", "app", "storage", "config", "secrets", "text"]),
        ),
        ("seller_client", not_domains(&["http", "app"])),
        ("catalog", vec!["gateway", "admin"]),
        ("plugins", vec!["gateway", "catalog", "admin"]),
        ("ledger", vec!["gateway", "catalog", "reputation", "admin"]),
        ("reputation", vec!["gateway", "admin"]),
        // The operator's domain sits on top: the domains it acts on never know it.
        ("identity", vec!["admin"]),
        ("gateway", vec!["admin"]),
        ("payments", vec!["admin"]),
    ]
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`catalog/store.rs` -> `catalog`).
fn module_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_owned()
}

/// The `crate::` modules a file's code names (comments left out), including grouped
/// imports such as `use crate::{a, b::c}`.
fn crate_imports(source: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// Files allowed to know about HTTP and the application state: the web layer itself,
/// the wiring, the binary, and each domain's handlers.
fn serves_http(file: &Path) -> bool {
    let module = module_of(file);
    module == "http"
        || module == "app"
        || module == "main"
        || file.file_name().is_some_and(|n| n == "http.rs")
}

#[test]
fn the_arrows_run_one_way() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut broken = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).expect("read a source file");
        let imports = crate_imports(&source);
        let module = module_of(file);
        for (ruled, forbidden) in rules() {
            if module != ruled {
                continue;
            }
            for name in &forbidden {
                if imports.contains(*name) {
                    broken.push(format!("{} imports crate::{name}", file.display()));
                }
            }
        }
        if !serves_http(file) {
            for name in ["http", "app"] {
                if imports.contains(name) {
                    broken.push(format!("{} imports crate::{name}", file.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    assert!(files.len() > 40, "the sources were found");
}

#[test]
fn the_import_scanner_sees_grouped_and_nested_paths() {
    let found = crate_imports(
        "use crate::{gateway, storage::Page};\nlet x = crate::ledger::fee_cents(1); // crate::app\n",
    );
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["gateway", "ledger", "storage"]
    );
}

#[test]
fn no_column_holds_a_body() {
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files = Vec::new();
    for db in ["sqlite", "postgres"] {
        for entry in std::fs::read_dir(migrations.join(db)).expect("migrations") {
            files.push(entry.expect("entry").path());
        }
    }
    let mut columns = BTreeSet::new();
    for file in &files {
        let sql = std::fs::read_to_string(file).expect("read a migration");
        for line in sql.lines() {
            let code = line.split("--").next().unwrap_or("");
            for word in code.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
                if word.to_lowercase().contains("body") {
                    columns.insert(word.to_lowercase());
                }
            }
        }
    }
    assert!(!columns.is_empty(), "body hashes are stored somewhere");
    let stored: Vec<_> = columns
        .iter()
        .filter(|c| !(c.ends_with("_sha256") || c.ends_with("_bytes")))
        .collect();
    assert!(
        stored.is_empty(),
        "columns that could hold a body: {stored:?}"
    );
}

//! The tidy test: the boundaries ARCHITECTURE.md states as absences, checked on the source tree
//! (as rust-analyzer's tidy test does), so that breaking one fails `cargo test` with the file's
//! name instead of waiting for a reviewer. Core does no I/O; only store knows sled; only
//! deliver speaks HTTP through ureq; every Rust file says what it is for in a `//!` line.
//!
//! Crates are found by listing `crates/`, so a new crate (`crates/postgres`, `crates/api`) is
//! held to the same rules without editing this file.

use std::fs;
use std::path::{Path, PathBuf};

/// What core may not name: files, network, processes, threads, the environment, the clock,
/// the terminal, and async runtimes. Each is matched as a whole path or word in code, not in
/// comments.
const CORE_IO: &[&str] = &[
    "std::fs",
    "std::net",
    "std::process",
    "std::thread",
    "std::env",
    "std::os",
    "std::io::stdin",
    "std::io::stdout",
    "std::io::stderr",
    "SystemTime",
    "Instant",
    "tokio",
    "async_std",
    "mio",
    "println!",
    "print!",
    "eprintln!",
    "eprint!",
];

/// The same, as they appear inside a grouped import: `use std::{fs, time::SystemTime};`.
const CORE_IO_IN_USE_STD: &[&str] = &[
    "fs",
    "net",
    "process",
    "thread",
    "env",
    "os",
    "stdin",
    "stdout",
    "stderr",
    "SystemTime",
    "Instant",
];

/// Crates only one workspace crate may depend on and name in its `src/`: (crate, its owner
/// directory under `crates/`, the invariant).
const OWNED_CRATES: &[(&str, &str, &str)] = &[
    ("sled", "store", "only store knows sled"),
    ("ureq", "deliver", "only deliver speaks HTTP"),
];

/// The directories, relative to the workspace root, whose Rust files must open with `//!`.
/// `crates/*/examples` and `crates/*/benches` are included for the crates that have them.
const DOCUMENTED_DIRS: &[&str] = &["src", "tests", "benches", "examples"];
const DOCUMENTED_CRATE_DIRS: &[&str] = &["src", "tests", "benches", "examples"];

#[test]
fn the_source_tree_keeps_its_boundaries() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let crates = workspace_crates(root);
    assert!(
        crates.iter().any(|dir| dir.ends_with("core")),
        "no crates/core under {}: the tidy test looks in the wrong place",
        root.display()
    );
    let mut problems = Vec::new();

    // (a) core does no I/O.
    for file in rust_files(&root.join("crates/core/src")) {
        let text = read(&file);
        for (line, found) in core_io(&text) {
            problems.push(format!(
                "{}:{line}: uses {found}, but core does no I/O (ARCHITECTURE.md): \
                 take it as an argument instead",
                relative(root, &file)
            ));
        }
    }

    // (b), (c): sled only in store, ureq only in deliver, in code and in [dependencies].
    let mut packages: Vec<(String, PathBuf)> = vec![(String::new(), root.to_path_buf())];
    packages.extend(crates.iter().map(|dir| (dir_name(dir), dir.clone())));
    for (name, dir) in &packages {
        for &(owned, owner, invariant) in OWNED_CRATES {
            if name == owner {
                continue;
            }
            for file in rust_files(&dir.join("src")) {
                for line in names_crate(&read(&file), owned) {
                    problems.push(format!(
                        "{}:{line}: names `{owned}`, but {invariant} (crates/{owner})",
                        relative(root, &file)
                    ));
                }
            }
            let manifest = dir.join("Cargo.toml");
            if depends_on(&read(&manifest), owned) {
                problems.push(format!(
                    "{}: depends on `{owned}`, but {invariant} (crates/{owner}); \
                     a dev-dependency is fine",
                    relative(root, &manifest)
                ));
            }
        }
    }

    // (e) the engine leases in one place: the dispatcher.
    for file in rust_files(&root.join("src")) {
        if file.ends_with("dispatcher.rs") {
            continue;
        }
        for (n, line) in code_lines(&read(&file)).iter().enumerate() {
            if line.contains(".lease(") || line.contains(".lease_within(") {
                problems.push(format!(
                    "{}:{}: leases, but only src/dispatcher.rs leases (ARCHITECTURE.md)",
                    relative(root, &file),
                    n + 1
                ));
            }
        }
    }

    // (d) every Rust file says what it is for.
    let mut documented: Vec<PathBuf> = DOCUMENTED_DIRS.iter().map(|d| root.join(d)).collect();
    for dir in &crates {
        documented.extend(DOCUMENTED_CRATE_DIRS.iter().map(|d| dir.join(d)));
    }
    let mut checked = 0;
    for file in documented.iter().flat_map(|dir| rust_files(dir)) {
        checked += 1;
        if !opens_with_module_doc(&read(&file)) {
            problems.push(format!(
                "{}: the first non-empty line is not a `//!` line saying what the file is for",
                relative(root, &file)
            ));
        }
    }
    assert!(
        checked > 50,
        "only {checked} Rust files found under {}",
        root.display()
    );

    assert!(
        problems.is_empty(),
        "tidy found {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

/// Every directory under `crates/` that holds a `Cargo.toml`, sorted.
fn workspace_crates(root: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(root.join("crates")).expect("read crates/");
    let mut crates: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read crates/").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    crates
}

/// Every `.rs` file under `dir` (none if it does not exist), sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("read a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

fn dir_name(dir: &Path) -> String {
    dir.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The text's lines without comments: a line that starts with `//` is empty, and a trailing
/// `// ...` is cut where it is outside a string literal. Good enough for our code (no `/* */`).
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("//") {
                return "";
            }
            let (mut in_string, mut escaped) = (false, false);
            for (at, c) in line.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' if in_string => escaped = true,
                    '"' => in_string = !in_string,
                    '/' if !in_string && line[at + 1..].starts_with('/') => return &line[..at],
                    _ => {}
                }
            }
            line
        })
        .collect()
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `needle` occurs in `line` as a whole path or word: not inside a longer identifier
/// (`mio` in `premio`, `Instant` in `InstantLike`).
fn has_word(line: &str, needle: &str) -> bool {
    line.match_indices(needle).any(|(at, _)| {
        let before = line[..at].chars().next_back();
        let after = line[at + needle.len()..].chars().next();
        // `println!` ends on its own; `std::fs` must not run on into `std::fsx`.
        let ends_clean = !needle.ends_with(is_ident) || !after.is_some_and(is_ident);
        !before.is_some_and(is_ident) && ends_clean
    })
}

/// What in this core file does I/O: (1-based line, what).
fn core_io(text: &str) -> Vec<(usize, String)> {
    let lines = code_lines(text);
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        for needle in CORE_IO {
            if has_word(line, needle) {
                found.push((index + 1, format!("`{needle}`")));
            }
        }
        // A grouped import may span lines: read the statement to its `;`.
        if let Some(at) = line.find("use std::{") {
            let statement: String = std::iter::once(&line[at..])
                .chain(lines[index + 1..].iter().copied())
                .scan(false, |done, part| {
                    (!*done).then(|| {
                        *done = part.contains(';');
                        part
                    })
                })
                .collect::<Vec<_>>()
                .join(" ");
            for word in CORE_IO_IN_USE_STD {
                if has_word(&statement, word) {
                    found.push((index + 1, format!("`std::{{.. {word} ..}}`")));
                }
            }
        }
    }
    found
}

/// The lines (1-based) on which code names the crate `name`: a `name::` path, `use name`, or
/// `extern crate name`.
fn names_crate(text: &str, name: &str) -> Vec<usize> {
    let path = format!("{name}::");
    let import = format!("use {name}");
    let external = format!("extern crate {name}");
    code_lines(text)
        .iter()
        .enumerate()
        .filter(|(_, line)| {
            has_word(line, &path) || has_word(line, &import) || has_word(line, &external)
        })
        .map(|(index, _)| index + 1)
        .collect()
}

/// Whether a manifest lists `name` among its normal or build dependencies (any target), as a
/// key or as the `package` a renamed key stands for. `[dev-dependencies]` and the workspace's
/// own version table (`[workspace.dependencies]`) do not count.
fn depends_on(manifest: &str, name: &str) -> bool {
    let mut in_dependencies = false;
    for line in manifest.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            let table = header.rsplit_once('.').map_or(header, |(_, last)| last);
            let is_dependencies = |section: &str| {
                section == "dependencies"
                    || section == "build-dependencies"
                    || section.ends_with(".dependencies")
                    || section.ends_with(".build-dependencies")
            };
            if header.starts_with("workspace.") {
                in_dependencies = false;
            } else if is_dependencies(header) {
                in_dependencies = true;
            } else if let Some((section, _)) = header.rsplit_once('.') {
                // `[dependencies.sled]`: the table is the dependency itself.
                if is_dependencies(section) && table.trim_matches('"') == name {
                    return true;
                }
                in_dependencies = false;
            } else {
                in_dependencies = false;
            }
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key
            .split('.')
            .next()
            .unwrap_or_default()
            .trim()
            .trim_matches('"');
        let renamed = value
            .replace(' ', "")
            .contains(&format!("package=\"{name}\""));
        if key == name || renamed {
            return true;
        }
    }
    false
}

/// Whether the first non-empty line of a Rust file is a `//!` line.
fn opens_with_module_doc(text: &str) -> bool {
    text.trim_start_matches('\u{feff}')
        .lines()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.trim_start().starts_with("//!"))
}

#[test]
fn the_scanners_flag_synthetic_offenders() {
    // (a) I/O in core, in each spelling, and not in comments or longer names.
    let core = r#"//! A core module.
use std::fs::File;
use std::{
    collections::HashMap,
    thread,
};
fn clock() -> u64 { let _ = std::time::Instant::now(); 0 }
fn shout() { println!("hi"); }
// std::thread::spawn would be I/O, but this is a comment.
fn url() -> &'static str { "https://std::net.example" } // std::process::exit
struct InstantLike;
fn premio() {}
"#;
    let found = core_io(core);
    assert_eq!(
        found,
        [
            (2, "`std::fs`".to_string()),
            (3, "`std::{.. thread ..}`".to_string()),
            (7, "`Instant`".to_string()),
            (8, "`println!`".to_string()),
            (10, "`std::net`".to_string()),
        ],
        "{found:#?}"
    );
    assert!(
        core_io("//! Pure.\nuse std::collections::HashMap;\nuse std::time::Duration;\n").is_empty()
    );

    // (b), (c) naming a crate in code, not in prose.
    let engine = "//! An engine file.\n// sled's cost is per operation.\nuse sled::Db;\nfn f() { let _ = ::ureq::get(\"x\"); }\nextern crate sled;\nfn bsled() {}\n";
    assert_eq!(names_crate(engine, "sled"), [3, 5]);
    assert_eq!(names_crate(engine, "ureq"), [4]);
    assert!(names_crate("//! Prose only.\n/// Uses ureq under the hood.\n", "ureq").is_empty());

    // ... and in manifests: normal, build, target and table-form dependencies count;
    // dev-dependencies and the workspace's version table do not.
    for manifest in [
        "[dependencies]\nsled.workspace = true\n",
        "[dependencies]\nsled = \"0.34\"\n",
        "[dependencies]\nstorage = { package = \"sled\", version = \"0.34\" }\n",
        "[target.'cfg(unix)'.dependencies]\nsled = { workspace = true }\n",
        "[build-dependencies]\nsled.workspace = true\n",
        "[dependencies.sled]\nworkspace = true\n",
    ] {
        assert!(depends_on(manifest, "sled"), "{manifest}");
    }
    for manifest in [
        "[dev-dependencies]\nsled.workspace = true\n",
        "[workspace.dependencies]\nsled = \"0.34.7\"\n",
        "[dependencies]\nsledge = \"1\"\n# sled = \"0.34\"\n[dev-dependencies]\nsled = \"0.34\"\n",
    ] {
        assert!(!depends_on(manifest, "sled"), "{manifest}");
    }

    // (d) the opening `//!` line.
    assert!(opens_with_module_doc(
        "\n//! Says what it is for.\nfn f() {}\n"
    ));
    for text in [
        "fn f() {}\n",
        "/// An item doc is not a module doc.\nfn f() {}\n",
        "use std::fs;\n//! Too late.\n",
        "",
    ] {
        assert!(!opens_with_module_doc(text), "{text:?}");
    }
}

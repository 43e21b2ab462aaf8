//! Compiles proto/tidemark.proto with prost (protox parses it in Rust, so no protoc binary
//! is needed), and embeds the console's files (`console/`) as a table of
//! `(path, content type, bytes)` with a version hash, so the binary serves them offline.

use std::fmt::Write;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/tidemark.proto");
    let files = protox::compile(["proto/tidemark.proto"], ["proto"])?;
    prost_build::Config::new().compile_fds(files)?;
    embed_console()
}

/// The content type of a console file, by extension (None: not served).
fn content_type(path: &Path) -> Option<&'static str> {
    Some(match path.extension()?.to_str()? {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => return None,
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if content_type(&path).is_some() {
            out.push(path);
        }
    }
    Ok(())
}

/// Writes `$OUT_DIR/console_assets.rs`: `ASSETS` and `VERSION` (FNV-1a of every file).
fn embed_console() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    println!("cargo:rerun-if-changed=console");
    let mut files = Vec::new();
    walk(&root, &mut files)?;
    files.sort();
    let mut hash: u64 = 0xcbf29ce484222325;
    let mut table = String::from(
        "/// The console's files: path under `/console/`, content type, bytes.\n\
         pub static ASSETS: &[(&str, &str, &[u8])] = &[\n",
    );
    for f in &files {
        let rel = f.strip_prefix(&root)?.to_string_lossy().replace('\\', "/");
        for b in std::fs::read(f)?.iter().chain(rel.as_bytes()) {
            hash = (hash ^ *b as u64).wrapping_mul(0x100000001b3);
        }
        let kind = content_type(f).unwrap_or("application/octet-stream");
        writeln!(table, "    ({rel:?}, {kind:?}, include_bytes!({:?})),", f.display().to_string())?;
    }
    writeln!(table, "];\n/// A hash of the console's files (their ETag).\npub const VERSION: &str = \"{hash:016x}\";")?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("console_assets.rs");
    std::fs::write(out, table)?;
    Ok(())
}

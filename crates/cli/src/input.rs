//! Reading what the user hands a command: inline text, a file, or stdin (`-`).

use std::io::Read;
use std::path::Path;

use crate::error::Failure;

/// The bytes of `path`, or of stdin for `-`.
pub(crate) fn read_bytes(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map_err(|e| Failure::failed(format_args!("cannot read stdin: {e}")))?;
        return Ok(bytes);
    }
    std::fs::read(path).map_err(|e| {
        let path = path.display();
        match e.kind() {
            std::io::ErrorKind::NotFound => Failure::not_found(format_args!("no file {path}")),
            _ => Failure::failed(format_args!("cannot read {path}: {e}")),
        }
    })
}

/// Text given inline, else read from `file` (`-`: stdin). clap makes sure one of them is given.
pub(crate) fn text(inline: Option<&str>, file: Option<&Path>) -> Result<String, Failure> {
    match (inline, file) {
        (Some(text), _) => Ok(text.to_string()),
        (None, Some(path)) => String::from_utf8(read_bytes(path)?)
            .map_err(|_| Failure::usage(format_args!("{} is not UTF-8 text", path.display()))),
        (None, None) => Err(Failure::usage("give the JSON inline or with --file")),
    }
}

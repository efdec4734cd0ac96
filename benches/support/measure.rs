//! What the soak run and the backlog bench measure of their own process and of a store
//! directory: resident memory from /proc and the space a directory takes on disk.

#![allow(dead_code)] // the soak example and the backlog bench each use a different part

use std::path::Path;

/// A field of /proc/self/status in MiB (`VmRSS`: resident now; `VmHWM`: the peak so far), or 0
/// where /proc is missing, so a report shows 0 rather than failing.
pub fn status_mib(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Resident memory now, in MiB.
pub fn rss_mib() -> f64 {
    status_mib("VmRSS")
}

/// The most this process was resident at any time, in MiB.
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

/// The space the files under `path` take on disk (allocated blocks, as `du` counts them, not
/// their lengths: sled's files may be sparse), in bytes.
pub fn dir_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => dir_bytes(&entry.path()),
            Ok(meta) => meta.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Bytes as MiB, for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

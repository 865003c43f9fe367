//! `[debug]`: fault injection for operators.

use super::reader::{Problems, TableReader};

const DEBUG: &[&str] = &["panic_path"];

/// `[debug]`
#[derive(Clone, Debug, Default)]
pub struct DebugConfig {
    /// Requests to exactly this path panic inside the pipeline: a fault injection to check
    /// that internal errors reach monitoring and that the gateway survives them.
    pub panic_path: Option<String>,
}

/// Reads `[debug]`.
pub(super) fn read(top: &TableReader<'_, '_>, p: &mut Problems<'_>) -> DebugConfig {
    let mut debug = DebugConfig::default();
    if let Some(d) = top.table(p, "debug", DEBUG) {
        if let Some((path, span)) = d.string(p, "panic_path") {
            // The path is a route of its own: a literal path, no parameters.
            if !path.starts_with('/') || path.contains(['{', '}', '?', '#']) {
                p.at(
                    span,
                    "debug.panic_path",
                    format!("`{path}` is not a literal path"),
                )
                .expected = Some("a path such as \"/debug/panic\"".into());
            } else {
                debug.panic_path = Some(path);
            }
        }
        d.finish(p);
    }
    debug
}

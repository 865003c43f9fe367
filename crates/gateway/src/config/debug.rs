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
        debug.panic_path = d.string(p, "panic_path").map(|(s, _)| s);
        d.finish(p);
    }
    debug
}

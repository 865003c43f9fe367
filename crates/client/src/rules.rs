//! The retry rules the client follows: the built-in catalog's, derived when the client is
//! compiled against it, or an operator's exported with `candor catalog export --retry-rules`.

use crate::error::ApiError;
use candor_catalog::{Catalog, RetryRules};
use std::sync::OnceLock;

/// The rules of candor's built-in catalog (the same JSON `candor catalog export
/// --retry-rules` prints without a configuration).
pub fn builtin() -> &'static RetryRules {
    static RULES: OnceLock<RetryRules> = OnceLock::new();
    RULES.get_or_init(|| RetryRules::from_catalog(Catalog::builtin()))
}

/// Reads rules exported with `candor catalog export --retry-rules --config FILE`, for a
/// gateway whose operator catalog adds codes or changes their classes.
pub fn from_json(text: &str) -> Result<RetryRules, ApiError> {
    let rules: RetryRules = serde_json::from_str(text)
        .map_err(|e| ApiError::local(format!("the retry rules are not readable: {e}")))?;
    if rules.version != 1 {
        return Err(ApiError::local(format!(
            "the retry rules are version {}; this client reads version 1",
            rules.version
        )));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #[test]
    fn exported_rules_read_back_and_other_versions_are_refused() {
        let text = super::builtin().to_json();
        assert_eq!(&super::from_json(&text).unwrap(), super::builtin());
        let v2 = text.replacen("\"version\": 1", "\"version\": 2", 1);
        let e = super::from_json(&v2).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        assert!(super::from_json("{}").is_err());
    }
}

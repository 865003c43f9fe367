//! Prints the retry rules the client follows: each class's guidance, then each code's
//! class. With a file argument, the rules exported from a gateway whose operator catalog
//! changes them (`candor catalog export --retry-rules --config candor.toml > rules.json`).
//!
//! ```text
//! cargo run -p candor-client --example retry_rules [-- rules.json]
//! ```

use candor_client::{Jitter, RetryRules, rules};

fn main() -> std::process::ExitCode {
    let rules: RetryRules = match std::env::args().nth(1) {
        Some(path) => match std::fs::read_to_string(&path)
            .map_err(|e| format!("{path}: {e}"))
            .and_then(|t| rules::from_json(&t).map_err(|e| format!("{path}: {e}")))
        {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => rules::builtin().clone(),
    };
    println!("CLASS          RETRIES  FIRST WAIT  LONGEST  JITTER  RETRY-AFTER  NEW TOKEN");
    for (class, b) in &rules.classes {
        println!(
            "{class:<14} {:<8} {:<11} {:<8} {:<7} {:<12} {}",
            b.max_retries,
            format!("{} ms", b.initial_delay_ms),
            format!("{} s", b.max_delay_ms / 1000),
            if b.jitter == Jitter::Full {
                "full"
            } else {
                "none"
            },
            if b.honour_retry_after {
                "honoured"
            } else {
                "-"
            },
            if b.reauthenticate { "yes" } else { "-" },
        );
    }
    println!();
    for r in &rules.codes {
        println!("{:<30} {}  {}", r.code, r.status, r.retry);
    }
    std::process::ExitCode::SUCCESS
}

//! The report of a configuration file's problems: every one at once, each with line,
//! column, key, what was expected and a did-you-mean.

use std::fmt;

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ConfigProblem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, e.g. `routes[2].timeout`.
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// What was expected, if that can be said.
    pub expected: Option<String>,
    /// The key or value probably meant.
    pub suggestion: Option<String>,
}

impl ConfigProblem {
    /// The problem as `candor check` prints it: `file:line:column: key: message; did you
    /// mean …? (expected …)`.
    pub fn located(&self, file: &str) -> String {
        // Line 0: about the file as a whole (it could not be read), not a place in it.
        let mut out = if self.line == 0 {
            format!("{file}: ")
        } else {
            format!("{file}:{}:{}: ", self.line, self.column)
        };
        if !self.key.is_empty() {
            out.push_str(&self.key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        if let Some(s) = &self.suggestion {
            out.push_str(&format!("; did you mean `{s}`?"));
        }
        if let Some(e) = &self.expected {
            out.push_str(&format!(" (expected {e})"));
        }
        out
    }
}

/// Every problem found in a configuration file.
#[derive(Clone, Debug)]
pub struct ConfigReport {
    /// The file's name as given.
    pub file: String,
    /// The problems, in file order.
    pub problems: Vec<ConfigProblem>,
    /// The other files the configuration names that loading it read (or tried to), as
    /// [`Config::files`](super::Config::files): the gateway watches them for a fix.
    pub(crate) files: Vec<super::NamedFile>,
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        writeln!(
            f,
            "{}: {n} problem{}",
            self.file,
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            writeln!(f, "  {}", p.located(&self.file))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigReport {}

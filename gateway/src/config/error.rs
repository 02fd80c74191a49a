//! Errors and diagnostics of configuration loading: every problem names the file, the key path
//! and what was expected.

use std::fmt;
use std::path::PathBuf;

/// One problem (or warning) found in a configuration file, located by file and key path.
///
/// Displays as `config.yaml: gateway.port: expected an integer 1-65535, got "abc"`.
/// The message never contains the value of a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The file the problem is in, as it was given to the loader.
    pub file: PathBuf,
    /// The key path inside the file, e.g. `services.homeassistant.auth.token` or `rules[2].action`;
    /// empty for a problem with the whole file.
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// Why a configuration or permissions file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read the file: {source} (check the path, or pass it with --config / --permissions)", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid YAML.
    #[error("{}{}: invalid YAML: {message}", file.display(), location.map(|(l, c)| format!(":{l}:{c}")).unwrap_or_default())]
    Yaml {
        /// The file.
        file: PathBuf,
        /// Line and column (1-based) of the syntax error, when known.
        location: Option<(usize, usize)>,
        /// The parser's message.
        message: String,
    },
    /// The file is valid YAML but its content is wrong; every problem found is listed.
    #[error("{}", Issues(.issues))]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Every problem found, in file order.
        issues: Vec<Issue>,
    },
}

impl ConfigError {
    /// Every problem as a separate [`Issue`] (a read or YAML error becomes one issue).
    pub fn issues(&self) -> Vec<Issue> {
        match self {
            ConfigError::Invalid { issues, .. } => issues.clone(),
            ConfigError::Read { file, source } => vec![Issue {
                file: file.clone(),
                key: String::new(),
                message: format!("cannot read the file: {source}"),
            }],
            ConfigError::Yaml {
                file,
                location,
                message,
            } => vec![Issue {
                file: match location {
                    Some((l, c)) => PathBuf::from(format!("{}:{l}:{c}", file.display())),
                    None => file.clone(),
                },
                key: String::new(),
                message: format!("invalid YAML: {message}"),
            }],
        }
    }
}

struct Issues<'a>(&'a [Issue]);

impl fmt::Display for Issues<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

//! Logs on stdout, as text or one JSON object a line, filtered by `RUST_LOG` or `--log-level`.

use tracing_subscriber::EnvFilter;

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// A `--log-level` that is not a filter.
#[derive(Debug, thiserror::Error)]
#[error("log level {level:?}")]
pub struct LoggingError {
    level: String,
    source: tracing_subscriber::filter::ParseError,
}

/// The filter of the logs: `RUST_LOG` when it is set and valid, else `level` (`--log-level`).
pub fn filter(level: &str) -> Result<EnvFilter, LoggingError> {
    match EnvFilter::try_from_default_env() {
        Ok(filter) => Ok(filter),
        Err(_) => EnvFilter::try_new(level).map_err(|source| LoggingError {
            level: level.to_owned(),
            source,
        }),
    }
}

/// Installs the process's subscriber, with [`filter`].
pub fn init(level: &str, format: LogFormat) -> Result<(), LoggingError> {
    let logs = tracing_subscriber::fmt().with_env_filter(filter(level)?);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

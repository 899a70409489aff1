//! Logs on stdout, as text or one JSON object a line, filtered by `RUST_LOG` or `--log-level`.

use tracing_subscriber::EnvFilter;

use crate::cli::{CommonArgs, LogFormat};

/// A `--log-level` that is not a filter.
#[derive(Debug, thiserror::Error)]
#[error("log level {level:?}")]
pub struct LoggingError {
    level: String,
    source: tracing_subscriber::filter::ParseError,
}

/// The filter of the logs: `RUST_LOG` when it is set and valid, else `--log-level`.
pub fn filter(common: &CommonArgs) -> Result<EnvFilter, LoggingError> {
    match EnvFilter::try_from_default_env() {
        Ok(filter) => Ok(filter),
        Err(_) => EnvFilter::try_new(&common.log_level).map_err(|source| LoggingError {
            level: common.log_level.clone(),
            source,
        }),
    }
}

/// Installs the process's subscriber, with [`filter`].
pub fn init(common: &CommonArgs) -> Result<(), LoggingError> {
    let logs = tracing_subscriber::fmt().with_env_filter(filter(common)?);
    match common.log_format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
    Ok(())
}

//! Logging: journald-friendly text lines on stderr, or JSON with `--log-format json`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. `RUST_LOG` wins over the configured level.
pub fn init(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        // journald adds its own timestamps; keep lines short and free of colour codes.
        builder.with_ansi(false).without_time().try_init()
    };
}

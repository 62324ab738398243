//! Logging to stderr: human text or one JSON object per line, filtered by
//! `RUST_LOG` (default `info`).
//!
//! The HTTP, TLS and storage libraries are capped at `info` whatever
//! `RUST_LOG` says: at `trace` some of them print request headers, and the
//! headers carry the signature and the session token.

use tracing_subscriber::EnvFilter;

use crate::jobs::progress::StderrAboveBar;

/// How log lines look (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Targets that never log below `info`.
pub const CAPPED: [&str; 10] = [
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "tokio_rustls",
    "tower",
    "axum",
    "object_store",
    "aws_lc_rs",
];

/// The filter: `RUST_LOG` (or `info`), then the caps.
pub fn filter(rust_log: Option<&str>) -> EnvFilter {
    let capped = |base: &str| {
        CAPPED
            .iter()
            .fold(base.to_owned(), |d, target| format!("{d},{target}=info"))
    };
    let base = rust_log.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    EnvFilter::try_new(capped(base)).unwrap_or_else(|_| EnvFilter::new(capped("info")))
}

/// Installs the global subscriber. Call once, first thing.
pub fn init(format: LogFormat) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| StderrAboveBar)
        // A closed stderr (`2>&1 | head`) must not end the run: the
        // default reports a failed write with eprintln!, which panics.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            // The account's span (`"span": {"account": …}`), so the lines
            // of two accounts in one process can be told apart.
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Writes `line` and a newline to stderr. A reader that went away (`2>&1 |
/// head`) ends nothing but the output: no panic (as `eprintln!` would),
/// the run goes on and its exit code stands.
pub fn stderr_line(line: &str) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}").and_then(|()| err.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_even_at_trace() {
        let f = filter(Some("trace")).to_string();
        assert!(
            f.contains("hyper=info") && f.contains("h2=info") && f.contains("reqwest=info"),
            "{f}"
        );
        let f = filter(Some("not a [valid filter")).to_string();
        assert!(f.contains("rustls=info"), "{f}");
    }
}

//! Progress of a long run: a bar on a terminal, periodic log lines with an
//! ETA otherwise. The ETA is dominated by the pacer: remaining calls ×
//! interval.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tracing::info;

use crate::jobs::summary::Summary;
use crate::logging::LogFormat;

/// Where progress shows (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// A bar on a terminal, periodic log lines otherwise.
    Auto,
    /// Always the bar.
    Bar,
    /// Always log lines.
    Log,
    /// Neither.
    Off,
}

/// Receives the run's progress.
pub trait Progress: Send {
    /// `total` steps of `unit` (`app-days` in export: each its room,
    /// app and check partitions; `partitions` in rebuild), paced at
    /// `interval`.
    fn start(&mut self, total: usize, unit: &'static str, interval: Duration);
    fn advance(&mut self, summary: &Summary);
    fn finish(&mut self);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: usize, _: &'static str, _: Duration) {}
    fn advance(&mut self, _: &Summary) {}
    fn finish(&mut self) {}
}

fn done(s: &Summary) -> usize {
    s.steps_done
}

/// Time left: the remaining steps' paced calls (`plan::wall_time`, the
/// dry run's formula), one interval after the last call made; for steps
/// with no call (`interval` zero: a rebuild, derived partitions), the
/// time the steps done took, on average, for each one left.
fn eta(total: usize, done: usize, interval: Duration, elapsed: Duration) -> Duration {
    let left = total.saturating_sub(done);
    if interval.is_zero() && done > 0 {
        // Whole seconds: the line says "about 3m 12s", not nanoseconds.
        return Duration::from_secs(elapsed.mul_f64(left as f64 / done as f64).as_secs());
    }
    if done == 0 {
        crate::jobs::plan::wall_time(left, interval)
    } else {
        interval.saturating_mul(left.min(u32::MAX as usize) as u32)
    }
}

/// A log line per partition, at most one every `every`, and always the last.
pub struct LogLines {
    started: Instant,
    total: usize,
    unit: &'static str,
    interval: Duration,
    every: Duration,
    last: Option<Instant>,
}

impl LogLines {
    pub fn new(every: Duration) -> Self {
        Self {
            started: Instant::now(),
            total: 0,
            unit: "partitions",
            interval: Duration::ZERO,
            every,
            last: None,
        }
    }
}

impl Progress for LogLines {
    fn start(&mut self, total: usize, unit: &'static str, interval: Duration) {
        self.started = Instant::now();
        self.total = total;
        self.unit = unit;
        self.interval = interval;
        info!(
            total,
            eta_secs = eta(total, 0, interval, Duration::ZERO).as_secs(),
            "Progress: 0/{total} {unit}; about {} to go.",
            humantime::format_duration(eta(total, 0, interval, Duration::ZERO))
        );
    }

    fn advance(&mut self, s: &Summary) {
        let d = done(s);
        let due = self.last.is_none_or(|t| t.elapsed() >= self.every);
        if !due && d < self.total {
            return;
        }
        self.last = Some(Instant::now());
        let left = eta(self.total, d, self.interval, self.started.elapsed());
        info!(
            done = d,
            total = self.total,
            written = s.written,
            failed = s.failed.len(),
            eta_secs = left.as_secs(),
            "Progress: {d}/{} {}; about {} to go.",
            self.total,
            self.unit,
            humantime::format_duration(left)
        );
    }

    fn finish(&mut self) {}
}

/// The bar currently drawn, so log lines can be printed above it.
static ACTIVE_BAR: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A terminal progress bar.
pub struct Bar {
    bar: ProgressBar,
    interval: Duration,
    started: Instant,
}

impl Bar {
    pub fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} {prefix}  {msg}")
                .expect("valid template"),
        );
        Self {
            bar,
            interval: Duration::ZERO,
            started: Instant::now(),
        }
    }
}

impl Default for Bar {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress for Bar {
    fn start(&mut self, total: usize, unit: &'static str, interval: Duration) {
        self.interval = interval;
        self.started = Instant::now();
        self.bar.set_prefix(unit);
        self.bar.set_length(total as u64);
        self.bar.set_message(format!(
            "ETA {}",
            humantime::format_duration(eta(total, 0, interval, Duration::ZERO))
        ));
        *ACTIVE_BAR.lock().expect("bar lock") = Some(self.bar.clone());
    }

    fn advance(&mut self, s: &Summary) {
        let d = done(s);
        self.bar.set_position(d as u64);
        let total = self.bar.length().unwrap_or(0) as usize;
        self.bar.set_message(format!(
            "ETA {}  ({} rows, {} failed)",
            humantime::format_duration(eta(total, d, self.interval, self.started.elapsed())),
            s.rows,
            s.failed.len()
        ));
    }

    fn finish(&mut self) {
        self.bar.finish_and_clear();
        *ACTIVE_BAR.lock().expect("bar lock") = None;
    }
}

/// Picks the display for `mode`: `auto` is a bar on a terminal with text
/// logs, log lines otherwise.
pub fn for_mode(mode: Mode, log_format: LogFormat) -> Box<dyn Progress> {
    let terminal = std::io::stderr().is_terminal() && log_format == LogFormat::Text;
    match mode {
        Mode::Off => Box::new(Silent),
        Mode::Bar => Box::new(Bar::new()),
        Mode::Log => Box::new(LogLines::new(Duration::from_secs(30))),
        Mode::Auto if terminal => Box::new(Bar::new()),
        Mode::Auto => Box::new(LogLines::new(Duration::from_secs(30))),
    }
}

/// The display of one account among several running side by side: log
/// lines (one bar per account would fight over the terminal), each naming
/// its account through the account's span; none under `--progress off`.
pub fn for_account(mode: Mode) -> Box<dyn Progress> {
    match mode {
        Mode::Off => Box::new(Silent),
        _ => Box::new(LogLines::new(Duration::from_secs(30))),
    }
}

/// Stderr that lifts the progress bar out of the way of each log line.
pub struct StderrAboveBar;

impl Write for StderrAboveBar {
    /// A line that cannot be written (stderr closed: `2>&1 | head`) is
    /// dropped; the run goes on, as with a closed stdout.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ACTIVE_BAR.lock().expect("bar lock").clone();
        let _ = match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
            None => std::io::stderr().write_all(buf),
        };
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_is_paced_calls_or_the_pace_so_far() {
        let s = Duration::from_secs;
        // Paced: the calls left, one interval apart.
        assert_eq!(eta(10, 4, s(15), s(1)), s(90));
        // No call: 4 done in 8 s, 6 left → 12 s, in whole seconds.
        assert_eq!(
            eta(10, 4, Duration::ZERO, Duration::from_millis(8_300)),
            s(12)
        );
        assert_eq!(eta(10, 10, Duration::ZERO, s(8)), s(0));
    }
}

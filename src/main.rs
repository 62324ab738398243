//! The `trtc-usage` binary: parse, log, run, exit. Everything else is in the library.

use clap::Parser;

/// One glibc malloc arena for the whole process, unless the user chose a
/// number with `MALLOC_ARENA_MAX`. With glibc's default (8 per core) each
/// thread that touches a day's buffers can keep its own arena's worth of
/// freed memory, and a backfill of million-room days grew by roughly a day
/// per partition: 22 days peaked at 256-413 MiB, against 99 MiB with one
/// arena (57 days: 100 MiB), no slower. Allocations here are few and large,
/// so one arena's lock is never contended. Call before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; called while
        // the process has a single thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = match trtc_usage::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, naming the flag and the problem; the usage block
            // would bury it.
            let args: Vec<String> = std::env::args().collect();
            let line = if e.kind()
                == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                && args.len() <= 1
            {
                trtc_usage::cli::usage_line(
                    "a subcommand is needed: export, rebuild, status, demo or simulator",
                    None,
                )
            } else {
                trtc_usage::cli::clap_usage_line(&e, &args)
            };
            trtc_usage::logging::stderr_line(&line);
            return std::process::ExitCode::from(trtc_usage::app::EXIT_FATAL);
        }
    };
    let log_format = match cli.log_format() {
        Ok(f) => f,
        Err(problem) => {
            trtc_usage::logging::stderr_line(&trtc_usage::cli::usage_line(&problem, None));
            return std::process::ExitCode::from(trtc_usage::app::EXIT_FATAL);
        }
    };
    trtc_usage::logging::init(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(trtc_usage::app::run(cli, log_format));
    // Do not wait for blocking tasks of a stopped run.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::ExitCode::from(code)
}

//! The `trtc-usage` binary: parse, log, run, exit. Everything else is in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = trtc_usage::cli::Cli::parse();
    trtc_usage::logging::init(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let code = runtime.block_on(trtc_usage::app::run(cli));
    // Do not wait for blocking tasks of a stopped run.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::ExitCode::from(code)
}

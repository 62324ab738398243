//! The `trtc-usage` binary: parse, log, run, exit. Everything else is in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match trtc_usage::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, naming the flag; the usage block would bury it.
            let rendered = e.render().to_string();
            let message: Vec<&str> = rendered
                .lines()
                .take_while(|l| !l.trim().is_empty() && !l.starts_with("Usage:"))
                .map(str::trim)
                .collect();
            eprintln!("{} (see 'trtc-usage --help')", message.join(" "));
            return std::process::ExitCode::from(trtc_usage::app::EXIT_FATAL);
        }
    };
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

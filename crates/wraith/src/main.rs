//! The `wraith` command: parses flags (`args`), sets up logging, runs a
//! subcommand (`commands`, which hand the work to wraith-core's profiles),
//! and maps errors to exit codes (0 ok, 1 runtime failure, 2 usage error).
//! No tunnel logic lives here.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};

use args::{Cli, Command};

/// Print a line to stdout. Unlike `println!` it never panics: a closed
/// stdout (`wraith connect | head -1`) must not kill a running tunnel.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, $($arg)*);
        let _ = o.flush();
    }};
}

mod allocator;
mod args;
mod commands;
mod demo;
mod logging;
mod signals;

/// Raise the soft open-files limit to the hard one: every connection is a
/// descriptor (two for a tunnel), and the usual soft default of 1024 would
/// run out long before the connection limits do.
#[cfg(unix)]
fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::debug!(from = soft, to = hard, "raised the open-files limit"),
            Err(e) => {
                tracing::warn!(soft, hard, error = %e, "cannot raise the open-files limit")
            }
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot read the open-files limit"),
    }
}

#[cfg(not(unix))]
fn raise_nofile_limit() {}

fn main() -> ExitCode {
    allocator::keep_freed_memory_for_reuse();
    let cli = match args::parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // Socket activation: take systemd's sockets (and unset LISTEN_FDS)
    // while this is the only thread.
    if matches!(cli.command, Command::Serve(_)) {
        wraith_core::transport::inherit_systemd_sockets();
    }
    // A bug must still look like one clear line, not a backtrace dump.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error (please report it): {msg}{at}");
    }));
    let is_server = matches!(cli.command, Command::Serve(_));
    logging::init(cli.verbose, cli.quiet, is_server);
    raise_nofile_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // A blocking read of stdin (`--stdio`) must not hold the exit.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            // A value or a flag combination the library rejects is a usage
            // error, as when clap rejects it.
            let usage = e
                .downcast_ref::<wraith_core::Error>()
                .is_some_and(wraith_core::Error::is_usage);
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes on one line, without repeating a cause the
/// message already contains. A library error's message is complete: its
/// own sources (io, russh, rustls errors) are for programs, not repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let c = cause.to_string();
        if !out.contains(&c) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&c);
        }
        if cause.is::<wraith_core::Error>() {
            break;
        }
    }
    out.replace('\n', " ")
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(a) => commands::serve(*a).await,
        Command::Connect(a) => commands::connect(*a).await,
        Command::Keygen(a) => commands::keygen(a),
        Command::Demo(a) => demo::run(&a.socks5).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut args::command(),
                "wraith",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        Command::Man => {
            clap_mangen::Man::new(args::command())
                .render(&mut std::io::stdout())
                .context("cannot write the man page")?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        args::command().debug_assert();
    }

    #[test]
    fn serve_and_connect_flags_are_read_from_wraith_variables() {
        let mut command = args::command();
        command.build();
        let mut seen = 0;
        for sub in ["serve", "connect"] {
            let sub = command.find_subcommand(sub).expect("subcommand");
            for arg in sub.get_arguments() {
                let Some(long) = arg.get_long() else { continue };
                if matches!(long, "help" | "version" | "verbose" | "quiet") {
                    continue;
                }
                let env = arg.get_env().and_then(|e| e.to_str());
                assert_eq!(env, Some(args::env_name(long).as_str()), "--{long}");
                seen += 1;
            }
        }
        assert!(seen > 60, "only {seen} flags");
        assert_eq!(args::env_name("max-startups"), "WRAITH_MAX_STARTUPS");
    }
}

//! Logging to stderr. `-q` errors only, default info, `-v` debug, `-vv`
//! trace; `RUST_LOG` overrides. For the server, russh is capped at info
//! whatever is asked: at debug and trace it prints forward addresses and
//! packet contents, and tunnel destinations must never reach the server log.

use tracing_subscriber::EnvFilter;

/// Dependency targets that may print channel targets when verbose.
const SERVER_CAPPED: &[&str] = &["russh", "russh_cryptovec", "russh_util"];

pub(crate) fn init(verbose: u8, quiet: bool, is_server: bool) {
    let level = if quiet {
        "error"
    } else {
        match verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let mut filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).unwrap_or_else(|_| EnvFilter::new(level))
        }
        _ => EnvFilter::new(format!(
            "{dep},wraith={level},wraith_core={level}",
            dep = if verbose >= 2 { "debug" } else { "warn" }
        )),
    };
    if is_server {
        for target in SERVER_CAPPED {
            if let Ok(d) = format!("{target}=info").parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .try_init();
}

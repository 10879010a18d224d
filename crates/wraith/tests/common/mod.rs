//! End-to-end harness: runs the real `wraith` binary, a stock OpenSSH `sshd`
//! and `ssh`, `curl`, and small TCP targets, all on 127.0.0.1.
//!
//! Every wait has a deadline and fails with the output collected from the
//! processes involved; nothing sleeps to synchronise. The harness must never
//! touch the user's own SSH setup: every tool gets explicit key, known-hosts
//! and config files inside a temporary directory, and inherited `WRAITH_*`,
//! `RUST_LOG`, proxy and agent variables are removed from child processes.

// Each test binary uses a different subset of this module.
#![allow(dead_code)]

pub mod control;

use std::collections::HashSet;
use std::env;
use std::fmt::Debug;
use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for any single wait (process start, a line, a transfer).
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Interval for the few waits that must poll (ports, exit status).
const POLL: Duration = Duration::from_millis(20);

/// sshd refuses to re-exec itself unless started by absolute path.
pub const SSHD: &str = "/usr/sbin/sshd";

/// Body served by [`http_target`].
pub const HTTP_BODY: &str = "wraith e2e: the http target was reached\n";

/// Path of the binary under test.
pub fn wraith_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wraith")
}

// ---------------------------------------------------------------------------
// Tools and environment

/// True when the named tool is installed. When it is not: panics if
/// `CI=true` (CI must provide every tool), otherwise prints why the test is
/// skipped and returns false so the caller can return early.
pub fn require_tool(name: &str) -> bool {
    if find_tool(name).is_some() {
        return true;
    }
    if in_ci() {
        panic!("required tool `{name}` is not installed; CI must provide it (see .ci/run)");
    }
    eprintln!("skipping test: `{name}` is not installed (with CI=true this is a failure)");
    false
}

/// [`require_tool`] for each name; false if any is missing.
pub fn require_tools(names: &[&str]) -> bool {
    names.iter().all(|name| require_tool(name))
}

/// A Python interpreter that can import `module`. Debian's packages
/// (`apt-get install <debian_package>`) install for `/usr/bin/python3`,
/// which may not be the `python3` first on `PATH` (pyenv), so that one is
/// tried first. When none can: panics if `CI=true`, otherwise prints why the
/// test is skipped and returns `None`.
pub fn require_python_module(module: &str, debian_package: &str) -> Option<PathBuf> {
    let found = ["/usr/bin/python3", "python3"]
        .into_iter()
        .filter_map(find_tool)
        .find(|python| {
            let mut cmd = Command::new(python);
            cmd.args(["-c", &format!("import {module}")]);
            run(cmd, TIMEOUT).status.success()
        });
    if found.is_some() {
        return found;
    }
    if in_ci() {
        panic!(
            "no python3 can import `{module}`; CI must provide it \
             (apt-get install {debian_package}, see .ci/run)"
        );
    }
    eprintln!(
        "skipping test: no python3 can import `{module}` ({debian_package}; \
         with CI=true this is a failure)"
    );
    None
}

fn in_ci() -> bool {
    matches!(env::var("CI").as_deref(), Ok("true" | "1"))
}

pub fn find_tool(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.is_file().then_some(path);
    }
    let path = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The login name of the user running the tests.
pub fn current_user() -> String {
    if let Ok(user) = env::var("USER")
        && !user.is_empty()
    {
        return user;
    }
    let out = run(Command::new("whoami"), TIMEOUT);
    assert!(out.status.success(), "whoami failed: {}", show(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes variables that would change how wraith, ssh or curl behave from
/// what the test spelled out.
fn scrub_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let lower = key.to_ascii_lowercase();
        if key.starts_with("WRAITH_")
            || key == "RUST_LOG"
            || key == "SSH_AUTH_SOCK"
            || lower.ends_with("_proxy")
        {
            cmd.env_remove(key);
        }
    }
}

/// A fresh temporary directory, removed on drop.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("wraith-e2e-")
        .tempdir()
        .expect("create temp dir")
}

/// A name unique within this test process, for files in shared directories.
pub fn unique(name: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{name}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// One-shot commands

/// Runs `cmd` to completion with no stdin; kills it and panics after
/// `timeout`.
pub fn run(cmd: Command, timeout: Duration) -> Output {
    run_with_input(cmd, &[], timeout)
}

/// Runs `cmd` to completion with `input` on stdin (then EOF); kills it and
/// panics after `timeout`.
pub fn run_with_input(mut cmd: Command, input: &[u8], timeout: Duration) -> Output {
    let label = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin piped");
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        // The command may exit without reading its input; that is its call.
        let _ = stdin.write_all(&input);
    });
    let stdout = read_in_background(child.stdout.take().expect("stdout piped"));
    let stderr = read_in_background(child.stderr.take().expect("stderr piped"));
    let Some(status) = wait_child(&mut child, timeout) else {
        panic!(
            "{label} did not finish within {timeout:?}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stderr.join().unwrap_or_default())
        );
    };
    let _ = writer.join();
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// Waits up to `timeout` for `child` to exit; `None` (child killed) if it
/// did not.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(POLL);
    }
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Status, stdout and stderr of a finished command, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Asserts that the command succeeded and returns its stdout as text.
pub fn expect_success(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed\n{}", show(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------
// Long-running processes

/// Output of one pipe of a child, filled by a background thread.
#[derive(Default)]
struct Captured {
    state: Mutex<CapturedState>,
    changed: Condvar,
}

#[derive(Default)]
struct CapturedState {
    bytes: Vec<u8>,
    closed: bool,
}

impl Captured {
    fn start(mut pipe: impl Read + Send + 'static) -> Arc<Self> {
        let captured = Arc::new(Self::default());
        let sink = Arc::clone(&captured);
        thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match pipe.read(&mut buf) {
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let mut state = sink.state.lock().unwrap();
                if n == 0 {
                    state.closed = true;
                } else {
                    state.bytes.extend_from_slice(&buf[..n]);
                }
                drop(state);
                sink.changed.notify_all();
                if n == 0 {
                    break;
                }
            }
        });
        captured
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.state.lock().unwrap().bytes).into_owned()
    }

    /// Re-runs `check` on the (ANSI-stripped) text each time more arrives,
    /// until it returns `Some`, the pipe closes, or the deadline passes.
    fn wait_for<T>(
        &self,
        deadline: Instant,
        mut check: impl FnMut(&str) -> Option<T>,
    ) -> Option<T> {
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(found) = check(&strip_ansi(&String::from_utf8_lossy(&state.bytes))) {
                return Some(found);
            }
            let now = Instant::now();
            if state.closed || now >= deadline {
                return None;
            }
            state = self.changed.wait_timeout(state, deadline - now).unwrap().0;
        }
    }

    fn wait_closed(&self, deadline: Instant) -> bool {
        self.wait_for(deadline, |_| None::<()>);
        self.state.lock().unwrap().closed
    }
}

/// Removes ANSI escape sequences (colours, italics) that a log formatter may
/// add, so assertions see `user=bob` rather than styled field names.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A running child process whose stdout and stderr are captured; killed on
/// drop. Normally the `wraith` binary, but [`WraithProcess::spawn_command`]
/// wraps `ssh` and `sshd` the same way.
pub struct WraithProcess {
    label: String,
    child: Mutex<Child>,
    stdout: Arc<Captured>,
    stderr: Arc<Captured>,
    /// Indices of stdout lines already returned by `wait_for_line`.
    taken: Mutex<HashSet<usize>>,
}

/// A `wraith` command with a clean environment (no inherited `WRAITH_*` or
/// `RUST_LOG`) and colours off.
pub fn wraith_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(wraith_bin());
    scrub_env(&mut cmd);
    cmd.env("NO_COLOR", "1").args(args);
    cmd
}

impl WraithProcess {
    /// Starts `wraith <args>`.
    pub fn spawn(args: &[&str]) -> Self {
        Self::spawn_command(wraith_command(args))
    }

    /// Starts `wraith <args>` with extra environment variables.
    pub fn spawn_env(args: &[&str], envs: &[(&str, &str)]) -> Self {
        let mut cmd = wraith_command(args);
        cmd.envs(envs.iter().copied());
        Self::spawn_command(cmd)
    }

    /// Starts any command with stdin closed and stdout/stderr captured.
    pub fn spawn_command(mut cmd: Command) -> Self {
        let label = format!("{cmd:?}");
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let stdout = Captured::start(child.stdout.take().expect("stdout piped"));
        let stderr = Captured::start(child.stderr.take().expect("stderr piped"));
        Self {
            label,
            child: Mutex::new(child),
            stdout,
            stderr,
            taken: Mutex::new(HashSet::new()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap().id()
    }

    /// Waits for a complete stdout line starting with `prefix` that an
    /// earlier call has not returned yet, and returns it without the line
    /// end. Lines may arrive in any order. Panics with the process output on
    /// timeout or if stdout closes first.
    pub fn wait_for_line(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let mut taken = self.taken.lock().unwrap();
        let found = self.stdout.wait_for(deadline, |text| {
            text.split_inclusive('\n')
                .enumerate()
                .filter(|(i, line)| line.ends_with('\n') && !taken.contains(i))
                .map(|(i, line)| (i, line.trim_end_matches(['\r', '\n'])))
                .find(|(_, line)| line.starts_with(prefix))
                .map(|(i, line)| (i, line.to_owned()))
        });
        match found {
            Some((index, line)) => {
                taken.insert(index);
                line
            }
            None => panic!(
                "{}",
                self.failure(&format!(
                    "no stdout line starting with {prefix:?} within {timeout:?}"
                ))
            ),
        }
    }

    /// Waits for a stderr line containing every one of `needles` and returns
    /// it. Panics with the process output on timeout or if stderr closes
    /// first.
    pub fn wait_for_stderr(&self, needles: &[&str], timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        self.stderr
            .wait_for(deadline, |text| find_line(text, needles).map(str::to_owned))
            .unwrap_or_else(|| {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "no stderr line containing all of {needles:?} within {timeout:?}"
                    ))
                )
            })
    }

    /// Captured stdout so far, ANSI escapes removed.
    pub fn stdout_text(&self) -> String {
        strip_ansi(&self.stdout.raw())
    }

    /// Captured stderr so far, ANSI escapes removed.
    pub fn stderr_text(&self) -> String {
        strip_ansi(&self.stderr.raw())
    }

    /// Captured stdout followed by stderr, exactly as written (escapes kept).
    pub fn raw_output(&self) -> String {
        format!("{}{}", self.stdout.raw(), self.stderr.raw())
    }

    /// Exit status if the process has exited.
    pub fn try_status(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().expect("try_wait")
    }

    /// Waits for the process to exit on its own; panics with its output if it
    /// is still running after `timeout`. Also waits (briefly) for the output
    /// pipes to drain so `stderr_text` is complete.
    pub fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                self.drain(Instant::now() + Duration::from_secs(2));
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!("still running after {timeout:?}"))
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Polls until `addr` accepts TCP connections; panics early with this
    /// process's output if the process exits meanwhile.
    pub fn wait_for_port<A: ToSocketAddrs + Debug>(&self, addr: A, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if TcpStream::connect(&addr).is_ok() {
                return;
            }
            if self.try_status().is_some() {
                self.drain(Instant::now() + Duration::from_secs(2));
                panic!(
                    "{}",
                    self.failure(&format!("exited before {addr:?} accepted connections"))
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}",
                    self.failure(&format!(
                        "{addr:?} did not accept connections within {timeout:?}"
                    ))
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Kills the process and waits until its output has been read to the
    /// end (bounded), so the captured text is final.
    pub fn kill(&self) {
        {
            let mut child = self.child.lock().unwrap();
            let _ = child.kill();
            let _ = child.wait();
        }
        self.drain(Instant::now() + Duration::from_secs(5));
    }

    fn drain(&self, deadline: Instant) {
        self.stdout.wait_closed(deadline);
        self.stderr.wait_closed(deadline);
    }

    /// A panic message: what went wrong plus everything the process printed.
    pub fn failure(&self, what: &str) -> String {
        let status = match self.try_status() {
            Some(status) => format!("exited: {status}"),
            None => "still running".to_owned(),
        };
        format!(
            "{}: {what} ({status})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.label,
            self.stdout_text(),
            self.stderr_text()
        )
    }
}

impl Drop for WraithProcess {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first line of `text` containing every one of `needles`.
pub fn find_line<'a>(text: &'a str, needles: &[&str]) -> Option<&'a str> {
    text.lines()
        .find(|line| needles.iter().all(|needle| line.contains(needle)))
}

/// Parses the socket address printed right after `prefix` in `line`, e.g.
/// `addr_after("socks5 listening on 127.0.0.1:4000", "socks5 listening on ")`.
/// A `tcp://` scheme is accepted.
pub fn addr_after(line: &str, prefix: &str) -> SocketAddr {
    let token = token_after(line, prefix);
    // `tcp://`, `ws://`, ... before the address.
    let token = token.split_once("://").map_or(token, |(_, addr)| addr);
    token
        .parse()
        .unwrap_or_else(|e| panic!("{token:?} in {line:?} is not a socket address: {e}"))
}

/// Parses the port of the `host:port` printed right after `prefix` in `line`;
/// the host may be a name, an IP or empty.
pub fn port_after(line: &str, prefix: &str) -> u16 {
    let token = token_after(line, prefix);
    let (_, port) = token
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("{token:?} in {line:?} has no port"));
    port.parse()
        .unwrap_or_else(|e| panic!("{port:?} in {line:?} is not a port: {e}"))
}

fn token_after<'a>(line: &'a str, prefix: &str) -> &'a str {
    let start = line
        .find(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not contain {prefix:?}"))
        + prefix.len();
    line[start..].split_whitespace().next().unwrap_or("")
}

// ---------------------------------------------------------------------------
// Keys

/// Runs `wraith keygen` to write `<dir>/<name>` and `<dir>/<name>.pub`;
/// checks the private key's mode is 0600 and a fingerprint was printed.
pub fn keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let path_arg = path.to_str().expect("utf-8 temp path");
    let out = run(
        wraith_command(&["keygen", "-f", path_arg, "--comment", name]),
        TIMEOUT,
    );
    let stdout = expect_success(&out, "wraith keygen");
    assert!(
        stdout.contains("SHA256:"),
        "wraith keygen printed no SHA256 fingerprint\n{}",
        show(&out)
    );
    let mode = fs::metadata(&path)
        .unwrap_or_else(|e| panic!("wraith keygen wrote no {}: {e}", path.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "private key {} mode", path.display());
    assert!(
        pub_path(&path).is_file(),
        "wraith keygen wrote no .pub file"
    );
    path
}

/// Runs OpenSSH's `ssh-keygen` to write an unencrypted Ed25519 key pair
/// `<dir>/<name>` and `<dir>/<name>.pub`.
pub fn ssh_keygen(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path);
    expect_success(&run(cmd, TIMEOUT), "ssh-keygen");
    path
}

/// `<key>.pub`.
pub fn pub_path(key: &Path) -> PathBuf {
    let mut path = key.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

/// `"<type> <base64>"` from the `.pub` file of `key`, comment dropped.
pub fn public_key_line(key: &Path) -> String {
    let path = pub_path(key);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    assert_eq!(
        fields.len(),
        2,
        "{} is not a public key: {text:?}",
        path.display()
    );
    fields.join(" ")
}

/// `SHA256:<base64>` fingerprint of `key`'s public half, computed by
/// OpenSSH's `ssh-keygen` (an independent implementation).
pub fn fingerprint(key: &Path) -> String {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-l", "-E", "sha256", "-f"]).arg(pub_path(key));
    let stdout = expect_success(&run(cmd, TIMEOUT), "ssh-keygen -l");
    stdout
        .split_whitespace()
        .find(|field| field.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint in {stdout:?}"))
        .to_owned()
}

/// Writes an OpenSSH `authorized_keys` file allowing the given keys.
pub fn write_authorized_keys(path: &Path, keys: &[&Path]) {
    let text: String = keys
        .iter()
        .map(|key| format!("{}\n", public_key_line(key)))
        .collect();
    fs::write(path, text).expect("write authorized_keys");
}

/// Writes an OpenSSH `known_hosts` file trusting `host_key` for `server`.
pub fn write_known_hosts(path: &Path, server: SocketAddr, host_key: &Path) {
    let line = format!(
        "[{}]:{} {}\n",
        server.ip(),
        server.port(),
        public_key_line(host_key)
    );
    fs::write(path, line).expect("write known_hosts");
}

// ---------------------------------------------------------------------------
// wraith serve / wraith connect

/// A running `wraith serve` on 127.0.0.1 with a host key from
/// `wraith keygen`.
pub struct WraithServer {
    pub process: WraithProcess,
    /// The address it printed as `listening on tcp://...`.
    pub addr: SocketAddr,
    /// Private host key; the `.pub` is beside it.
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
}

impl WraithServer {
    /// Starts a server in `dir` that authorizes the given client keys.
    pub fn start(dir: &Path, authorized: &[&Path]) -> Self {
        Self::start_with(dir, authorized, &[], &[])
    }

    /// Like [`WraithServer::start`] with extra flags and environment.
    pub fn start_with(
        dir: &Path,
        authorized: &[&Path],
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let authorized_keys = dir.join(unique("authorized_keys"));
        write_authorized_keys(&authorized_keys, authorized);
        Self::start_with_file(dir, authorized_keys, extra_args, envs)
    }

    /// A server in `dir` reading the `authorized_keys` file given.
    pub fn start_with_file(
        dir: &Path,
        authorized_keys: PathBuf,
        extra_args: &[&str],
        envs: &[(&str, &str)],
    ) -> Self {
        let host_key = keygen(dir, &unique("host"));
        let mut args = vec![
            "serve",
            "--key",
            host_key.to_str().expect("utf-8 temp path"),
            "--authorized-keys",
            authorized_keys.to_str().expect("utf-8 temp path"),
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra_args);
        let process = WraithProcess::spawn_env(&args, envs);
        let line = process.wait_for_line("listening on ", TIMEOUT);
        let addr = addr_after(&line, "listening on ");
        Self {
            process,
            addr,
            host_key,
            authorized_keys,
        }
    }

    /// Path of the host public key, usable as `--host-key`.
    pub fn host_pub(&self) -> PathBuf {
        pub_path(&self.host_key)
    }

    /// The `--host-key` argument pinning this server by its `.pub` file.
    pub fn host_pub_arg(&self) -> String {
        self.host_pub()
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }
}

/// A running `wraith connect` whose session is up (it printed
/// `connected to` and its SOCKS5 address).
pub struct WraithClient {
    pub process: WraithProcess,
    pub socks5: SocketAddr,
}

impl WraithClient {
    /// `wraith connect --server <server> --identity <identity> --host-key
    /// <host_key> --user <current user> --socks5 127.0.0.1:0 <extra>`.
    pub fn start(server: SocketAddr, identity: &Path, host_key: &str, extra: &[&str]) -> Self {
        let server = server.to_string();
        let user = current_user();
        let mut args = vec![
            "connect",
            "--server",
            &server,
            "--identity",
            identity.to_str().expect("utf-8 temp path"),
            "--host-key",
            host_key,
            "--user",
            &user,
            "--socks5",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::ready(WraithProcess::spawn(&args))
    }

    /// Waits for an already started `wraith connect` to report its session
    /// and SOCKS5 listener.
    pub fn ready(process: WraithProcess) -> Self {
        process.wait_for_line("connected to ", TIMEOUT);
        let line = process.wait_for_line("socks5 listening on ", TIMEOUT);
        let socks5 = addr_after(&line, "socks5 listening on ");
        Self { process, socks5 }
    }

    /// The local address of the next `--forward` not yet asked for, from its
    /// `forward listening on <addr> -> <target>` line.
    pub fn forward_addr(&self) -> SocketAddr {
        let line = self.process.wait_for_line("forward listening on ", TIMEOUT);
        addr_after(&line, "forward listening on ")
    }

    /// The server-side port of the next `--remote-forward` not yet asked
    /// for, from its `remote forward listening on <host:port> -> ...` line.
    pub fn remote_forward_port(&self) -> u16 {
        let line = self
            .process
            .wait_for_line("remote forward listening on ", TIMEOUT);
        port_after(&line, "remote forward listening on ")
    }
}

// ---------------------------------------------------------------------------
// OpenSSH

/// A stock OpenSSH `sshd` on a free 127.0.0.1 port, with its own config,
/// host key and authorized_keys in a temp dir; killed on drop.
pub struct Sshd {
    pub process: WraithProcess,
    pub addr: SocketAddr,
    /// Host private key (from ssh-keygen); the `.pub` is beside it.
    pub host_key: PathBuf,
    pub authorized_keys: PathBuf,
    /// The login user: the user running the tests.
    pub user: String,
    _dir: tempfile::TempDir,
}

impl Sshd {
    /// Starts sshd authorizing the given client keys for the current user.
    /// Retries on another port if the chosen one was taken meanwhile.
    pub fn start(authorized: &[&Path]) -> Self {
        // As root, sshd insists on its privilege-separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let dir = temp_dir();
        let host_key = ssh_keygen(dir.path(), "ssh_host_ed25519_key");
        let authorized_keys = dir.path().join("authorized_keys");
        write_authorized_keys(&authorized_keys, authorized);
        let config = dir.path().join("sshd_config");
        let mut last_failure = String::new();
        for _ in 0..5 {
            let port = free_port();
            fs::write(
                &config,
                format!(
                    "ListenAddress 127.0.0.1:{port}\n\
                     HostKey {host_key}\n\
                     AuthorizedKeysFile {authorized_keys}\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     AllowTcpForwarding yes\n\
                     AllowStreamLocalForwarding yes\n\
                     GatewayPorts no\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     PidFile none\n\
                     X11Forwarding no\n\
                     PrintMotd no\n\
                     LogLevel VERBOSE\n",
                    host_key = host_key.display(),
                    authorized_keys = authorized_keys.display(),
                ),
            )
            .expect("write sshd_config");
            let mut cmd = Command::new(SSHD);
            cmd.arg("-D").arg("-e").arg("-f").arg(&config);
            let process = WraithProcess::spawn_command(cmd);
            let ready = process.stderr.wait_for(Instant::now() + TIMEOUT, |text| {
                text.contains(&format!("Server listening on 127.0.0.1 port {port}"))
                    .then_some(())
            });
            if ready.is_some() {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                process.wait_for_port(addr, TIMEOUT);
                return Self {
                    process,
                    addr,
                    host_key,
                    authorized_keys,
                    user: current_user(),
                    _dir: dir,
                };
            }
            process.kill();
            last_failure = process.failure("sshd did not report that it is listening");
            if !process.stderr_text().contains("Address already in use") {
                break;
            }
        }
        panic!("{last_failure}");
    }

    /// Path of the host public key, usable as wraith's `--host-key`.
    pub fn host_pub(&self) -> PathBuf {
        pub_path(&self.host_key)
    }

    /// The `--host-key` argument pinning this sshd by its `.pub` file.
    pub fn host_pub_arg(&self) -> String {
        self.host_pub()
            .to_str()
            .expect("utf-8 temp path")
            .to_owned()
    }
}

/// Builds OpenSSH `ssh` commands for one server, isolated from the user's
/// configuration: `-F /dev/null`, batch mode, strict host key checking
/// against a known_hosts file holding only that server's key, and only the
/// given identity.
pub struct OpenSsh {
    pub server: SocketAddr,
    pub identity: PathBuf,
    pub known_hosts: PathBuf,
    pub user: String,
}

impl OpenSsh {
    /// `host_key` is the server's host key (private key path; its `.pub` is
    /// read); the known_hosts file is written into `dir`.
    pub fn new(dir: &Path, server: SocketAddr, host_key: &Path, identity: &Path) -> Self {
        let known_hosts = dir.join(unique("known_hosts"));
        write_known_hosts(&known_hosts, server, host_key);
        Self {
            server,
            identity: identity.to_owned(),
            known_hosts,
            user: current_user(),
        }
    }

    /// The fixed options every invocation gets.
    pub fn base_args(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            "-F",
            "/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "UpdateHostKeys=no",
            "-o",
            "CheckHostIP=no",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            "ConnectTimeout=10",
        ]
        .map(String::from)
        .into();
        args.push("-o".into());
        args.push(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        args.push("-i".into());
        args.push(self.identity.display().to_string());
        args.push("-p".into());
        args.push(self.server.port().to_string());
        args.push("-l".into());
        args.push(self.user.clone());
        args
    }

    /// `ssh <options> <base options> <server ip> <remote_command>`. The
    /// caller's options come first because ssh keeps the first value it sees
    /// for an option.
    pub fn command(&self, options: &[&str], remote_command: &[&str]) -> Command {
        let mut cmd = Command::new("ssh");
        scrub_env(&mut cmd);
        cmd.args(options)
            .args(self.base_args())
            .arg(self.server.ip().to_string())
            .args(remote_command);
        cmd
    }
}

impl OpenSsh {
    /// `ssh -N -D 127.0.0.1:<free port>`, once its SOCKS port accepts
    /// connections.
    pub fn dynamic_forward(&self) -> (WraithProcess, SocketAddr) {
        let socks = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let process =
            WraithProcess::spawn_command(self.command(&["-N", "-D", &socks.to_string()], &[]));
        process.wait_for_port(socks, TIMEOUT);
        (process, socks)
    }
}

// ---------------------------------------------------------------------------
// curl

fn curl(proxy_flag: &str, proxy: SocketAddr, url: &str) -> Output {
    let mut cmd = Command::new("curl");
    scrub_env(&mut cmd);
    // -q first: ignore any ~/.curlrc. --noproxy "": nothing bypasses the proxy.
    cmd.args([
        "-q",
        "--silent",
        "--show-error",
        "--fail",
        "--max-time",
        "15",
        "--noproxy",
        "",
        proxy_flag,
        &proxy.to_string(),
        url,
    ]);
    run(cmd, TIMEOUT)
}

/// `curl --socks5-hostname <proxy> <url>`: the host name goes to the proxy
/// unresolved (socks5h).
pub fn curl_socks5h(proxy: SocketAddr, url: &str) -> Output {
    curl("--socks5-hostname", proxy, url)
}

/// `curl --socks5 <proxy> <url>`: curl resolves the host itself and sends an
/// IP address.
pub fn curl_socks5(proxy: SocketAddr, url: &str) -> Output {
    curl("--socks5", proxy, url)
}

// ---------------------------------------------------------------------------
// Targets and sockets

/// A TCP server on 127.0.0.1 served by background threads for the rest of
/// the test process.
pub struct Target {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
}

impl Target {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn spawn_target(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
    serve_target(listener, handler)
}

/// [`spawn_target`] whose accepted connections have small kernel buffers
/// ([`LOAD_SOCKET_BUFFER`]), set on the listener so that they apply from
/// the handshake on.
fn spawn_load_target(handler: impl Fn(TcpStream) + Send + Sync + 'static) -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind target");
    small_socket_buffers(socket2::SockRef::from(&listener));
    serve_target(listener, handler)
}

fn serve_target(
    listener: TcpListener,
    handler: impl Fn(TcpStream) + Send + Sync + 'static,
) -> Target {
    let addr = listener.local_addr().expect("target address");
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = stream.set_read_timeout(Some(TIMEOUT));
            let _ = stream.set_write_timeout(Some(TIMEOUT));
            let handler = Arc::clone(&handler);
            thread::spawn(move || handler(stream));
        }
    });
    Target { addr, accepted }
}

/// Answers any HTTP request with `200 OK` and [`HTTP_BODY`], then closes.
pub fn http_target() -> Target {
    spawn_target(answer_http)
}

/// Reads one HTTP request head and answers `200 OK` with [`HTTP_BODY`].
pub fn answer_http(mut stream: TcpStream) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HTTP_BODY}",
        HTTP_BODY.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

/// Writes back everything it reads until the peer closes its side.
pub fn echo_target() -> Target {
    spawn_target(|mut stream| {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    })
}

/// Sends `data` to every connection, then closes it.
pub fn source_target(data: Arc<Vec<u8>>) -> Target {
    spawn_target(move |mut stream| {
        let _ = stream.write_all(&data);
    })
}

/// Deterministic pseudo-random bytes (xorshift64*), so transfers are not
/// trivially compressible or periodic.
pub fn pseudo_random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A port on 127.0.0.1 that was free a moment ago (bind to 0, then release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Polls until `addr` accepts TCP connections; panics after `timeout`.
pub fn wait_port<A: ToSocketAddrs + Debug>(addr: A, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "{addr:?} did not accept connections within {timeout:?}"
        );
        thread::sleep(POLL);
    }
}

/// Connects to `addr` (trying every address it resolves to), with read and
/// write timeouts set.
pub fn connect<A: ToSocketAddrs + Debug>(addr: A) -> TcpStream {
    let stream =
        TcpStream::connect(&addr).unwrap_or_else(|e| panic!("cannot connect to {addr:?}: {e}"));
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    stream
}

/// Sends `len` pseudo-random bytes to an echo service behind `addr` and
/// asserts the same bytes come back. Writing and reading run concurrently so
/// large payloads cannot deadlock on full buffers.
pub fn echo_round_trip<A: ToSocketAddrs + Debug>(addr: A, len: usize) {
    let payload = pseudo_random_bytes(len, len as u64 ^ 0x5eed);
    let mut stream = connect(&addr);
    let mut writer = stream.try_clone().expect("clone stream");
    let to_send = payload.clone();
    let sender = thread::spawn(move || writer.write_all(&to_send));
    let mut received = vec![0u8; len];
    let read = read_exact_by(&mut stream, &mut received, Instant::now() + TIMEOUT);
    sender
        .join()
        .expect("writer thread")
        .unwrap_or_else(|e| panic!("writing to {addr:?} failed: {e}"));
    if let Err(got) = read {
        panic!("echo via {addr:?}: connection ended after {got} of {len} bytes");
    }
    assert_same_bytes(&received, &payload, &format!("echo via {addr:?}"));
}

/// Fills `buf`; `Err(bytes_read)` if the stream ends or errs first or the
/// deadline passes.
pub fn read_exact_by(
    stream: &mut impl Read,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<(), usize> {
    let mut filled = 0;
    while filled < buf.len() {
        if Instant::now() >= deadline {
            return Err(filled);
        }
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(filled),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(filled),
        }
    }
    Ok(())
}

/// Connects to `addr` and reads until the peer closes; panics if that takes
/// longer than [`TIMEOUT`].
pub fn read_to_end_from<A: ToSocketAddrs + Debug>(addr: A) -> Vec<u8> {
    let mut stream = connect(&addr);
    let deadline = Instant::now() + TIMEOUT;
    let mut data = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "{addr:?} did not close within {TIMEOUT:?}"
        );
        match stream.read(&mut buf) {
            Ok(0) => return data,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("reading from {addr:?} after {} bytes: {e}", data.len()),
        }
    }
}

/// Asserts equality of two byte strings without dumping megabytes.
pub fn assert_same_bytes(got: &[u8], expected: &[u8], what: &str) {
    if got == expected {
        return;
    }
    let first_diff = got
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(expected.len()));
    panic!(
        "{what}: got {} bytes, expected {}; first difference at offset {first_diff}",
        got.len(),
        expected.len()
    );
}

// ---------------------------------------------------------------------------
// Destination leaks in logs

/// A port nobody listens on, outside Linux's default ephemeral range
/// (32768-60999), so no socket in this test can be given it as a source
/// port and mention it innocently.
pub fn unused_port_outside_ephemeral_range() -> u16 {
    let seed = std::process::id() as u16;
    (0..2000u16)
        .map(|i| 20000 + (seed.wrapping_add(i.wrapping_mul(7919)) % 10000))
        .find(|&port| TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("no free port in 20000..30000")
}

/// True if `port` appears in `text` as a number of its own right after a
/// separator (`:`, space, `=`, quote, bracket ...), e.g. `127.0.0.1:4711`,
/// `port=4711`, `port 4711`. Base64 and longer numbers do not count.
pub fn mentions_port(text: &str, port: u16) -> bool {
    let needle = port.to_string();
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        let separated_before = matches!(
            before,
            None | Some(':' | ' ' | '=' | '"' | '\'' | '(' | '[' | '{' | ',' | '\t' | '\n')
        );
        separated_before && !after.is_some_and(char::is_alphanumeric)
    })
}

// ---------------------------------------------------------------------------
// Flow-control load: targets that stream or never read, SOCKS5 by hand,
// progress and memory

/// Each load loop (a target streaming into a connection nobody reads, a
/// client uploading into a target that never reads) stops by itself after
/// this long, even if the test that started it forgot to.
pub const LOAD_TIME_LIMIT: Duration = Duration::from_secs(150);

/// ... or after moving this many bytes on one connection.
pub const LOAD_BYTE_LIMIT: u64 = 1 << 30;

/// How long one blocked write of a load loop waits before it looks at its
/// stop signal again.
const LOAD_WRITE_SLICE: Duration = Duration::from_millis(100);

/// SO_RCVBUF / SO_SNDBUF on the test's own ends of stalled connections
/// (the kernel doubles it). Loopback buffers otherwise grow to several MiB
/// per connection, so 64 stalled connections would park over a GiB in the
/// kernel, push TCP into memory pressure (`net.ipv4.tcp_mem`) and slow
/// every other connection of the machine, including the one under test.
/// wraith's own sockets keep their defaults.
pub const LOAD_SOCKET_BUFFER: usize = 64 * 1024;

/// Sets both kernel buffers of `socket` to [`LOAD_SOCKET_BUFFER`].
fn small_socket_buffers(socket: socket2::SockRef<'_>) {
    socket
        .set_recv_buffer_size(LOAD_SOCKET_BUFFER)
        .expect("SO_RCVBUF");
    socket
        .set_send_buffer_size(LOAD_SOCKET_BUFFER)
        .expect("SO_SNDBUF");
}

/// A one-way signal (unset → set) that threads can wait for with a timeout.
#[derive(Clone, Default)]
pub struct Latch(Arc<(Mutex<bool>, Condvar)>);

impl Latch {
    pub fn set(&self) {
        *self.0.0.lock().unwrap() = true;
        self.0.1.notify_all();
    }

    pub fn is_set(&self) -> bool {
        *self.0.0.lock().unwrap()
    }

    /// Waits until set or `timeout` passes; true if set.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = self.0.0.lock().unwrap();
        let (guard, _) = self
            .0
            .1
            .wait_timeout_while(guard, timeout, |set| !*set)
            .unwrap();
        *guard
    }
}

/// Bytes moved so far on each connection of a load, one counter per
/// connection in the order they started.
#[derive(Clone, Default)]
pub struct Progress(Arc<Mutex<Vec<Arc<AtomicU64>>>>);

impl Progress {
    /// A new counter for one more connection.
    pub fn add(&self) -> Arc<AtomicU64> {
        let counter = Arc::new(AtomicU64::new(0));
        self.0.lock().unwrap().push(Arc::clone(&counter));
        counter
    }

    /// Bytes per connection now.
    pub fn snapshot(&self) -> Vec<u64> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|counter| counter.load(Ordering::SeqCst))
            .collect()
    }

    pub fn total(&self) -> u64 {
        self.snapshot().iter().sum()
    }

    /// `"<total> MiB in all (<min> to <max> MiB per connection)"`.
    pub fn describe(&self) -> String {
        let each = self.snapshot();
        format!(
            "{} in all, {} to {} per connection",
            mib(each.iter().sum::<u64>()),
            mib(each.iter().min().copied().unwrap_or(0)),
            mib(each.iter().max().copied().unwrap_or(0))
        )
    }

    /// Polls until no counter has moved for `quiet` (the load stalled: the
    /// receivers stopped taking bytes) and returns the total then; `Err`
    /// with the progress seen if that does not happen within `timeout`.
    /// `on_poll` runs at every poll (e.g. to sample memory).
    pub fn wait_until_quiet(
        &self,
        quiet: Duration,
        timeout: Duration,
        mut on_poll: impl FnMut(),
    ) -> Result<u64, String> {
        let start = Instant::now();
        let mut last = self.snapshot();
        let mut last_change = start;
        loop {
            on_poll();
            let now = Instant::now();
            let current = self.snapshot();
            if current != last {
                last = current;
                last_change = now;
            } else if now - last_change >= quiet {
                return Ok(last.iter().sum());
            }
            if now - start >= timeout {
                return Err(format!(
                    "the load kept moving for {timeout:?} without stalling: {}",
                    self.describe()
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A target that, once [`StreamingTarget::release`] is called, writes to
/// every connection as fast as the connection takes bytes, without pause,
/// until the target is dropped (or [`LOAD_TIME_LIMIT`] /
/// [`LOAD_BYTE_LIMIT`]). Holding the data back until release lets a test
/// open all its channels before any of them stalls.
pub struct StreamingTarget {
    pub target: Target,
    /// Bytes written to each connection.
    pub written: Progress,
    release: Latch,
    stop: Latch,
}

impl StreamingTarget {
    pub fn start() -> Self {
        let written = Progress::default();
        let release = Latch::default();
        let stop = Latch::default();
        let (counters, go, halt) = (written.clone(), release.clone(), stop.clone());
        let target = spawn_load_target(move |mut stream| {
            let counter = counters.add();
            let start = Instant::now();
            if !go.wait(LOAD_TIME_LIMIT) || halt.is_set() {
                return;
            }
            let _ = stream.set_write_timeout(Some(LOAD_WRITE_SLICE));
            let chunk = pseudo_random_bytes(64 * 1024, 0x57ea);
            while !halt.is_set()
                && start.elapsed() < LOAD_TIME_LIMIT
                && counter.load(Ordering::SeqCst) < LOAD_BYTE_LIMIT
            {
                match stream.write(&chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                        ) => {}
                    Err(_) => return,
                }
            }
        });
        Self {
            target,
            written,
            release,
            stop,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.target.addr
    }

    /// Lets every connection, present and future, start streaming.
    pub fn release(&self) {
        self.release.set();
    }
}

impl Drop for StreamingTarget {
    fn drop(&mut self) {
        self.stop.set();
    }
}

/// A target that accepts connections and never reads from them; each is
/// held open until the target is dropped (or [`LOAD_TIME_LIMIT`]).
pub struct NeverReadingTarget {
    pub target: Target,
    stop: Latch,
}

impl NeverReadingTarget {
    pub fn start() -> Self {
        let stop = Latch::default();
        let halt = stop.clone();
        let target = spawn_load_target(move |stream| {
            halt.wait(LOAD_TIME_LIMIT);
            drop(stream);
        });
        Self { target, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.target.addr
    }
}

impl Drop for NeverReadingTarget {
    fn drop(&mut self) {
        self.stop.set();
    }
}

/// Reads until it has `expect` bytes (or EOF, or a read stalls for
/// [`TIMEOUT`]), then answers with the count as 8 bytes big-endian and
/// closes. Lets a test check an upload's byte count without relying on
/// half-close.
pub fn counting_sink_target(expect: u64) -> Target {
    spawn_target(move |mut stream| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        while got < expect {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got += n as u64,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = stream.write_all(&got.to_be_bytes());
    })
}

/// Writes to `stream` as fast as it takes bytes, counting them in
/// `counter`, until `stop` is set, the stream fails, or the load limits
/// are reached. Runs on its own thread; join the handle after `stop`.
pub fn spawn_uploader(
    mut stream: TcpStream,
    counter: Arc<AtomicU64>,
    stop: Latch,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let _ = stream.set_write_timeout(Some(LOAD_WRITE_SLICE));
        let chunk = pseudo_random_bytes(64 * 1024, 0x0091_0ad5);
        let start = Instant::now();
        while !stop.is_set()
            && start.elapsed() < LOAD_TIME_LIMIT
            && counter.load(Ordering::SeqCst) < LOAD_BYTE_LIMIT
        {
            match stream.write(&chunk) {
                Ok(0) => return,
                Ok(n) => {
                    counter.fetch_add(n as u64, Ordering::SeqCst);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return,
            }
        }
    })
}

/// A SOCKS5 CONNECT (no auth) through `proxy` to the IPv4 `target`, all
/// within `timeout`. `Err` says which step failed and when, e.g.
/// `"SOCKS reply 6 after 3.1s"` or `"no SOCKS reply within 5s"`.
pub fn socks5_open(
    proxy: SocketAddr,
    target: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, String> {
    socks5_open_with(proxy, target, timeout, false)
}

/// [`socks5_open`] for one connection of a load that will stall: its
/// kernel buffers are [`LOAD_SOCKET_BUFFER`] from the handshake on.
pub fn socks5_open_for_load(
    proxy: SocketAddr,
    target: SocketAddr,
    timeout: Duration,
) -> Result<TcpStream, String> {
    socks5_open_with(proxy, target, timeout, true)
}

fn socks5_open_with(
    proxy: SocketAddr,
    target: SocketAddr,
    timeout: Duration,
    small_buffers: bool,
) -> Result<TcpStream, String> {
    let start = Instant::now();
    let SocketAddr::V4(v4) = target else {
        return Err(format!("{target} is not an IPv4 address"));
    };
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .map_err(|e| format!("cannot create a socket: {e}"))?;
    if small_buffers {
        small_socket_buffers(socket2::SockRef::from(&socket));
    }
    socket
        .connect_timeout(&proxy.into(), timeout)
        .map_err(|e| format!("cannot connect to the SOCKS port {proxy}: {e}"))?;
    let mut stream = TcpStream::from(socket);
    let _ = stream.set_nodelay(true);
    let step = |stream: &mut TcpStream, what: &str, send: &[u8], reply: &mut [u8]| {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(format!("no {what} within {timeout:?}"));
        }
        stream.set_read_timeout(Some(left)).expect("read timeout");
        stream.set_write_timeout(Some(left)).expect("write timeout");
        stream
            .write_all(send)
            .map_err(|e| format!("sending the {what} request failed: {e}"))?;
        stream.read_exact(reply).map_err(|e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                format!("no {what} within {timeout:?}")
            }
            _ => format!(
                "the SOCKS server closed before its {what} ({e}) after {:.2?}",
                start.elapsed()
            ),
        })
    };
    let mut method = [0u8; 2];
    step(&mut stream, "SOCKS method reply", &[5, 1, 0], &mut method)?;
    if method != [5, 0] {
        return Err(format!("SOCKS method reply {method:?}"));
    }
    let mut request = vec![5, 1, 0, 1];
    request.extend_from_slice(&v4.ip().octets());
    request.extend_from_slice(&v4.port().to_be_bytes());
    // VER REP RSV ATYP, then the bound address; every server here answers
    // with an IPv4 (or, rarely, IPv6) bound address.
    let mut head = [0u8; 4];
    step(&mut stream, "SOCKS reply", &request, &mut head)?;
    if head[1] != 0 {
        return Err(format!(
            "SOCKS reply {} after {:.2?}",
            head[1],
            start.elapsed()
        ));
    }
    let rest = match head[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        other => return Err(format!("SOCKS reply with address type {other}")),
    };
    let mut bound = vec![0u8; rest];
    step(&mut stream, "SOCKS bound address", &[], &mut bound)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    Ok(stream)
}

/// Resident memory of process `pid` in bytes (`VmRSS` in
/// `/proc/<pid>/status`); `None` if the process is gone. Bytes queued in
/// kernel socket buffers are not part of it: RSS measures what the process
/// buffers in user space.
pub fn vm_rss(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The largest [`vm_rss`] seen of one process since it was created.
pub struct RssPeak {
    pub pid: u32,
    pub baseline: u64,
    pub peak: u64,
}

impl RssPeak {
    /// Starts watching `pid`; its RSS now is the baseline.
    pub fn new(pid: u32) -> Self {
        let baseline = vm_rss(pid).unwrap_or_else(|| panic!("process {pid} has no VmRSS"));
        Self {
            pid,
            baseline,
            peak: baseline,
        }
    }

    pub fn sample(&mut self) {
        if let Some(rss) = vm_rss(self.pid) {
            self.peak = self.peak.max(rss);
        }
    }

    /// Peak minus baseline.
    pub fn growth(&self) -> u64 {
        self.peak.saturating_sub(self.baseline)
    }
}

/// `n` bytes as MiB with one decimal, for messages.
pub fn mib(n: u64) -> String {
    format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
}

/// The last `lines` lines of `text`, for assertion messages about noisy
/// processes.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------
// Network namespaces

/// Runs `ip <args>`; true when it succeeded.
pub fn ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// A network namespace of the test's own, joined to this one by a veth
/// pair on the private /30 `10.<net>.<n>.0` (`.1` here, `.2` there); both
/// go on drop. Needs root: outside CI a test without it is skipped, under
/// `CI=true` it fails.
pub struct VethNetns {
    pub name: String,
    /// This side's interface.
    pub host_if: String,
    /// The namespace's interface.
    pub ns_if: String,
    /// This side's address, without the prefix length.
    pub host_ip: String,
    /// The namespace's address.
    pub ns_ip: String,
}

impl VethNetns {
    /// `prefix` names the namespace and its interfaces (a few letters,
    /// unique per test binary); `net` is the second octet of its subnet;
    /// `tag` tells apart the namespaces of one process.
    pub fn create(prefix: &str, net: u8, tag: u32) -> Option<VethNetns> {
        if !require_tool("ip") {
            return None;
        }
        let id = (std::process::id() + tag) % 10_000;
        let octet = (id % 250) + 1;
        let ns = VethNetns {
            name: format!("wraith-{prefix}{id}"),
            host_if: format!("{prefix}h{id}"),
            ns_if: format!("{prefix}n{id}"),
            host_ip: format!("10.{net}.{octet}.1"),
            ns_ip: format!("10.{net}.{octet}.2"),
        };
        let host_cidr = format!("{}/30", ns.host_ip);
        let steps: [&[&str]; 5] = [
            &["netns", "add", &ns.name],
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns.ns_if,
            ],
            &["link", "set", &ns.ns_if, "netns", &ns.name],
            &["addr", "add", &host_cidr, "dev", &ns.host_if],
            &["link", "set", &ns.host_if, "up"],
        ];
        for args in steps {
            if !ip(args) {
                if env::var("CI").as_deref() == Ok("true") {
                    panic!(
                        "cannot set up the network namespace (ip {args:?}); CI must run as root"
                    );
                }
                eprintln!("skipping: cannot create network namespaces here (need root)");
                return None;
            }
        }
        let ns_cidr = format!("{}/30", ns.ns_ip);
        for args in [
            ["addr", "add", &ns_cidr, "dev", &ns.ns_if].as_slice(),
            &["link", "set", &ns.ns_if, "up"],
            &["link", "set", "lo", "up"],
        ] {
            assert!(ns.ip(args), "ip {args:?} in {}", ns.name);
        }
        Some(ns)
    }

    /// Runs `ip <args>` inside the namespace.
    pub fn ip(&self, args: &[&str]) -> bool {
        let mut full = vec!["netns", "exec", &self.name, "ip"];
        full.extend_from_slice(args);
        ip(&full)
    }

    /// `program` to be run inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }
}

impl Drop for VethNetns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

// ---------------------------------------------------------------------------
// TLS certificates, made with the openssl CLI

/// A test CA and a leaf certificate for `localhost` / 127.0.0.1 it signed,
/// all made with the openssl CLI.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl_in(dir: &Path, args: &[&str]) -> String {
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir).args(args);
    let out = run(cmd, TIMEOUT);
    expect_success(&out, &format!("openssl {}", args.join(" ")))
}

pub fn make_certs(dir: &Path, name: &str) -> Certs {
    let d = dir.join(name);
    fs::create_dir_all(&d).expect("cert dir");
    openssl_in(
        &d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=wraith test CA",
        ],
    );
    openssl_in(
        &d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext.cnf");
    openssl_in(
        &d,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    Certs {
        ca: d.join("ca.pem"),
        cert: d.join("cert.pem"),
        key: d.join("key.pem"),
    }
}

// ---------------------------------------------------------------------------
// nginx

/// A Debian nginx run in the foreground as the test user, on a free
/// 127.0.0.1 port, everything it writes under `root`.
pub struct NginxProcess {
    pub process: WraithProcess,
    pub addr: SocketAddr,
    pub root: PathBuf,
}

/// Starts nginx with `http(root, port)` as the body of its `http { }`
/// block (after the temp paths, which all point under `root`).
pub fn start_nginx_with(dir: &Path, http: impl FnOnce(&Path, u16) -> String) -> NginxProcess {
    let root = dir.join(unique("nginx"));
    fs::create_dir_all(&root).expect("nginx dir");
    let port = free_port();
    let body = http(&root, port);
    let conf = root.join("nginx.conf");
    fs::write(
        &conf,
        format!(
            "worker_processes 1;\n\
             pid {root}/nginx.pid;\n\
             error_log {root}/error.log;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n\
               client_body_temp_path {root}/body;\n\
               proxy_temp_path {root}/proxy;\n\
               fastcgi_temp_path {root}/fastcgi;\n\
               uwsgi_temp_path {root}/uwsgi;\n\
               scgi_temp_path {root}/scgi;\n\
             {body}\
             }}\n",
            root = root.display(),
        ),
    )
    .expect("write nginx.conf");
    let mut cmd = Command::new("nginx");
    cmd.arg("-e")
        .arg(root.join("error.log"))
        .arg("-c")
        .arg(&conf)
        .args(["-g", "daemon off;"]);
    let process = WraithProcess::spawn_command(cmd);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    process.wait_for_port(addr, TIMEOUT);
    NginxProcess {
        process,
        addr,
        root,
    }
}

//! The processes under test (wraith, ssh, sshd), run as users run them: a
//! separate program with its own arguments, stdout and stderr captured. Also
//! what the bench reads about them from /proc: resident memory, CPU time and
//! child processes. Every wait here has a deadline; a process is killed when
//! its handle is dropped, so a failed tunnel never outlives its row.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::{Instant, timeout_at};

/// Stderr lines kept from the start and from the end of a process's output.
const STDERR_KEPT: usize = 100;

/// How the bench starts the programs under test.
#[derive(Clone, Debug)]
pub(crate) enum Launcher {
    /// As users run them.
    Plain,
    /// Under valgrind's callgrind, which counts every instruction they
    /// execute (a figure the machine's load does not change). Profiles go to
    /// `dir/<name>.<pid>`; `callgrind_control` zeroes and dumps them.
    Callgrind {
        valgrind: std::path::PathBuf,
        dir: std::path::PathBuf,
    },
}

impl Launcher {
    /// The command that runs `program`; `follow_children` profiles what it
    /// forks and executes too (sshd).
    pub(crate) fn command(
        &self,
        program: &std::path::Path,
        name: &str,
        follow_children: bool,
    ) -> Command {
        match self {
            Launcher::Plain => crate::tools::command(program),
            Launcher::Callgrind { valgrind, dir } => {
                let mut cmd = crate::tools::command(valgrind);
                // Uncompressed names: each dump then stands alone for
                // callgrind_annotate (compressed ones refer to earlier dumps).
                cmd.args(["--tool=callgrind", "--quiet", "--compress-strings=no"])
                    .arg(format!(
                        "--callgrind-out-file={}",
                        dir.join(format!("{name}.%p")).display()
                    ))
                    .arg(format!(
                        "--trace-children={}",
                        if follow_children { "yes" } else { "no" }
                    ))
                    .arg(program);
                cmd
            }
        }
    }

    /// How much longer than usual startup may take.
    pub(crate) fn slowdown(&self) -> u32 {
        match self {
            Launcher::Plain => 1,
            Launcher::Callgrind { .. } => 6,
        }
    }
}

/// A running child process, killed on drop.
pub(crate) struct Proc {
    label: String,
    pid: u32,
    child: Child,
    output: Arc<Mutex<Captured>>,
    changed: watch::Receiver<u64>,
}

#[derive(Default)]
struct Captured {
    stdout: Vec<String>,
    stderr_head: Vec<String>,
    stderr_tail: VecDeque<String>,
    open_pipes: u8,
}

impl Captured {
    fn stderr_lines(&self) -> impl Iterator<Item = &String> {
        self.stderr_head.iter().chain(self.stderr_tail.iter())
    }
}

impl Proc {
    /// Starts `cmd` with stdin closed and stdout/stderr captured.
    pub(crate) fn spawn(label: &str, mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {label}: {cmd:?}"))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("{label} exited before it could be observed"))?;
        let output = Arc::new(Mutex::new(Captured {
            open_pipes: 2,
            ..Captured::default()
        }));
        let (tx, changed) = watch::channel(0u64);
        let tx = Arc::new(tx);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(collect(out, false, output.clone(), tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(collect(err, true, output.clone(), tx));
        }
        Ok(Self {
            label: label.to_string(),
            pid,
            child,
            output,
            changed,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Waits until stdout holds `count` lines starting with `prefix` and
    /// returns them (prefix removed).
    pub(crate) async fn stdout_lines(
        &mut self,
        prefix: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<String>> {
        self.wait_for(
            timeout,
            &format!("{count} stdout line(s) {prefix:?}"),
            |c| {
                let found: Vec<String> = c
                    .stdout
                    .iter()
                    .filter_map(|l| l.strip_prefix(prefix).map(str::to_string))
                    .collect();
                (found.len() >= count).then_some(found)
            },
        )
        .await
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub(crate) async fn stderr_line(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for(
            timeout,
            &format!("stderr line containing {needle:?}"),
            |c| c.stderr_lines().find(|l| l.contains(needle)).cloned(),
        )
        .await
    }

    async fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut(&Captured) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            let closed = {
                let c = self
                    .output
                    .lock()
                    .map_err(|_| anyhow!("output lock poisoned"))?;
                if let Some(found) = check(&c) {
                    return Ok(found);
                }
                c.open_pipes == 0
            };
            if closed {
                let status = match timeout_at(deadline, self.child.wait()).await {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "still running".to_string(),
                };
                bail!(
                    "{} closed its output ({status}) before printing {what}{}",
                    self.label,
                    self.stderr_excerpt()
                );
            }
            match timeout_at(deadline, self.changed.changed()).await {
                Ok(_) => {}
                Err(_) => bail!(
                    "{} did not print {what} within {timeout:?}{}",
                    self.label,
                    self.stderr_excerpt()
                ),
            }
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub(crate) fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The last stderr lines, for error messages ("" if none).
    pub(crate) fn stderr_excerpt(&self) -> String {
        let Ok(c) = self.output.lock() else {
            return String::new();
        };
        let lines: Vec<&String> = c.stderr_lines().collect();
        if lines.is_empty() {
            return String::new();
        }
        let mut out = String::from("; its stderr ends:");
        for l in &lines[lines.len().saturating_sub(5)..] {
            let _ = write!(out, "\n    {l}");
        }
        out
    }

    /// Kills the process and waits (bounded) for it to be reaped.
    pub(crate) async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

async fn collect(
    pipe: impl AsyncRead + Unpin,
    is_stderr: bool,
    output: Arc<Mutex<Captured>>,
    tx: Arc<watch::Sender<u64>>,
) {
    let mut lines = BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut c) = output.lock() {
            if !is_stderr {
                c.stdout.push(line);
            } else if c.stderr_head.len() < STDERR_KEPT {
                c.stderr_head.push(line);
            } else {
                if c.stderr_tail.len() == STDERR_KEPT {
                    c.stderr_tail.pop_front();
                }
                c.stderr_tail.push_back(line);
            }
        }
        tx.send_modify(|v| *v += 1);
    }
    if let Ok(mut c) = output.lock() {
        c.open_pipes = c.open_pipes.saturating_sub(1);
    }
    tx.send_modify(|v| *v += 1);
}

/// Sends SIGKILL to `pid`, a process the bench started (directly or as a
/// descendant of one it started).
pub(crate) fn kill_pid(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(raw),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

// ---------------------------------------------------------------------------
// /proc

/// Fields of /proc/<pid>/stat after the command name.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses; it ends at the
    // last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Parent pid (field 4 of stat; index 1 after the name).
fn parent(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(1)?.parse().ok()
}

/// User plus system CPU time of a live process, in clock ticks (fields 14
/// and 15 of stat).
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second for [`cpu_ticks`].
pub(crate) fn clock_ticks_per_second() -> u64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => u64::try_from(t).unwrap_or(100),
        // USER_HZ is 100 on every Linux architecture the bench runs on.
        _ => 100,
    }
}

/// Resident set size in KiB (VmRSS of /proc/<pid>/status).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&text)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// All live descendants of `root` (children, grandchildren, ...).
pub(crate) fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Some(ppid) = parent(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(p) = queue.pop() {
        if let Some(kids) = children.get(&p) {
            out.extend(kids);
            queue.extend(kids);
        }
    }
    out.sort_unstable();
    out
}

/// Watches how much CPU other workloads on the machine use while the bench
/// runs, so a run on a busy machine says so. It samples every process
/// outside the bench's own tree (the bench, the tunnels and what they fork)
/// and outside the kernel's threads twice a second; a process that lives
/// shorter than that between two samples is missed, so this is a lower
/// bound. The sampling task stops when this is dropped.
pub(crate) struct OtherLoad {
    ticks: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl OtherLoad {
    pub(crate) fn start() -> Self {
        use std::sync::atomic::Ordering;
        let ticks = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let total = ticks.clone();
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            let mut prev = other_processes();
            loop {
                every.tick().await;
                let now = other_processes();
                total.fetch_add(other_delta(&prev, &now), Ordering::Relaxed);
                prev = now;
            }
        });
        Self { ticks, task }
    }

    /// CPU ticks other processes used since [`OtherLoad::start`].
    pub(crate) fn ticks(&self) -> u64 {
        self.ticks.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for OtherLoad {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// pid → (start time, utime + stime) of every process not ours and not a
/// kernel thread.
fn other_processes() -> HashMap<u32, (u64, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    let me = std::process::id();
    let mut procs = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Some(f) = stat_fields(pid) else { continue };
        let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        // ppid (field 4), utime and stime (14, 15), starttime (22).
        procs.push((pid, num(1), num(19), num(11) + num(12)));
    }
    let ours: std::collections::HashSet<u32> = descendants(me).into_iter().chain([me]).collect();
    procs
        .into_iter()
        .filter(|&(pid, ppid, ..)| pid != 2 && ppid != 2 && !ours.contains(&pid))
        .map(|(pid, _, start, ticks)| (pid, (start, ticks)))
        .collect()
}

/// Ticks spent between two samples: growth of processes in both, all of a
/// process that started in between (a reused pid has another start time).
fn other_delta(prev: &HashMap<u32, (u64, u64)>, now: &HashMap<u32, (u64, u64)>) -> u64 {
    now.iter()
        .map(|(pid, &(start, ticks))| match prev.get(pid) {
            Some(&(s, t)) if s == start => ticks.saturating_sub(t),
            _ => ticks,
        })
        .sum()
}

/// Number of file descriptors this process has open.
pub(crate) fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// The processes that make up one side (client or server) of a tunnel.
#[derive(Clone, Debug)]
pub(crate) enum Side {
    /// One process (wraith, ssh).
    Process(u32),
    /// Everything forked below a listener (sshd's per-connection monitor
    /// and session processes), not the listener itself.
    ChildrenOf(u32),
}

impl Side {
    pub(crate) fn pids(&self) -> Vec<u32> {
        match self {
            Side::Process(p) => vec![*p],
            Side::ChildrenOf(p) => descendants(*p),
        }
    }

    /// Summed RSS in KiB; `None` if no process could be read.
    pub(crate) fn rss_kib(&self) -> Option<u64> {
        let values: Vec<u64> = self.pids().into_iter().filter_map(rss_kib).collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// CPU ticks per live process.
    pub(crate) fn cpu_snapshot(&self) -> HashMap<u32, u64> {
        self.pids()
            .into_iter()
            .filter_map(|p| cpu_ticks(p).map(|t| (p, t)))
            .collect()
    }
}

/// CPU ticks spent between two snapshots of the same side. A process that
/// exited in between is not counted (its last ticks are not readable).
pub(crate) fn cpu_delta(before: &HashMap<u32, u64>, after: &HashMap<u32, u64>) -> u64 {
    after
        .iter()
        .map(|(pid, t)| t.saturating_sub(before.get(pid).copied().unwrap_or(0)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tsshd\nVmPeak:\t  9000 kB\nVmRSS:\t    5120 kB\nThreads:\t1\n";
        assert_eq!(parse_vm_rss(status), Some(5120));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|r| r > 0));
        assert!(cpu_ticks(me).is_some());
        assert_eq!(parent(me), Some(std::os::unix::process::parent_id()));
    }

    #[test]
    fn other_load_counts_growth_and_new_processes_once() {
        let prev = HashMap::from([(10, (100, 50)), (11, (100, 7))]);
        // 10 grew by 5; 11 exited; 12 is new; 13 reused pid 11's slot later.
        let now = HashMap::from([(10, (100, 55)), (12, (300, 4)), (11, (400, 2))]);
        assert_eq!(other_delta(&prev, &now), 5 + 4 + 2);
    }

    #[test]
    fn cpu_delta_counts_new_and_grown_processes() {
        let before = HashMap::from([(1, 10), (2, 5)]);
        let after = HashMap::from([(1, 15), (3, 7)]);
        assert_eq!(cpu_delta(&before, &after), 5 + 7);
    }
}

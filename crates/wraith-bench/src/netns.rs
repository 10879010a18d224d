//! A network namespace for the iroh client of the long-path figure, joined
//! to this one by a veth pair, removed on drop.
//!
//! Why: iroh hole-punches. The server announces its own addresses over the
//! QUIC connection and the client opens a second path to them, which on one
//! machine is a loopback shortcut around the UDP delay line (it would then
//! measure loopback, not the long path). In its own namespace the client
//! reaches only the host end of the veth pair, where the delay line
//! listens; the server's announced 127.0.0.1 address is the namespace's own
//! loopback, where nobody answers, and what the server sends from 127.0.0.1
//! to the client's announced address is dropped on arrival (a loopback
//! source from outside). So the delay line stays the only path, as it would
//! be on a real long path.
//!
//! The host end has `route_localnet` on: without it the kernel refuses
//! those sends from 127.0.0.1 with EINVAL, and noq (iroh's QUIC) answers
//! EINVAL by turning off segmentation offload on its socket, which loses
//! the batched packets already queued and leaves the server's congestion
//! window collapsed for the rest of the run.
//!
//! It needs root (CAP_NET_ADMIN) and iproute2's `ip`. It must never touch
//! anything it did not create: names carry this process's id, addresses
//! come from 100.64.0.0/10 (shared address space, not routed on a LAN),
//! and namespaces left by a bench that was killed are removed only when
//! their process id no longer runs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

use crate::tools::{command, run_once};

/// Prefix of every namespace this bench creates.
const PREFIX: &str = "wraith-bench-";

/// Namespaces created by this process so far (names and subnets).
static CREATED: AtomicU32 = AtomicU32::new(0);

/// A namespace with one veth link to this one: `host_ip` on this side,
/// `ns_ip` inside.
pub(crate) struct ClientNetns {
    ip: PathBuf,
    name: String,
    host_ip: Ipv4Addr,
    ns_ip: Ipv4Addr,
}

/// The /30 for namespace number `n` of process `pid` inside 100.64.0.0/10:
/// (host end, namespace end).
fn subnet(pid: u32, n: u32) -> (Ipv4Addr, Ipv4Addr) {
    let index = (((pid & 0xffff) << 4) | (n & 0xf)) & 0xf_ffff;
    let base = u32::from(Ipv4Addr::new(100, 64, 0, 0)) + index * 4;
    (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2))
}

impl ClientNetns {
    /// Creates the namespace and its link (with `ip` at `ip`).
    pub(crate) async fn create(ip: &Path) -> Result<Self> {
        remove_stale(ip).await;
        let pid = std::process::id();
        let n = CREATED.fetch_add(1, Ordering::Relaxed);
        let (host_ip, ns_ip) = subnet(pid, n);
        let ns = Self {
            ip: ip.to_path_buf(),
            name: format!("{PREFIX}{pid}-{n}"),
            host_ip,
            ns_ip,
        };
        // Interface names are at most 15 bytes.
        let host_if = format!("wbh{pid:x}{:x}", n & 0xf);
        let ns_if = format!("wbn{pid:x}{:x}", n & 0xf);
        let name = ns.name.clone();
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), name.clone()],
            // From here on Drop removes the namespace, and with it the
            // veth pair (deleting one end deletes the other).
            strings(&[
                "link", "add", &host_if, "mtu", "65535", "type", "veth", "peer", "name", &ns_if,
                "mtu", "65535", "netns", &name,
            ]),
            strings(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_if]),
            strings(&["link", "set", &host_if, "up"]),
            strings(&["-n", &name, "link", "set", "lo", "up"]),
            strings(&[
                "-n",
                &name,
                "addr",
                "add",
                &format!("{ns_ip}/30"),
                "dev",
                &ns_if,
            ]),
            strings(&["-n", &name, "link", "set", &ns_if, "up"]),
        ];
        for args in steps {
            let mut cmd = command(ip);
            cmd.args(&args);
            run_once(cmd, &format!("ip {}", args.join(" ")))
                .await
                .context(
                    "a network namespace keeps the iroh client on the delay line; \
                     it needs root and iproute2 (`ip`)",
                )?;
        }
        // Only on this link, which goes away with the namespace.
        let knob = format!("/proc/sys/net/ipv4/conf/{host_if}/route_localnet");
        std::fs::write(&knob, "1").with_context(|| format!("cannot write {knob}"))?;
        Ok(ns)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The `ip` program, which also runs commands inside (`ip netns exec`).
    pub(crate) fn ip_tool(&self) -> &Path {
        &self.ip
    }

    /// This side's address on the link (where the delay line listens).
    pub(crate) fn host_ip(&self) -> Ipv4Addr {
        self.host_ip
    }

    /// The namespace's address on the link (where its client listens).
    pub(crate) fn ns_ip(&self) -> Ipv4Addr {
        self.ns_ip
    }
}

impl Drop for ClientNetns {
    fn drop(&mut self) {
        // Synchronous: Drop cannot wait on the runtime, and this is quick.
        let _ = std::process::Command::new(&self.ip)
            .args(["netns", "del", &self.name])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The process id in a name this bench gave a namespace.
fn owner(name: &str) -> Option<u32> {
    name.strip_prefix(PREFIX)?.split('-').next()?.parse().ok()
}

/// Removes namespaces of earlier benches that were killed before they
/// could clean up (their process id no longer runs).
async fn remove_stale(ip: &Path) {
    let mut cmd = command(ip);
    cmd.args(["netns", "list"]);
    let Ok(list) = run_once(cmd, "ip netns list").await else {
        return;
    };
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if let Some(pid) = owner(name)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let mut cmd = command(ip);
            cmd.args(["netns", "del", name]);
            let _ = run_once(cmd, "ip netns del").await;
        }
    }
}

/// Whether this process may create namespaces at all (effective uid 0);
/// saying so up front gives a clearer error than a failed `ip` call.
pub(crate) fn check_allowed(ip: Option<&Path>) -> Result<PathBuf> {
    let Some(ip) = ip else {
        bail!(
            "iroh over a delay line runs its client in a network namespace (so hole punching \
             cannot bypass the delay): iproute2's `ip` is not installed"
        );
    };
    if effective_uid() != Some(0) {
        bail!(
            "iroh over a delay line runs its client in a network namespace (so hole punching \
             cannot bypass the delay), which needs root"
        );
    }
    Ok(ip.to_path_buf())
}

/// The effective uid, from /proc/self/status (`Uid: real effective ...`).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_are_distinct_per_namespace_and_inside_shared_address_space() {
        let (h0, n0) = subnet(4242, 0);
        let (h1, _) = subnet(4242, 1);
        assert_eq!((u32::from(n0) - u32::from(h0)), 1);
        assert_ne!(h0, h1);
        for (pid, n) in [(1, 0), (4_194_304, 15), (0xffff, 0xf)] {
            let (h, ns) = subnet(pid, n);
            for a in [h, ns] {
                let o = a.octets();
                assert!(o[0] == 100 && (64..128).contains(&o[1]), "{a}");
            }
        }
    }

    #[test]
    fn stale_namespaces_are_recognised_by_owner_only() {
        assert_eq!(owner("wraith-bench-1234-0"), Some(1234));
        assert_eq!(owner("wraith-t1234"), None);
        assert_eq!(owner("something-else"), None);
    }
}

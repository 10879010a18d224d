//! The server's side of key policy: what needs the host. The rules
//! themselves — authorized_keys options, `permitopen` / `permitlisten`
//! patterns, socket rules, certificate checks, the session policy — are
//! pure and live in `proto` (`authorized_keys`, `policy`, `certificate`);
//! the types the CLI and embedders name are re-exported here. What stays
//! is the host's time zone, which `expiry-time=` without `Z` is read in.
//! Socket paths are canonicalised on disk where they are dialed
//! (`handler`).

pub use crate::proto::authorized_keys::KeyOptions;
pub use crate::proto::policy::{HostPattern, SocketRule};

/// The server's time zone (`TZ`, `/etc/localtime`) as a
/// [`LocalZone`](crate::proto::time::LocalZone): a local wall-clock time
/// (seconds as if it were UTC) to unix seconds. A time that occurs twice
/// (clocks going back) takes the earlier instant; one that never occurs
/// (clocks going forward) is `None`.
pub(crate) fn local_to_unix(wall: u64) -> Option<u64> {
    use chrono::TimeZone;
    let naive = chrono::DateTime::from_timestamp(i64::try_from(wall).ok()?, 0)?.naive_utc();
    let local = chrono::Local.from_local_datetime(&naive).earliest()?;
    u64::try_from(local.timestamp()).ok()
}

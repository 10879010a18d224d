//! OpenSSH user certificates, checked without I/O against the
//! authorized_keys line of the CA that signed them: type, validity window,
//! the CA line's own `from=` / `expiry-time=`, principals (the login name,
//! and the line's `principals=`), critical options (`source-address`
//! enforced, `force-command` accepted and ignored — a tunnel server runs no
//! commands — anything else refused) and the `permit-port-forwarding`
//! extension. Finding that CA line is [`super::authorized_keys`]'s; the
//! caller supplies the clock.
//!
//! Reasons returned from here reach the log: they may name options and
//! principals, never a channel's destination.

use std::net::IpAddr;

use russh::keys::Certificate;
use russh::keys::ssh_key::certificate::CertType;

use super::authorized_keys::KeyOptions;
use super::policy::{SessionPolicy, cidr_contains};

/// Critical options we understand. Anything else in a certificate rejects it.
const KNOWN_CRITICAL: &[&str] = &["source-address", "force-command"];

/// The checks russh leaves to us for a user certificate that it has already
/// verified cryptographically (signature over the session). `ca` is the
/// trusted CA line that signed it (see [`AuthorizedKeys::find_ca`]).
///
/// [`AuthorizedKeys::find_ca`]: super::authorized_keys::AuthorizedKeys::find_ca
pub(crate) fn check_certificate(
    cert: &Certificate,
    ca: &KeyOptions,
    user: &str,
    peer: Option<IpAddr>,
    now: u64,
) -> Result<SessionPolicy, String> {
    if cert.cert_type() != CertType::User {
        return Err("host certificate presented for user authentication".into());
    }
    if now < cert.valid_after() {
        return Err("certificate not yet valid".into());
    }
    if now >= cert.valid_before() {
        return Err("certificate expired".into());
    }
    ca.admits(peer, now)?;
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Err("certificate has no principals".into());
    }
    // One file serves every login name here, so the name itself must be
    // vouched for by the CA: it has to be a principal of the certificate.
    if !principals.iter().any(|p| p == user) {
        return Err("no certificate principal matches the login name".into());
    }
    // principals= on the CA line (OpenSSH's AuthorizedPrincipalsFile): the
    // certificate must also carry one of those.
    if let Some(allowed) = &ca.principals
        && !principals.iter().any(|p| allowed.contains(p))
    {
        return Err("no certificate principal is listed in the CA line's principals=".into());
    }
    for (name, value) in cert.critical_options().iter() {
        if !KNOWN_CRITICAL.contains(&name.as_str()) {
            return Err(format!("unknown critical option {:?}", sanitize(name)));
        }
        if name == "source-address" {
            let Some(ip) = peer.map(|p| p.to_canonical()) else {
                return Err("source-address restriction but no peer address".into());
            };
            let nets: Vec<String> = value.split(',').map(|s| s.trim().to_string()).collect();
            let ip_ok = nets.iter().any(|n| {
                if n.contains('/') {
                    cidr_contains(n, ip)
                } else {
                    n.parse::<IpAddr>().is_ok_and(|a| a.to_canonical() == ip)
                }
            });
            if !ip_ok {
                return Err(
                    "source address not allowed by the certificate (source-address)".into(),
                );
            }
        }
    }
    let mut policy = ca.policy();
    if !cert.extensions().contains_key("permit-port-forwarding") {
        policy.port_forwarding = false;
    }
    Ok(policy)
}

fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}


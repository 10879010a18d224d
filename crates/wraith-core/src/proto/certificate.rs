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

#[cfg(test)]
mod tests {
    use russh::keys::ssh_key::certificate::Builder;
    use russh::keys::{Algorithm, PrivateKey};

    use super::super::authorized_keys::AuthorizedKeys;
    use super::super::time::utc;
    use super::*;

    /// The clock the certificates are checked at.
    const NOW: u64 = 1_800_000_000;

    fn ed25519() -> PrivateKey {
        PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519).unwrap()
    }

    /// A certificate for a fresh key, signed by `ca`, valid from `after`
    /// to `before`; `edit` sets the type, principals and options.
    fn signed(
        ca: &PrivateKey,
        after: u64,
        before: u64,
        edit: impl FnOnce(&mut Builder),
    ) -> Certificate {
        let subject = ed25519();
        let mut b = Builder::new(
            [7; 16],
            subject.public_key().key_data().clone(),
            after,
            before,
        )
        .unwrap();
        edit(&mut b);
        b.sign(ca).unwrap()
    }

    /// A user certificate for `alice`, valid around [`NOW`], that permits
    /// port forwarding; `edit` adds to it.
    fn user_cert(ca: &PrivateKey, edit: impl FnOnce(&mut Builder)) -> Certificate {
        signed(ca, NOW - 60, NOW + 3600, |b| {
            b.cert_type(CertType::User).unwrap();
            b.valid_principal("alice").unwrap();
            b.extension("permit-port-forwarding", "").unwrap();
            edit(b);
        })
    }

    /// The options of a CA line (`cert-authority` plus `options`).
    fn ca_line(options: &[&str]) -> KeyOptions {
        let mut all = vec!["cert-authority"];
        all.extend_from_slice(options);
        KeyOptions::parse_as(&all, false, utc).unwrap()
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    fn check(cert: &Certificate, ca: &KeyOptions, user: &str) -> Result<SessionPolicy, String> {
        check_certificate(cert, ca, user, ip("192.0.2.7"), NOW)
    }

    #[test]
    fn user_certificate_from_a_trusted_ca_is_accepted() {
        let ca = ed25519();
        let line = format!("cert-authority {}\n", ca.public_key().to_openssh().unwrap());
        let (keys, warnings) = AuthorizedKeys::parse_in(&line, false, utc);
        assert!(warnings.is_empty(), "{warnings:?}");
        let cert = user_cert(&ca, |_| {});
        let entry = keys.find_ca(cert.signature_key()).expect("the CA line");
        let policy = check(&cert, &entry.options, "alice").unwrap();
        assert_eq!(policy, entry.options.policy());
        assert!(policy.may_open("db.internal", 5432));
    }

    #[test]
    fn certificate_from_another_ca_finds_no_ca_line() {
        let (trusted, other) = (ed25519(), ed25519());
        let trusted_line = trusted.public_key().to_openssh().unwrap();
        let (keys, _) =
            AuthorizedKeys::parse_in(&format!("cert-authority {trusted_line}\n"), false, utc);
        let cert = user_cert(&other, |_| {});
        assert!(keys.find_ca(cert.signature_key()).is_none());
        assert!(
            keys.find_ca(user_cert(&trusted, |_| {}).signature_key())
                .is_some()
        );
        // The CA's key as a plain login key trusts no certificate.
        let (plain, _) = AuthorizedKeys::parse_in(&format!("{trusted_line}\n"), false, utc);
        assert!(
            plain
                .find_ca(user_cert(&trusted, |_| {}).signature_key())
                .is_none()
        );
    }

    #[test]
    fn host_certificate_is_refused_for_user_authentication() {
        let ca = ed25519();
        let cert = signed(&ca, NOW - 60, NOW + 3600, |b| {
            b.cert_type(CertType::Host).unwrap();
            b.valid_principal("alice").unwrap();
        });
        assert_eq!(
            check(&cert, &ca_line(&[]), "alice"),
            Err("host certificate presented for user authentication".into())
        );
    }

    #[test]
    fn certificate_outside_its_validity_window_is_refused() {
        let ca = ed25519();
        let edit = |b: &mut Builder| {
            b.cert_type(CertType::User).unwrap();
            b.valid_principal("alice").unwrap();
        };
        let at =
            |cert: &Certificate, now| check_certificate(cert, &ca_line(&[]), "alice", None, now);
        let expired = signed(&ca, NOW - 7200, NOW - 3600, edit);
        assert_eq!(at(&expired, NOW), Err("certificate expired".into()));
        let future = signed(&ca, NOW + 3600, NOW + 7200, edit);
        assert_eq!(at(&future, NOW), Err("certificate not yet valid".into()));
        // valid_after is the first valid second, valid_before the first
        // invalid one.
        let window = signed(&ca, NOW, NOW + 10, edit);
        assert!(at(&window, NOW).is_ok());
        assert!(at(&window, NOW + 9).is_ok());
        assert_eq!(
            at(&window, NOW - 1),
            Err("certificate not yet valid".into())
        );
        assert_eq!(at(&window, NOW + 10), Err("certificate expired".into()));
    }

    #[test]
    fn login_name_must_be_a_certificate_principal() {
        let ca = ed25519();
        let cert = user_cert(&ca, |b| {
            b.valid_principal("bob").unwrap();
        });
        assert!(check(&cert, &ca_line(&[]), "alice").is_ok());
        assert!(check(&cert, &ca_line(&[]), "bob").is_ok());
        assert_eq!(
            check(&cert, &ca_line(&[]), "mallory"),
            Err("no certificate principal matches the login name".into())
        );
        assert_eq!(
            check(&cert, &ca_line(&[]), "Alice"),
            Err("no certificate principal matches the login name".into()),
            "principals compare exactly"
        );
    }

    #[test]
    fn certificate_without_principals_is_refused() {
        // OpenSSH reads no principals as "any"; one file serves every login
        // name here, so that would be a key to every account.
        let ca = ed25519();
        let cert = signed(&ca, NOW - 60, NOW + 3600, |b| {
            b.cert_type(CertType::User).unwrap();
            b.all_principals_valid().unwrap();
        });
        assert!(cert.valid_principals().is_empty());
        assert_eq!(
            check(&cert, &ca_line(&[]), "alice"),
            Err("certificate has no principals".into())
        );
    }

    #[test]
    fn ca_line_principals_must_name_a_certificate_principal() {
        let ca = ed25519();
        let tunnel = ca_line(&["principals=\"tunnel,ops\""]);
        let alice_only = user_cert(&ca, |_| {});
        assert_eq!(
            check(&alice_only, &tunnel, "alice"),
            Err("no certificate principal is listed in the CA line's principals=".into())
        );
        let both = user_cert(&ca, |b| {
            b.valid_principal("ops").unwrap();
        });
        assert!(check(&both, &tunnel, "alice").is_ok());
        assert!(check(&both, &tunnel, "ops").is_ok());
        // The login name must still be a principal of the certificate.
        assert_eq!(
            check(&both, &tunnel, "tunnel"),
            Err("no certificate principal matches the login name".into())
        );
    }

    #[test]
    fn unknown_critical_option_is_refused() {
        let ca = ed25519();
        let cert = user_cert(&ca, |b| {
            b.critical_option("verify-required", "").unwrap();
        });
        assert_eq!(
            check(&cert, &ca_line(&[]), "alice"),
            Err("unknown critical option \"verify-required\"".into())
        );
        // The name reaches the log: control characters are replaced.
        let cert = user_cert(&ca, |b| {
            b.critical_option("x\u{1b}[31m", "").unwrap();
        });
        assert_eq!(
            check(&cert, &ca_line(&[]), "alice"),
            Err("unknown critical option \"x?[31m\"".into())
        );
    }

    #[test]
    fn force_command_is_accepted_and_changes_nothing() {
        // A tunnel server runs no commands, so there is nothing to force.
        let ca = ed25519();
        let cert = user_cert(&ca, |b| {
            b.critical_option("force-command", "/bin/false").unwrap();
        });
        let policy = check(&cert, &ca_line(&[]), "alice").unwrap();
        assert_eq!(policy, ca_line(&[]).policy());
    }

    #[test]
    fn source_address_limits_the_peer() {
        let ca = ed25519();
        let cert = user_cert(&ca, |b| {
            b.critical_option("source-address", "10.0.0.0/8, 192.0.2.7,2001:db8::/32")
                .unwrap();
        });
        let from = |peer: &str| check_certificate(&cert, &ca_line(&[]), "alice", ip(peer), NOW);
        assert!(from("10.1.2.3").is_ok(), "CIDR");
        assert!(from("192.0.2.7").is_ok(), "exact address after a space");
        assert!(from("2001:db8::1").is_ok(), "IPv6 CIDR");
        assert!(from("::ffff:10.9.9.9").is_ok(), "IPv4-mapped peer as IPv4");
        let refused = Err("source address not allowed by the certificate (source-address)".into());
        assert_eq!(from("192.0.2.8"), refused);
        assert_eq!(from("11.0.0.1"), refused);
        assert_eq!(
            check_certificate(&cert, &ca_line(&[]), "alice", None, NOW),
            Err("source-address restriction but no peer address".into())
        );
        // Patterns are not globs here, as in OpenSSH.
        let glob = user_cert(&ca, |b| {
            b.critical_option("source-address", "10.*").unwrap();
        });
        assert_eq!(
            check_certificate(&glob, &ca_line(&[]), "alice", ip("10.0.0.1"), NOW),
            refused
        );
    }

    #[test]
    fn port_forwarding_needs_the_extension_and_the_ca_line() {
        let ca = ed25519();
        let without = signed(&ca, NOW - 60, NOW + 3600, |b| {
            b.cert_type(CertType::User).unwrap();
            b.valid_principal("alice").unwrap();
        });
        let policy = check(&without, &ca_line(&[]), "alice").unwrap();
        assert!(!policy.may_open("db.internal", 5432));
        let with = user_cert(&ca, |_| {});
        assert!(
            check(&with, &ca_line(&[]), "alice")
                .unwrap()
                .may_open("db", 1)
        );
        // The CA line's own restrictions still apply.
        let restricted = check(&with, &ca_line(&["restrict"]), "alice").unwrap();
        assert!(!restricted.may_open("db", 1));
        let narrow = check(&with, &ca_line(&["permitopen=\"db:5432\""]), "alice").unwrap();
        assert!(narrow.may_open("db", 5432));
        assert!(!narrow.may_open("db", 5433));
        assert!(
            !check(&with, &ca_line(&[]), "alice")
                .unwrap()
                .may_use_hub(false)
        );
        assert!(
            check(&with, &ca_line(&["hub"]), "alice")
                .unwrap()
                .may_use_hub(false)
        );
    }

    #[test]
    fn ca_line_from_and_expiry_time_apply_to_its_certificates() {
        let ca = ed25519();
        let cert = user_cert(&ca, |_| {});
        let from = ca_line(&["from=\"10.0.0.0/8\""]);
        assert!(check_certificate(&cert, &from, "alice", ip("10.0.0.1"), NOW).is_ok());
        assert_eq!(
            check(&cert, &from, "alice"),
            Err("source address not allowed (from=)".into())
        );
        // NOW is 2027-01-15.
        let later = ca_line(&["expiry-time=\"20300101Z\""]);
        assert!(check(&cert, &later, "alice").is_ok());
        let expired = ca_line(&["expiry-time=\"20270101Z\""]);
        assert_eq!(
            check(&cert, &expired, "alice"),
            Err("key expired (expiry-time)".into())
        );
    }
}

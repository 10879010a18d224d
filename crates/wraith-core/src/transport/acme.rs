//! ACME certificates for the TLS transport (instant-acme): TLS-ALPN-01 on
//! the serving port itself, for domain names and IP addresses (RFC 8738),
//! kept in a cache directory across restarts and renewed in the background
//! with the new certificate swapped in without a restart.
//!
//! [`AcmeCerts`] is the rustls certificate resolver: it answers
//! `acme-tls/1` handshakes with the challenge certificate for the name in
//! the SNI, and every other handshake with the current certificate. The
//! acceptor drops `acme-tls/1` connections right after the handshake; they
//! never reach SSH or the stealth decoy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use crate::error::{Error, Reason, Result};

/// The ALPN protocol of TLS-ALPN-01 (RFC 8737).
pub(crate) const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// Let's Encrypt's production directory, the default.
pub const LETS_ENCRYPT_PRODUCTION: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// What to obtain and from where.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcmeOptions {
    /// Domain names (`--acme-domain`).
    pub domains: Vec<String>,
    /// IP addresses (`--acme-ip`).
    pub ips: Vec<IpAddr>,
    /// Contact address (`--acme-email`).
    pub email: Option<String>,
    /// Where account and certificates are kept (`--acme-cache`).
    pub cache: PathBuf,
    /// The ACME directory URL (`--acme-directory`).
    pub directory: String,
    /// Trust this CA for the ACME server's own HTTPS (`--acme-ca-root`).
    pub ca_root: Option<PathBuf>,
}

impl AcmeOptions {
    /// Options for these identifiers against Let's Encrypt production.
    pub fn new(domains: Vec<String>, ips: Vec<IpAddr>, cache: PathBuf) -> Self {
        AcmeOptions {
            domains,
            ips,
            email: None,
            cache,
            directory: LETS_ENCRYPT_PRODUCTION.into(),
            ca_root: None,
        }
    }

    fn identifiers(&self) -> Vec<Identifier> {
        let mut ids: Vec<Identifier> = self
            .domains
            .iter()
            .map(|d| Identifier::Dns(d.clone()))
            .collect();
        ids.extend(self.ips.iter().map(|ip| Identifier::Ip(*ip)));
        ids
    }

    /// File stem for this directory and identifier set.
    fn key(&self, what: &str) -> String {
        let mut h = Sha256::new();
        h.update(self.directory.as_bytes());
        if what != "account" {
            let mut names: Vec<String> = self.domains.clone();
            names.extend(self.ips.iter().map(IpAddr::to_string));
            names.sort();
            for n in names {
                h.update([0]);
                h.update(n.as_bytes());
            }
        }
        let d = h.finalize();
        let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("{what}-{hex}")
    }
}

/// When the ACME certificate in use expires (Unix seconds; 0: none yet),
/// for `--metrics`. One per process: a server has one ACME set-up.
pub(crate) static CERTIFICATE_NOT_AFTER: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(0);

/// The certificate resolver ACME keeps up to date.
#[derive(Debug, Default)]
pub(crate) struct AcmeCerts {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl ResolvesServerCert for AcmeCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello
            .alpn()
            .is_some_and(|mut protos| protos.any(|p| p == ACME_TLS_ALPN));
        if acme {
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.lock().ok()?.get(&name).cloned();
        }
        self.current.read().ok()?.clone()
    }
}

impl AcmeCerts {
    fn install(&self, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.current.write() {
            *c = Some(key);
        }
    }
}

/// A certificate with its validity window.
struct Issued {
    key: Arc<CertifiedKey>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Issued {
    /// Renew when a third of the lifetime is left (like certbot's 30 of
    /// 90 days; 2 of 6 days for short-lived IP certificates).
    fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_after - life / 3
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn parse_issued(cert_pem: &str, key_pem: &str) -> std::result::Result<Issued, String> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM: {e}"))?;
    let leaf = chain.first().ok_or("no certificate in the PEM")?;
    let (not_before, not_after) =
        validity(leaf.as_ref()).ok_or("cannot read the certificate's validity")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("bad key PEM: {e}"))?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|e| format!("key does not fit the certificate: {e}"))?;
    Ok(Issued {
        key: Arc::new(certified),
        not_before,
        not_after,
    })
}

/// One DER TLV at the start of `d`: (tag, contents, rest).
fn tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *d.first()?;
    let first = *d.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in d.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let body = d.get(hdr..hdr.checked_add(len)?)?;
    Some((tag, body, &d[hdr + len..]))
}

/// notBefore and notAfter of a DER certificate.
fn validity(der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    let (_, _, r) = tlv(rest)?; // serial
    let (_, _, r) = tlv(r)?; // signature algorithm
    let (_, _, r) = tlv(r)?; // issuer
    let (_, validity, _) = tlv(r)?;
    let (t1, nb, r) = tlv(validity)?;
    let (t2, na, _) = tlv(r)?;
    Some((asn1_time(t1, nb)?, asn1_time(t2, na)?))
}

/// UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ).
fn asn1_time(tag: u8, v: &[u8]) -> Option<SystemTime> {
    let s = std::str::from_utf8(v).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i64 = s.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, s.get(2..)?)
        }
        0x18 => (s.get(..4)?.parse().ok()?, s.get(4..)?),
        _ => return None,
    };
    if rest.len() != 10 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |i: usize| -> i64 { rest[i..i + 2].parse().unwrap_or(0) };
    let (month, day, h, m, sec) = (n(0), n(2), n(4), n(6), n(8));
    let days = crate::proto::time::days_from_civil(year, month, day);
    let secs = u64::try_from(days * 86_400 + h * 3600 + m * 60 + sec).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

/// Runs ACME for one server: [`Acme::start`] returns at once, having put
/// the cached certificate (if still valid) into the resolver, and leaves a
/// background task that orders and renews. Dropping it stops that task.
pub(crate) struct Acme {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Acme {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme").finish_non_exhaustive()
    }
}

impl Acme {
    /// Load the cache and start the order/renew loop. Call after the TLS
    /// acceptor is listening (the CA validates through it); fails only on
    /// an unusable cache directory or bad options.
    pub fn start(opts: AcmeOptions, certs: Arc<AcmeCerts>) -> Result<Acme> {
        if opts.domains.is_empty() && opts.ips.is_empty() {
            return Err(Error::config(
                "--acme-domain",
                "",
                "give at least one --acme-domain or --acme-ip",
            ));
        }
        // instant-acme builds its HTTPS client with rustls' default
        // provider; make it ours so it can never be ambiguous.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let mut dir = std::fs::DirBuilder::new();
        dir.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut dir, 0o700);
        dir.create(&opts.cache).map_err(|e| Error::KeyFile {
            what: "ACME cache",
            path: opts.cache.clone(),
            flag: "--acme-cache",
            reason: Reason::with_source(e.to_string(), e),
        })?;
        let cached = load_cached(&opts);
        if let Some(c) = &cached {
            certs.install(c.key.clone());
            CERTIFICATE_NOT_AFTER.store(unix(c.not_after), std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                valid_until = %crate::proto::time::http_date(unix(c.not_after)),
                "ACME certificate loaded from the cache"
            );
        }
        let task = tokio::spawn(renew_loop(opts, certs.clone(), cached));
        Ok(Acme { task })
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn cert_paths(opts: &AcmeOptions) -> (PathBuf, PathBuf) {
    let stem = opts.key("cert");
    (
        opts.cache.join(format!("{stem}.pem")),
        opts.cache.join(format!("{stem}.key.pem")),
    )
}

fn load_cached(opts: &AcmeOptions) -> Option<Issued> {
    let (cert, key) = cert_paths(opts);
    let cert_pem = std::fs::read_to_string(&cert).ok()?;
    let key_pem = std::fs::read_to_string(&key).ok()?;
    match parse_issued(&cert_pem, &key_pem) {
        Ok(i) if i.not_after > SystemTime::now() => Some(i),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!("ignoring the cached certificate {}: {e}", cert.display());
            None
        }
    }
}

async fn renew_loop(opts: AcmeOptions, certs: Arc<AcmeCerts>, mut current: Option<Issued>) {
    let mut failures = 0u32;
    loop {
        if let Some(due) = current.as_ref().map(Issued::renew_at)
            && let Ok(wait) = due.duration_since(SystemTime::now())
            && !wait.is_zero()
        {
            // Wake at least daily and look at the wall clock again: timers
            // stop while a machine sleeps, and tokio caps long sleeps.
            tokio::time::sleep(wait.min(Duration::from_secs(24 * 3600))).await;
            continue;
        }
        match obtain(&opts, &certs).await {
            Ok(issued) => {
                failures = 0;
                certs.install(issued.key.clone());
                CERTIFICATE_NOT_AFTER
                    .store(unix(issued.not_after), std::sync::atomic::Ordering::Relaxed);
                tracing::info!(
                    valid_until = %crate::proto::time::http_date(unix(issued.not_after)),
                    "ACME certificate obtained"
                );
                current = Some(issued);
            }
            Err(e) => {
                failures += 1;
                // 30 s, 1 min, 2 min … capped at an hour.
                let delay = Duration::from_secs(30 * 2u64.pow(failures.min(7) - 1))
                    .min(Duration::from_secs(3600));
                tracing::warn!("ACME order failed (retrying in {}s): {e}", delay.as_secs());
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn account(opts: &AcmeOptions) -> std::result::Result<Account, String> {
    let builder = || match &opts.ca_root {
        Some(root) => Account::builder_with_root(root)
            .map_err(|e| format!("cannot use {} (--acme-ca-root): {e}", root.display())),
        None => Account::builder().map_err(|e| e.to_string()),
    };
    let path = opts.cache.join(format!("{}.json", opts.key("account")));
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(creds) = serde_json::from_str::<AccountCredentials>(&text)
    {
        return builder()?
            .from_credentials(creds)
            .await
            .map_err(|e| format!("cannot restore the ACME account: {}", chain(&e)));
    }
    let contact = opts.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            opts.directory.clone(),
            None,
        )
        .await
        .map_err(|e| {
            format!(
                "cannot create an ACME account at {}: {}",
                opts.directory,
                chain(&e)
            )
        })?;
    let json = serde_json::to_string(&creds).map_err(|e| e.to_string())?;
    write_private(&path, json.as_bytes())?;
    Ok(account)
}

/// An error with its causes, on one line (hyper's own message is just
/// "client error (Connect)").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

/// Write a cache file (account key, certificate key, certificate) so that
/// nothing planted in the cache directory can redirect it: the data goes to
/// a new file with a random name, created exclusively (`O_CREAT|O_EXCL`,
/// which never follows a symlink) with mode 0600, and is then renamed over
/// `path` — a rename replaces a symlink at `path` itself, not its target.
fn write_private(path: &Path, data: &[u8]) -> std::result::Result<(), String> {
    use std::io::Write as _;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".wraith-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| format!("cannot write a file in {}: {e}", dir.display()))?;
    tmp.write_all(data)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.path().display()))?;
    tmp.persist(path)
        .map_err(|e| format!("cannot write {}: {}", path.display(), e.error))?;
    Ok(())
}

/// The SNI a validator sends for an identifier (RFC 8738 §6 for IPs).
fn challenge_sni(id: &Identifier) -> Option<String> {
    match id {
        Identifier::Dns(d) => Some(d.to_ascii_lowercase()),
        Identifier::Ip(IpAddr::V4(a)) => {
            let o = a.octets();
            Some(format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]))
        }
        Identifier::Ip(IpAddr::V6(a)) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            Some(s)
        }
        _ => None,
    }
}

/// A TLS-ALPN-01 certificate: self-signed, the identifier as its only SAN,
/// and the critical acmeIdentifier extension holding SHA-256 of the key
/// authorization (RFC 8737 §3).
fn challenge_cert(id: &Identifier, digest: &[u8]) -> std::result::Result<CertifiedKey, String> {
    let name = match id {
        Identifier::Dns(d) => d.clone(),
        Identifier::Ip(ip) => ip.to_string(),
        other => return Err(format!("unsupported identifier {other:?}")),
    };
    let mut params = rcgen::CertificateParams::new(vec![name]).map_err(|e| e.to_string())?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
    let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| e.to_string())?;
    // Not from_der: its key/certificate consistency check parses the
    // certificate with webpki, which refuses the critical acmeIdentifier.
    let signer = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| e.to_string())?;
    Ok(CertifiedKey::new(vec![cert.der().clone()], signer))
}

async fn obtain(opts: &AcmeOptions, certs: &AcmeCerts) -> std::result::Result<Issued, String> {
    let account = account(opts).await?;
    let identifiers = opts.identifiers();
    let mut new_order = NewOrder::new(&identifiers);
    // Let's Encrypt issues IP certificates only under its short-lived profile.
    if !opts.ips.is_empty() && account.profiles().any(|p| p.name == "shortlived") {
        new_order = new_order.profile("shortlived");
    }
    let mut order = account
        .new_order(&new_order)
        .await
        .map_err(|e| format!("new order: {}", chain(&e)))?;
    let mut names = Vec::new();
    {
        let mut authzs = order.authorizations();
        while let Some(a) = authzs.next().await {
            let mut authz = a.map_err(|e| format!("authorization: {}", chain(&e)))?;
            if authz.status == AuthorizationStatus::Valid {
                continue;
            }
            let mut challenge = authz
                .challenge(ChallengeType::TlsAlpn01)
                .ok_or("the CA offers no tls-alpn-01 challenge")?;
            let id = challenge.identifier().identifier.clone();
            let sni = challenge_sni(&id).ok_or("unsupported identifier type")?;
            let cert = challenge_cert(&id, challenge.key_authorization().digest().as_ref())?;
            if let Ok(mut map) = certs.challenges.lock() {
                map.insert(sni.clone(), Arc::new(cert));
            }
            names.push(sni);
            challenge
                .set_ready()
                .await
                .map_err(|e| format!("challenge: {}", chain(&e)))?;
        }
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .backoff(1.5);
    let status = order.poll_ready(&retry).await;
    if let Ok(mut map) = certs.challenges.lock() {
        for n in &names {
            map.remove(n);
        }
    }
    match status.map_err(|e| format!("validation: {}", chain(&e)))? {
        OrderStatus::Ready => {}
        s => {
            return Err(format!(
                "the order is {s:?}, not ready (did the CA reach this port?)"
            ));
        }
    }
    let key_pem = order
        .finalize()
        .await
        .map_err(|e| format!("finalize: {}", chain(&e)))?;
    let cert_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(|e| format!("certificate: {}", chain(&e)))?;
    let issued = parse_issued(&cert_pem, &key_pem)?;
    let (cert_path, key_path) = cert_paths(opts);
    write_private(&key_path, key_pem.as_bytes())?;
    write_private(&cert_path, cert_pem.as_bytes())?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn cache_files_never_follow_planted_symlinks() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // A symlink where the file goes, and one where the old code put
        // its temporary file.
        let key = dir.path().join("cert.key.pem");
        std::os::unix::fs::symlink(&victim, &key).unwrap();
        std::os::unix::fs::symlink(&victim, dir.path().join("cert.key.tmp")).unwrap();
        write_private(&key, b"secret key").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        let meta = std::fs::symlink_metadata(&key).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the symlink was replaced by a file"
        );
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret key");
        // Writing again replaces the file; no temporary is left behind.
        write_private(&key, b"renewed").unwrap();
        assert_eq!(std::fs::read(&key).unwrap(), b"renewed");
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with(".wraith-")),
            "{names:?}"
        );
    }

    #[test]
    fn certificate_validity_is_read() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 2, 28);
        params.not_after = rcgen::date_time_ymd(2051, 3, 1);
        let cert = params.self_signed(&key).unwrap();
        let (nb, na) = validity(cert.der()).unwrap();
        assert_eq!(unix(nb), 1_772_236_800);
        assert_eq!(unix(na), 2_561_241_600);
        assert!(validity(b"\x30\x03\x02\x01").is_none());
    }

    #[test]
    fn reverse_names_for_ip_challenges() {
        let v4 = Identifier::Ip("127.0.0.1".parse().unwrap());
        assert_eq!(challenge_sni(&v4).unwrap(), "1.0.0.127.in-addr.arpa");
        let v6 = Identifier::Ip("2001:db8::1".parse().unwrap());
        assert_eq!(
            challenge_sni(&v6).unwrap(),
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn cache_names_depend_on_directory_and_identifiers() {
        let a = AcmeOptions::new(vec!["a.example".into()], vec![], "/c".into());
        let mut b = a.clone();
        b.domains = vec!["b.example".into()];
        assert_ne!(a.key("cert"), b.key("cert"));
        assert_eq!(a.key("account"), b.key("account"));
        let mut c = a.clone();
        c.directory = "https://other/dir".into();
        assert_ne!(a.key("account"), c.key("account"));
    }

    #[test]
    fn challenge_certificates_carry_the_acme_extension() {
        let id = Identifier::Ip("127.0.0.1".parse().unwrap());
        let ck = challenge_cert(&id, &[1u8; 32]).unwrap();
        let der = ck.cert[0].as_ref();
        // id-pe-acmeIdentifier 1.3.6.1.5.5.7.1.31, critical.
        let oid = [
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff,
        ];
        assert!(der.windows(oid.len()).any(|w| w == oid));
    }
}

//! IP networks written `addr/bits` (or a bare address, a network of one):
//! parsed once, then matched against peers. `from=` and `source-address`
//! patterns and `--proxy-protocol-from` all go through here.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, as a dual-stack `[::]`
//! listener reports IPv4 peers) are matched as the IPv4 address they are.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

/// Why a network did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrError {
    /// The part before `/` is no IP address.
    #[error("expected an IP address or ADDR/BITS, e.g. 10.0.0.0/8 or ::1")]
    Address,
    /// The prefix length is no number or too long for the family.
    #[error("the prefix length must be 0-32 for IPv4 and 0-128 for IPv6")]
    Bits,
}

impl Cidr {
    /// The network `net/bits`; `None` when `bits` is too long for the family.
    /// An IPv4-mapped network (`::ffff:10.0.0.0/104`) is the IPv4 one
    /// (`10.0.0.0/8`).
    pub fn new(net: IpAddr, bits: u8) -> Option<Self> {
        let (net, bits) = match net {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), bits.checked_sub(96)?),
                None => (net, bits),
            },
            IpAddr::V4(_) => (net, bits),
        };
        let max = if net.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { net, bits })
    }

    /// The network of just `ip`.
    pub fn host(ip: IpAddr) -> Self {
        let ip = ip.to_canonical();
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        Cidr { net: ip, bits }
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = u32::from(self.bits);
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `addr/bits` or a bare address. Host bits may be set
    /// (`192.0.2.7/24` is `192.0.2.0/24`), as OpenSSH allows.
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| CidrError::Address)?;
        match bits {
            None => Ok(Cidr::host(net)),
            Some(b) => {
                // u8::from_str takes a leading '+'; a prefix length does not.
                if b.is_empty() || !b.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(CidrError::Bits);
                }
                let bits = b.parse::<u8>().map_err(|_| CidrError::Bits)?;
                Cidr::new(net, bits).ok_or(CidrError::Bits)
            }
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.255.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.2.3")), "mapped IPv4 is IPv4");
        assert!(!n.contains(ip("::1")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::7")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.2.3")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert!(!all.contains(ip("::2")));
    }

    #[test]
    fn a_bare_address_is_a_network_of_one() {
        let h: Cidr = "127.0.0.2".parse().unwrap();
        assert_eq!(h.to_string(), "127.0.0.2/32");
        assert!(h.contains(ip("127.0.0.2")));
        assert!(!h.contains(ip("127.0.0.3")));
        let l: Cidr = "::1".parse().unwrap();
        assert_eq!(l.to_string(), "::1/128");
        assert!(l.contains(ip("::1")));
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        assert_eq!(
            "::ffff:10.0.0.1".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.1/32"
        );
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "",
            "x",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "::ffff:10.0.0.0/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "1.2.3.4/8/8",
            "10.0.0/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?} parsed");
        }
        assert_eq!("10.0.0.0/33".parse::<Cidr>(), Err(CidrError::Bits));
        assert_eq!("host/8".parse::<Cidr>(), Err(CidrError::Address));
    }
}

//! CIDR and IP address parsing, normalisation and host arithmetic (IPv4 and IPv6).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network prefix such as `10.0.0.0/24` whose host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The network address.
    pub network: IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

fn width(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn to_bits(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(*v4)),
        IpAddr::V6(v6) => u128::from(*v6),
    }
}

fn from_bits(bits: u128, v4: bool) -> IpAddr {
    if v4 {
        let low = u32::try_from(bits & u128::from(u32::MAX)).expect("masked to 32 bits");
        IpAddr::V4(Ipv4Addr::from(low))
    } else {
        IpAddr::V6(Ipv6Addr::from(bits))
    }
}

fn host_mask(width: u8, prefix: u8) -> u128 {
    let host_bits = u32::from(width - prefix);
    if host_bits == 0 {
        0
    } else if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    }
}

/// Parses an IPv4 or IPv6 address, with a message that says what is wrong.
pub fn parse_ip(text: &str) -> Result<IpAddr, String> {
    text.parse::<IpAddr>().map_err(|_| format!("{text:?} is not an IP address (expected e.g. 10.0.0.1 or fd00::1)"))
}

impl Cidr {
    /// Parses `address/prefix`. Host bits must be zero; the message suggests the network
    /// address when they are not.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?} is not a CIDR block (expected e.g. 10.0.0.0/24)"))?;
        let ip = addr.parse::<IpAddr>().map_err(|_| format!("{text:?} is not a CIDR block: {addr:?} is not an IP address"))?;
        let max = width(&ip);
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| format!("{text:?} is not a CIDR block: the prefix length must be 0 to {max}"))?;
        let bits = to_bits(&ip);
        let network = bits & !host_mask(max, prefix);
        if network != bits {
            let suggested = from_bits(network, ip.is_ipv4());
            return Err(format!("{text:?} has host bits set: use {suggested}/{prefix}"));
        }
        Ok(Cidr { network: ip, prefix })
    }

    /// Whether `ip` lies inside this block.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        if ip.is_ipv4() != self.network.is_ipv4() {
            return false;
        }
        let mask = !host_mask(width(ip), self.prefix);
        to_bits(ip) & mask == to_bits(&self.network)
    }

    /// Number of addresses in the block that hosts may use (network and, for IPv4,
    /// broadcast addresses excluded for prefixes shorter than /31).
    pub fn usable_hosts(&self) -> u128 {
        let w = width(&self.network);
        let size = host_mask(w, self.prefix).saturating_add(1);
        if w - self.prefix <= 1 { size } else { size - 2 }
    }

    /// The `n`-th usable host (0-based): the first usable host is the network address + 1.
    pub fn host(&self, n: u128) -> Option<IpAddr> {
        if n >= self.usable_hosts() {
            return None;
        }
        let w = width(&self.network);
        let offset = if w - self.prefix <= 1 { n } else { n + 1 };
        Some(from_bits(to_bits(&self.network) + offset, self.network.is_ipv4()))
    }

    /// Zero-based host index of `ip` in this block, the inverse of [`Cidr::host`].
    pub fn host_index(&self, ip: &IpAddr) -> Option<u128> {
        if !self.contains(ip) {
            return None;
        }
        let w = width(&self.network);
        let offset = to_bits(ip) - to_bits(&self.network);
        let n = if w - self.prefix <= 1 { offset } else { offset.checked_sub(1)? };
        (n < self.usable_hosts()).then_some(n)
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let c = Cidr::parse("10.0.0.0/24").expect("valid");
        assert_eq!(c.to_string(), "10.0.0.0/24");
        assert!(Cidr::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(Cidr::parse("10.0.0.5/24").unwrap_err().contains("use 10.0.0.0/24"));
        assert!(Cidr::parse("10.0.0.0").is_err());
        assert!(Cidr::parse("banana/8").is_err());
        assert_eq!(Cidr::parse("FD00::/64").expect("v6").to_string(), "fd00::/64");
    }

    #[test]
    fn host_arithmetic() {
        let c = Cidr::parse("192.168.1.0/30").expect("valid");
        assert_eq!(c.usable_hosts(), 2);
        assert_eq!(c.host(0), Some("192.168.1.1".parse().expect("ip")));
        assert_eq!(c.host(1), Some("192.168.1.2".parse().expect("ip")));
        assert_eq!(c.host(2), None);
        assert_eq!(c.host_index(&"192.168.1.2".parse().expect("ip")), Some(1));
        assert_eq!(c.host_index(&"192.168.1.3".parse().expect("ip")), None);
        assert!(!c.contains(&"192.168.2.1".parse().expect("ip")));
        let all = Cidr::parse("0.0.0.0/0").expect("valid");
        assert!(all.contains(&"8.8.8.8".parse().expect("ip")));
    }
}

//! Network values in the config: CIDR networks (`trusted_proxies`), listen addresses and the
//! loopback test that decides whether plain HTTP is allowed.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use super::model::IpNet;

impl FromStr for IpNet {
    type Err = String;

    /// `"10.0.0.0/8"`, `"::1/128"`, or a bare address (a single host: /32 or /128).
    /// Host bits set beyond the prefix (`"10.0.0.1/8"`) are rejected as a likely typo.
    fn from_str(s: &str) -> Result<Self, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{s:?} is not an IP address or CIDR network (e.g. \"10.0.0.0/8\")")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max && !p.starts_with('+'))
                .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
        };
        let net = IpNet { addr, prefix_len };
        let network = IpNet {
            addr: network_address(addr, prefix_len),
            prefix_len,
        };
        if network.addr != addr {
            return Err(format!(
                "{s:?} has host bits set; did you mean \"{}/{prefix_len}\"?",
                network.addr
            ));
        }
        Ok(net)
    }
}

fn network_address(addr: IpAddr, prefix_len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(prefix_len);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u32::from(prefix_len);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    }
}

/// A listen address: `"127.0.0.1:8080"` or `"[::1]:8080"`. Host names are not accepted:
/// what a name resolves to could change which interfaces are exposed.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s:?} is not an IP:port address (e.g. \"127.0.0.1:8080\" or \"[::1]:8080\")")
    })
}

/// Whether a URL host (as `http::Uri::host` returns it) is loopback: `localhost`,
/// 127.0.0.0/8 or `::1`.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Result<IpNet, String> {
        s.parse()
    }

    #[test]
    fn cidr_and_bare_addresses_parse() {
        let n = net("10.0.0.0/8").unwrap();
        assert_eq!((n.addr, n.prefix_len), ("10.0.0.0".parse().unwrap(), 8));
        assert!(n.contains("10.1.2.3".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        assert_eq!(net("192.168.1.7").unwrap().prefix_len, 32);
        assert_eq!(net("::1").unwrap().prefix_len, 128);
        assert_eq!(net("::1/128").unwrap().prefix_len, 128);
        assert_eq!(net("fd00::/8").unwrap().prefix_len, 8);
        assert_eq!(net("0.0.0.0/0").unwrap().prefix_len, 0);
    }

    #[test]
    fn bad_networks_are_rejected() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/8/8",
            "[::1]",
        ] {
            assert!(net(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            net("10.0.0.1/8")
                .unwrap_err()
                .contains("did you mean \"10.0.0.0/8\"")
        );
    }

    #[test]
    fn listen_addresses_must_be_ip_and_port() {
        assert!(parse_listen_addr("127.0.0.1:8080").is_ok());
        assert!(parse_listen_addr("[::1]:0").is_ok());
        assert!(parse_listen_addr("localhost:8080").is_err());
        assert!(parse_listen_addr("127.0.0.1").is_err());
    }

    #[test]
    fn loopback_hosts() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "[::2]",
            "localhost.example.com",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }
}

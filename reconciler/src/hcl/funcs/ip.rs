//! IP network functions: cidrhost, cidrnetmask, cidrsubnet, cidrsubnets, for IPv4 and IPv6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hcl::Value;

use super::{Failure, Outcome, fixed, int_arg, str_arg};

/// Calls an IP network function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "cidrhost" => fixed::<2>(args).and_then(|[p, h]| {
            let (net, bits) = prefix(&str_arg(p, "prefix")?)?;
            let host = int_arg(h, "hostnum")?;
            let size = space(net, bits);
            let n = if host < 0 { size.checked_sub(u128::from(host.unsigned_abs())) } else { Some(u128::from(host.unsigned_abs())) };
            match n.filter(|n| *n < size) {
                Some(n) => Ok(Value::from(offset(net, n).to_string())),
                None => Err(format!("prefix of {bits} does not accommodate a host numbered {host}").into()),
            }
        }),
        "cidrnetmask" => fixed::<1>(args).and_then(|[p]| {
            let (net, bits) = prefix(&str_arg(p, "prefix")?)?;
            if !net.is_ipv4() {
                return Err("IPv6 addresses cannot have a netmask".into());
            }
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            Ok(Value::from(Ipv4Addr::from(mask).to_string()))
        }),
        "cidrsubnet" => fixed::<3>(args).and_then(|[p, nb, num]| {
            let (net, bits) = prefix(&str_arg(p, "prefix")?)?;
            let newbits = u32::try_from(int_arg(nb, "newbits")?).map_err(|_| "invalid value for \"newbits\" parameter: must not be negative")?;
            let netnum = u128::try_from(int_arg(num, "netnum")?).map_err(|_| "invalid value for \"netnum\" parameter: must not be negative")?;
            subnet(net, bits, newbits, netnum).map(|(ip, len)| Value::from(format!("{ip}/{len}")))
        }),
        "cidrsubnets" => cidrsubnets(args),
        _ => return None,
    })
}

fn width(ip: IpAddr) -> u32 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn prefix(text: &str) -> Result<(IpAddr, u32), Failure> {
    let bad = || Failure::Error(format!("invalid CIDR expression: invalid CIDR address: {text}"));
    let (ip, bits) = text.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    if bits > width(ip) {
        return Err(bad());
    }
    let host_bits = width(ip) - bits;
    let mask = if host_bits >= 128 { 0 } else { !((1u128 << host_bits) - 1) };
    Ok((from_u128(to_u128(ip) & mask, ip.is_ipv4()), bits))
}

fn space(net: IpAddr, bits: u32) -> u128 {
    let host_bits = width(net) - bits;
    if host_bits >= 128 { u128::MAX } else { 1u128 << host_bits }
}

fn subnet(net: IpAddr, bits: u32, newbits: u32, netnum: u128) -> Result<(IpAddr, u32), Failure> {
    let new_len = bits + newbits;
    if new_len > width(net) {
        return Err(format!("insufficient address space to extend prefix of {bits} by {newbits}").into());
    }
    if newbits < 128 && netnum >= (1u128 << newbits) {
        return Err(format!("prefix extension of {newbits} does not accommodate a subnet numbered {netnum}").into());
    }
    let shift = width(net) - new_len;
    let step = if shift >= 128 { 0 } else { netnum << shift };
    Ok((offset(net, step), new_len))
}

fn cidrsubnets(args: &[Value]) -> Result<Value, Failure> {
    let (p, rest) = args.split_first().ok_or("not enough arguments: a prefix is required")?;
    let (net, bits) = prefix(&str_arg(p, "prefix")?)?;
    let base = to_u128(net);
    let total = space(net, bits);
    let mut next: u128 = 0;
    let mut out = Vec::with_capacity(rest.len());
    for (i, nb) in rest.iter().enumerate() {
        let newbits = u32::try_from(int_arg(nb, "newbits")?).map_err(|_| "invalid value for \"newbits\" parameter: must not be negative")?;
        let new_len = bits + newbits;
        if newbits == 0 || new_len > width(net) {
            return Err(format!(
                "invalid value for \"newbits\" parameter: would extend prefix to {new_len} bits, which is too long for an IP{} address",
                if net.is_ipv4() { "v4" } else { "v6" }
            )
            .into());
        }
        let block = space(net, new_len);
        let start = next.div_ceil(block) * block;
        if start >= total || total - start < block {
            return Err(format!(
                "invalid value for \"newbits\" parameter: not enough remaining address space for a subnet with a prefix of {new_len} bits after {}",
                out.last().and_then(Value::as_str).unwrap_or("the start")
            )
            .into());
        }
        let _ = i;
        out.push(Value::from(format!("{}/{new_len}", from_u128(base + start, net.is_ipv4()))));
        next = start + block;
    }
    Ok(Value::Array(out))
}

fn offset(net: IpAddr, n: u128) -> IpAddr {
    from_u128(to_u128(net).wrapping_add(n), net.is_ipv4())
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 { IpAddr::V4(Ipv4Addr::from((n & 0xffff_ffff) as u32)) } else { IpAddr::V6(Ipv6Addr::from(n)) }
}

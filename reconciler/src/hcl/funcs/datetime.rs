//! Date and time functions on literal RFC 3339 timestamps: formatdate, timeadd, timecmp (timestamp() itself is nondeterministic).

use hcl::Value;

use super::{Failure, Outcome, fixed, str_arg};

/// An instant with the UTC offset it was written in.
#[derive(Debug, Clone, Copy)]
struct Time {
    /// Seconds since the Unix epoch (UTC).
    secs: i64,
    nanos: u32,
    /// Offset east of UTC, in seconds.
    offset: i32,
}

const MONTHS: [&str; 12] = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];

/// Calls a date and time function, or `None` when `name` is not one.
pub fn call(name: &str, args: &[Value]) -> Outcome {
    Some(match name {
        "formatdate" => fixed::<2>(args).and_then(|[spec, ts]| formatdate(&str_arg(spec, "format")?, parse(&str_arg(ts, "time")?)?).map(Value::from)),
        "timeadd" => fixed::<2>(args).and_then(|[ts, d]| {
            let t = parse(&str_arg(ts, "timestamp")?)?;
            let nanos = duration(&str_arg(d, "duration")?)?;
            let total = i128::from(t.secs) * 1_000_000_000 + i128::from(t.nanos) + nanos;
            let secs = i64::try_from(total.div_euclid(1_000_000_000)).map_err(|_| "the result is out of range")?;
            let nanos = u32::try_from(total.rem_euclid(1_000_000_000)).unwrap_or(0);
            Ok(Value::from(rfc3339(Time { secs, nanos, offset: t.offset })))
        }),
        "timecmp" => fixed::<2>(args).and_then(|[a, b]| {
            let (a, b) = (parse(&str_arg(a, "timestamp_a")?)?, parse(&str_arg(b, "timestamp_b")?)?);
            Ok(Value::from((a.secs, a.nanos).cmp(&(b.secs, b.nanos)) as i64))
        }),
        _ => return None,
    })
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parse(text: &str) -> Result<Time, Failure> {
    let bad = || Failure::Error(format!("not a valid RFC3339 timestamp: {text:?}"));
    let b = text.as_bytes();
    let num = |from: usize, to: usize| -> Result<i64, Failure> {
        text.get(from..to).filter(|s| s.bytes().all(|c| c.is_ascii_digit())).and_then(|s| s.parse().ok()).ok_or_else(bad)
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (y, mo, d, h, mi, s) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    let mut i = 19;
    let mut nanos = 0u32;
    if b[i] == b'.' {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &text[start..i];
        if frac.is_empty() {
            return Err(bad());
        }
        nanos = format!("{frac:0<9}")[..9].parse().map_err(|_| bad())?;
    }
    let offset = match &text[i..] {
        "Z" => 0,
        zone if zone.len() == 6 && (zone.starts_with('+') || zone.starts_with('-')) && zone.as_bytes()[3] == b':' => {
            let oh = num(i + 1, i + 3)?;
            let om = num(i + 4, i + 6)?;
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60) as i32
        }
        _ => return Err(bad()),
    };
    let month_days = [31, if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] || h > 23 || mi > 59 || s > 59 {
        return Err(bad());
    }
    let local = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + s;
    Ok(Time { secs: local - i64::from(offset), nanos, offset })
}

/// Fields of the local time.
fn fields(t: Time) -> (i64, u32, u32, i64, i64, i64, usize) {
    let local = t.secs + i64::from(t.offset);
    let days = local.div_euclid(86_400);
    let rem = local.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60, days.rem_euclid(7) as usize)
}

fn zone(offset: i32, colon: bool) -> String {
    let sign = if offset < 0 { '-' } else { '+' };
    let a = offset.unsigned_abs();
    if colon { format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60) } else { format!("{sign}{:02}{:02}", a / 3600, a / 60 % 60) }
}

fn rfc3339(t: Time) -> String {
    let (y, m, d, h, mi, s, _) = fields(t);
    let z = if t.offset == 0 { "Z".to_string() } else { zone(t.offset, true) };
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}{z}")
}

fn formatdate(spec: &str, t: Time) -> Result<String, Failure> {
    let (y, m, d, h, mi, s, wd) = fields(t);
    let chars: Vec<char> = spec.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            // A quoted literal; inside it, '' is one quote.
            i += 1;
            loop {
                match (chars.get(i), chars.get(i + 1)) {
                    (Some('\''), Some('\'')) => {
                        out.push('\'');
                        i += 2;
                    }
                    (Some('\''), _) => {
                        i += 1;
                        break;
                    }
                    (Some(&c), _) => {
                        out.push(c);
                        i += 1;
                    }
                    (None, _) => return Err("unterminated literal '".into()),
                }
            }
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let n = chars[i..].iter().take_while(|&&x| x == c).count();
        i += n;
        let h12 = if h % 12 == 0 { 12 } else { h % 12 };
        let text = match (c, n) {
            ('Y', 4) => format!("{y:04}"),
            ('Y', 2) => format!("{:02}", y.rem_euclid(100)),
            ('M', 1) => m.to_string(),
            ('M', 2) => format!("{m:02}"),
            ('M', 3) => MONTHS[(m - 1) as usize][..3].to_string(),
            ('M', 4) => MONTHS[(m - 1) as usize].to_string(),
            ('D', 1) => d.to_string(),
            ('D', 2) => format!("{d:02}"),
            ('E', 3) => DAYS[wd][..3].to_string(),
            ('E', 4) => DAYS[wd].to_string(),
            ('h', 1) => h.to_string(),
            ('h', 2) => format!("{h:02}"),
            ('H', 1) => h12.to_string(),
            ('H', 2) => format!("{h12:02}"),
            ('A', 2) => (if h < 12 { "AM" } else { "PM" }).to_string(),
            ('a', 2) => (if h < 12 { "am" } else { "pm" }).to_string(),
            ('m', 1) => mi.to_string(),
            ('m', 2) => format!("{mi:02}"),
            ('s', 1) => s.to_string(),
            ('s', 2) => format!("{s:02}"),
            ('Z', 5) => zone(t.offset, true),
            ('Z', 4) => zone(t.offset, false),
            ('Z', 3) if t.offset == 0 => "UTC".to_string(),
            ('Z', 3) => zone(t.offset, false),
            ('Z', 1) if t.offset == 0 => "Z".to_string(),
            ('Z', 1) => zone(t.offset, true),
            _ => return Err(format!("invalid date format verb {:?}: unsupported sequence", c.to_string().repeat(n)).into()),
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn duration(text: &str) -> Result<i128, Failure> {
    let bad = || Failure::Error(format!("time: invalid duration {text:?}"));
    let (neg, mut rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += value * unit;
        rest = &rest[u..];
    }
    let nanos = total.round() as i128;
    Ok(if neg { -nanos } else { nanos })
}

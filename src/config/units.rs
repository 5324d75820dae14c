//! Parsers for the human-readable values in `gateway.toml`: durations (`"1m30s"`), sizes
//! (`"64KiB"`) and RFC 3339 dates (`"2021-02-01"`, `"2021-02-01T00:00:00Z"`).
//!
//! They return messages meant for the operator, and never panic or overflow on any input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parses a duration such as `"30s"`, `"250ms"`, `"5m"`, `"1h"`, `"2d"` or `"1m30s"`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`. Whole numbers only; each unit at most once, largest first.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    const HINT: &str = r#"expected a duration such as "30s", "250ms", "5m", "1h" or "1m30s""#;
    if s.is_empty() {
        return Err(format!("empty duration; {HINT}"));
    }
    if s.starts_with('-') {
        return Err(format!("negative duration {s:?}; {HINT}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    // Rank of the previous unit, to insist on "1h30m" rather than "30m1h" or "1s1s".
    let mut last_rank = usize::MAX;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("invalid duration {s:?}; {HINT}"));
        }
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, tail) = tail.split_at(unit_len);
        if unit.is_empty() {
            return Err(if tail.is_empty() {
                format!("duration {s:?} has no unit; {HINT}")
            } else {
                format!("invalid duration {s:?} (whole numbers only); {HINT}")
            });
        }
        let (rank, unit_ms) = match unit {
            "d" => (0, 86_400_000u64),
            "h" => (1, 3_600_000),
            "m" => (2, 60_000),
            "s" => (3, 1_000),
            "ms" => (4, 1),
            _ => return Err(format!("unknown duration unit {unit:?} in {s:?}; {HINT}")),
        };
        if last_rank != usize::MAX && rank <= last_rank {
            return Err(format!(
                "invalid duration {s:?}: write units largest first, each once"
            ));
        }
        last_rank = rank;
        let part = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_ms))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
        total = total
            .checked_add(Duration::from_millis(part))
            .ok_or_else(|| format!("duration {s:?} is too large"))?;
        rest = tail;
    }
    Ok(total)
}

/// Parses a size such as `"512B"`, `"64KiB"`, `"1MiB"`, `"1GiB"` (binary) or `"1KB"`, `"1MB"`,
/// `"1GB"` (decimal). A string of digits alone is a number of bytes. Units are case-insensitive.
pub fn parse_size(s: &str) -> Result<u64, String> {
    const HINT: &str = r#"expected a size such as "512B", "64KiB", "1MiB" or "1MB""#;
    if s.starts_with('-') {
        return Err(format!("negative size {s:?}; {HINT}"));
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(format!("invalid size {s:?}; {HINT}"));
    }
    let (number, unit) = s.split_at(digits);
    let multiplier: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit {unit:?} in {s:?}; {HINT}")),
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses an RFC 3339 date (`"2021-02-01"`, midnight UTC) or date-time with an offset
/// (`"2021-02-01T00:00:00Z"`, `"2021-02-01T01:00:00+01:00"`; fractional seconds are ignored).
/// Dates before 1970 are rejected.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    let bad = || {
        format!(
            r#"invalid date {s:?}; expected an RFC 3339 date "2021-02-01" or date-time "2021-02-01T00:00:00Z""#
        )
    };
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let year = digits(&b[0..4]).ok_or_else(bad)?;
    let month = digits(&b[5..7]).ok_or_else(bad)?;
    let day = digits(&b[8..10]).ok_or_else(bad)?;
    if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
        return Err(format!("{s:?} is not a calendar date"));
    }
    if year < 1970 {
        return Err(format!("date {s:?} is before 1970"));
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if b.len() > 10 {
        secs += parse_time_of_day(s, &b[10..]).ok_or_else(bad)??;
    }
    let secs = u64::try_from(secs).map_err(|_| format!("date {s:?} is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// `THH:MM:SS[.frac](Z|±HH:MM)` → seconds since midnight UTC (may be negative with an offset).
/// `None` = syntax error; `Some(Err)` = a specific message.
fn parse_time_of_day(s: &str, b: &[u8]) -> Option<Result<i64, String>> {
    if b.len() < 9 || !matches!(b[0], b'T' | b't' | b' ') || b[3] != b':' || b[6] != b':' {
        return None;
    }
    let (hour, min, sec) = (digits(&b[1..3])?, digits(&b[4..6])?, digits(&b[7..9])?);
    // RFC 3339 allows a leap second (60); it is folded into the last second of the minute.
    if hour > 23 || min > 59 || sec > 60 {
        return Some(Err(format!("{s:?} is not a valid time of day")));
    }
    let mut rest = &b[9..];
    if rest.first() == Some(&b'.') {
        let frac = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return None;
        }
        rest = &rest[1 + frac..];
    }
    let offset = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (digits(&[*h1, *h2])?, digits(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' { off } else { -off }
        }
        [] => {
            return Some(Err(format!(
                "date-time {s:?} has no time zone; add \"Z\" (UTC) or an offset such as \"+01:00\""
            )));
        }
        _ => return None,
    };
    Some(Ok(hour * 3600 + min * 60 + sec.min(59) - offset))
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-12-03T13:05:09Z` (UTC, whole seconds): the inverse of [`parse_rfc3339`] for times
/// after 1970.
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatted_times_parse_back() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2000-02-29T23:59:59Z",
            "2026-12-03T13:05:09Z",
            "2100-03-01T00:00:00Z",
        ] {
            let t = parse_rfc3339(s).unwrap();
            assert_eq!(format_rfc3339(t), s);
        }
    }

    fn unix(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    #[test]
    fn durations_in_every_unit_and_combined() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn garbage_negative_and_overflowing_durations_are_rejected() {
        for bad in [
            "",
            "30",
            "s",
            "-5s",
            "1.5s",
            "5 s",
            "5sec",
            "30m1h",
            "1s1s",
            "1s ",
            "abc",
            "5S",
            "99999999999999999999s",
            "18446744073709551615h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("-5s").unwrap_err().contains("negative"));
        assert!(
            parse_duration("18446744073709551615h")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn sizes_binary_decimal_and_bare_bytes() {
        assert_eq!(parse_size("512B"), Ok(512));
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("64KiB"), Ok(65_536));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("1KB"), Ok(1_000));
        assert_eq!(parse_size("1MB"), Ok(1_000_000));
        assert_eq!(parse_size("2gb"), Ok(2_000_000_000));
        assert_eq!(parse_size("16kib"), Ok(16_384));
    }

    #[test]
    fn garbage_negative_and_overflowing_sizes_are_rejected() {
        for bad in [
            "",
            "KiB",
            "-1KiB",
            "1.5MiB",
            "1 MiB",
            "1TiB",
            "1XB",
            "99999999999GiB",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_size("99999999999GiB")
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_size("-1KiB").unwrap_err().contains("negative"));
    }

    #[test]
    fn dates_and_date_times() {
        assert_eq!(parse_rfc3339("1970-01-01").map(unix), Ok(0));
        assert_eq!(parse_rfc3339("2021-02-01").map(unix), Ok(1_612_137_600));
        assert_eq!(
            parse_rfc3339("2021-02-01T00:00:00Z").map(unix),
            Ok(1_612_137_600)
        );
        assert_eq!(
            parse_rfc3339("2021-02-01t00:00:00z").map(unix),
            Ok(1_612_137_600)
        );
        assert_eq!(
            parse_rfc3339("2021-02-01T01:00:00+01:00").map(unix),
            Ok(1_612_137_600)
        );
        assert_eq!(
            parse_rfc3339("2021-01-31T23:00:00-01:00").map(unix),
            Ok(1_612_137_600)
        );
        assert_eq!(
            parse_rfc3339("2021-02-01T00:00:00.123Z").map(unix),
            Ok(1_612_137_600)
        );
        assert_eq!(parse_rfc3339("2024-02-29").map(unix), Ok(1_709_164_800));
        assert_eq!(
            parse_rfc3339("2016-12-31T23:59:60Z").map(unix),
            Ok(1_483_228_799)
        );
    }

    #[test]
    fn invalid_dates_are_rejected() {
        for bad in [
            "",
            "2021",
            "2021-2-1",
            "2021-02-30",
            "2023-02-29",
            "2021-13-01",
            "2021-00-10",
            "1969-12-31",
            "2021-02-01T24:00:00Z",
            "2021-02-01T00:00:00",
            "2021-02-01T00:00Z",
            "2021-02-01T00:00:00+1:00",
            "2021-02-01Z",
            "2021-02-01T00:00:00.Z",
            "-2021-02-01",
            "２０２１-02-01",
            "2021-02-01T00:00:00Zjunk",
        ] {
            assert!(parse_rfc3339(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(
            parse_rfc3339("2021-02-01T00:00:00")
                .unwrap_err()
                .contains("time zone")
        );
        assert!(
            parse_rfc3339("1969-12-31")
                .unwrap_err()
                .contains("before 1970")
        );
    }
}

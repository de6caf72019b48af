//! Durations the way etcdctl reads and prints them (Go's
//! `time.ParseDuration` and `time.Duration.String`): `2s`, `500ms`,
//! `1m30s`, `1.5h`; printed as `2.514603ms`, `1.2s`, `1h0m0s`.

use std::time::Duration;

const NANOS_PER_MICRO: u128 = 1_000;
const NANOS_PER_MILLI: u128 = 1_000_000;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Parses a Go-style duration: one or more `<number><unit>` terms, units
/// `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`; a bare `0` is allowed.
pub fn parse(s: &str) -> Result<Duration, String> {
    let invalid = |why: &str| format!("invalid duration {s:?}: {why} (e.g. 2s, 500ms, 1m30s)");
    let text = s.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    if text.is_empty() {
        return Err(invalid("empty"));
    }
    if text.starts_with('-') {
        return Err(invalid("must not be negative"));
    }
    let mut rest = text.strip_prefix('+').unwrap_or(text);
    let mut total_ns: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        rest = &rest[number_len..];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid("expected a number"));
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let unit_ns: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => NANOS_PER_MICRO,
            "ms" => NANOS_PER_MILLI,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "" => return Err(invalid("missing unit")),
            _ => return Err(invalid(&format!("unknown unit {unit:?}"))),
        };
        let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| invalid("number too large"))?
        };
        // The fraction, scaled to the unit and truncated to nanoseconds.
        let mut frac_ns: u128 = 0;
        let mut scale = unit_ns;
        for digit in frac.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            frac_ns += u128::from(digit - b'0') * scale;
        }
        total_ns = whole
            .checked_mul(unit_ns)
            .and_then(|n| n.checked_add(frac_ns))
            .and_then(|n| total_ns.checked_add(n))
            .ok_or_else(|| invalid("too large"))?;
    }
    let secs = u64::try_from(total_ns / NANOS_PER_SEC).map_err(|_| invalid("too large"))?;
    // The remainder is below one second, so it fits in u32.
    let nanos = (total_ns % NANOS_PER_SEC) as u32;
    Ok(Duration::new(secs, nanos))
}

/// Formats like Go's `time.Duration.String()`.
pub fn format_go(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < NANOS_PER_MICRO {
        return format!("{ns}ns");
    }
    if ns < NANOS_PER_MILLI {
        return format!("{}µs", decimal(ns, NANOS_PER_MICRO, 3));
    }
    if ns < NANOS_PER_SEC {
        return format!("{}ms", decimal(ns, NANOS_PER_MILLI, 6));
    }
    let total_secs = ns / NANOS_PER_SEC;
    let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
    let secs = decimal(ns % (60 * NANOS_PER_SEC), NANOS_PER_SEC, 9);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` with up to `digits` fraction digits, trailing zeros dropped.
fn decimal(value: u128, unit: u128, digits: usize) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("100µs"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(parse("1h2m3s4ms"), Ok(Duration::from_millis(3_723_004)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("+3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse(" 3s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn refuses_bad_durations() {
        for bad in ["", "5", "s", "2x", "-1s", "1..5s", "1.2.3s", "2 s", "ms5"] {
            let err = parse(bad).unwrap_err();
            assert!(err.starts_with("invalid duration"), "{bad:?}: {err}");
        }
        assert!(parse("2x").unwrap_err().contains("unknown unit \"x\""));
        assert!(parse("5").unwrap_err().contains("missing unit"));
        assert!(parse("99999999999999999999999h").is_err());
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_go(Duration::ZERO), "0s");
        assert_eq!(format_go(Duration::from_nanos(999)), "999ns");
        assert_eq!(format_go(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(format_go(Duration::from_nanos(2_514_603)), "2.514603ms");
        assert_eq!(format_go(Duration::from_millis(12)), "12ms");
        assert_eq!(format_go(Duration::from_millis(1200)), "1.2s");
        assert_eq!(format_go(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(
            format_go(Duration::from_nanos(3_723_000_000_001)),
            "1h2m3.000000001s"
        );
    }
}

//! [`Time`]: an RFC 3339 timestamp as Kubernetes writes it
//! (`2024-05-01T12:00:00Z`), kept as seconds and nanoseconds since the Unix
//! epoch so that timestamps compare correctly whatever offset they were
//! written with.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time, serialized as an RFC 3339 string in UTC.
///
/// Seconds-precision times print as `2024-05-01T12:00:00Z`; a fraction, when
/// present, is printed with its trailing zeros trimmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    secs: i64,
    nanos: u32,
}

/// Why a string is not an RFC 3339 timestamp.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 time {input:?}: {reason}")]
pub struct TimeError {
    /// The string that was refused.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Time {
    /// The time `secs` seconds after the Unix epoch.
    pub fn from_unix(secs: i64) -> Self {
        Time { secs, nanos: 0 }
    }

    /// The time `secs` seconds plus `nanos` nanoseconds after the Unix epoch.
    ///
    /// # Panics
    /// If `nanos` is one second or more.
    pub fn from_unix_nanos(secs: i64, nanos: u32) -> Self {
        assert!(nanos < 1_000_000_000, "nanos must be below one second");
        Time { secs, nanos }
    }

    /// The current wall-clock time, truncated to whole seconds as Kubernetes
    /// stores `metav1.Time`.
    pub fn now() -> Self {
        let secs = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        Time::from_unix(secs)
    }

    /// Whole seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.secs
    }

    /// The sub-second part, in nanoseconds.
    pub fn subsec_nanos(&self) -> u32 {
        self.nanos
    }

    /// Parses an RFC 3339 timestamp (`2024-05-01T12:00:00Z`,
    /// `2024-05-01T14:00:00.5+02:00`).
    pub fn parse(input: &str) -> Result<Self, TimeError> {
        let err = |reason| TimeError {
            input: input.to_string(),
            reason,
        };
        let b = input.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimeError> {
            let part = &b[range];
            if !part.iter().all(u8::is_ascii_digit) {
                return Err(err("expected digits"));
            }
            Ok(part
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')))
        };
        let year = num(0..4)?;
        if b[4] != b'-' || b[7] != b'-' {
            return Err(err("expected YYYY-MM-DD"));
        }
        let month = num(5..7)?;
        let day = num(8..10)?;
        if !matches!(b[10], b'T' | b't') {
            return Err(err("expected 'T' between date and time"));
        }
        let hour = num(11..13)?;
        if b[13] != b':' || b[16] != b':' {
            return Err(err("expected hh:mm:ss"));
        }
        let minute = num(14..16)?;
        let second = num(17..19)?;
        if !(1..=12).contains(&month) {
            return Err(err("month out of range"));
        }
        if day < 1 || day > days_in_month(year, month) {
            return Err(err("day out of range"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(err("time of day out of range"));
        }
        let mut pos = 19;
        let mut nanos: u32 = 0;
        if b[pos] == b'.' {
            pos += 1;
            let start = pos;
            while pos < b.len() && b[pos].is_ascii_digit() {
                if pos - start < 9 {
                    nanos = nanos * 10 + u32::from(b[pos] - b'0');
                }
                pos += 1;
            }
            let digits = pos - start;
            if digits == 0 {
                return Err(err("empty fraction of a second"));
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset_secs = match b.get(pos) {
            Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if pos + 6 == b.len() => {
                if b[pos + 3] != b':' {
                    return Err(err("expected offset as +hh:mm"));
                }
                let oh = num(pos + 1..pos + 3)?;
                let om = num(pos + 4..pos + 6)?;
                if oh > 23 || om > 59 {
                    return Err(err("offset out of range"));
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'-' { -off } else { off }
            }
            _ => return Err(err("expected 'Z' or an offset at the end")),
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
        Ok(Time { secs, nanos })
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            write!(f, ".{}", frac.trim_end_matches('0'))?;
        }
        f.write_str("Z")
    }
}

impl std::str::FromStr for Time {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Time::parse(s)
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TimeVisitor;
        impl Visitor<'_> for TimeVisitor {
            type Value = Time;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 time string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                Time::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(TimeVisitor)
    }
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(year) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_utc_and_offsets() {
        let t = Time::parse("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(t.unix_seconds(), 1_714_564_800);
        assert_eq!(t.to_string(), "2024-05-01T12:00:00Z");
        let o = Time::parse("2024-05-01T14:00:00+02:00").unwrap();
        assert_eq!(o, t);
        let w = Time::parse("2024-05-01T11:30:00-00:30").unwrap();
        assert_eq!(w, t);
        let f = Time::parse("2024-05-01T12:00:00.250Z").unwrap();
        assert_eq!(f.subsec_nanos(), 250_000_000);
        assert_eq!(f.to_string(), "2024-05-01T12:00:00.25Z");
        assert!(f > t);
        assert_eq!(
            Time::parse("1970-01-01T00:00:00Z").unwrap(),
            Time::from_unix(0)
        );
        assert_eq!(
            Time::parse("1969-12-31T23:59:59Z").unwrap().unix_seconds(),
            -1
        );
    }

    #[test]
    fn refuses_bad_times() {
        for bad in [
            "",
            "2024-05-01",
            "2024-05-01 12:00:00Z",
            "2024-13-01T12:00:00Z",
            "2023-02-29T12:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00Zjunk",
            "20x4-05-01T12:00:00Z",
        ] {
            assert!(Time::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Time::parse("2024-02-29T12:00:00Z").is_ok());
    }

    #[test]
    fn serde_as_string() {
        let t: Time = serde_json::from_str("\"2024-05-01T12:00:00Z\"").unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            "\"2024-05-01T12:00:00Z\""
        );
        let err = serde_json::from_str::<Time>("\"yesterday\"").unwrap_err();
        assert!(err.to_string().contains("invalid RFC 3339 time"), "{err}");
        assert!(serde_json::from_str::<Time>("12").is_err());
    }

    #[test]
    fn now_is_after_2020() {
        assert!(Time::now().unix_seconds() > 1_577_836_800);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(secs in -62_135_596_800i64..253_402_300_799, nanos in 0u32..1_000_000_000) {
            let t = Time::from_unix_nanos(secs, nanos);
            prop_assert_eq!(Time::parse(&t.to_string()).unwrap(), t);
        }
    }
}

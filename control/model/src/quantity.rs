//! Kubernetes resource quantities (`250m`, `1`, `0.5`, `128Mi`, `1G`,
//! `1e3`): exact parsing, comparison, addition and canonical formatting.
//!
//! A [`Quantity`] holds its value as an integer number of milli-units in an
//! `i128` (no floating point anywhere) plus the format it was written in,
//! which decides how it prints. As in Kubernetes, a value with more precision
//! than a milli-unit is rounded up (`0.1m` is `1m`, `1n` is `1m`), and no
//! quantity may exceed 2^63-1 units in magnitude.
//!
//! Canonical form follows Kubernetes: decimal SI values print with the
//! largest suffix that keeps an integer mantissa (`1500m` → `1500m`, `0.5`
//! → `500m`, `1000` → `1k`); binary SI values print with the largest binary
//! suffix that divides them (`1024Mi` → `1Gi`, `0.5Gi` → `512Mi`) and fall
//! back to decimal SI when that is not possible (`1.5Ki` → `1536`); exponent
//! values print as `<mantissa>e<exponent>` with the exponent a multiple of
//! three (`1e3` → `1e3`, `1.5e3` → `1500`).

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Largest magnitude of a quantity, in milli-units: 2^63-1 units.
const MAX_MILLI: i128 = (i64::MAX as i128) * 1000;

/// How a quantity prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum QuantityFormat {
    /// `m`, ``, `k`, `M`, `G`, `T`, `P`, `E` (and `n`, `u` on input).
    #[default]
    DecimalSI,
    /// `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// `e<n>` / `E<n>`.
    DecimalExponent,
}

/// An exact resource quantity.
///
/// Equality, ordering and hashing look at the value only: `1Gi`, `1024Mi`
/// and `1073741824` are equal.
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    milli: i128,
    format: QuantityFormat,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax,
    #[error("unknown quantity suffix {0:?}")]
    Suffix(String),
    #[error("quantity is too large (the limit is 2^63-1)")]
    TooLarge,
}

impl Quantity {
    /// A quantity of `milli` milli-units, printed in `format`.
    ///
    /// # Panics
    /// If `milli` is beyond 2^63-1 units in magnitude.
    pub fn from_milli(milli: i128, format: QuantityFormat) -> Self {
        assert!(milli.abs() <= MAX_MILLI, "quantity out of range");
        Quantity { milli, format }
    }

    /// A whole number of units in decimal SI (`Quantity::from_units(2)` is `2`).
    pub fn from_units(units: i64) -> Self {
        Quantity {
            milli: i128::from(units) * 1000,
            format: QuantityFormat::DecimalSI,
        }
    }

    /// The value in milli-units (`250m` → 250, `1` → 1000).
    pub fn milli_value(&self) -> i128 {
        self.milli
    }

    /// The value in whole units, rounded up (`250m` → 1, `1Ki` → 1024).
    pub fn value(&self) -> i128 {
        self.milli.div_euclid(1000) + i128::from(self.milli.rem_euclid(1000) != 0)
    }

    /// The format the quantity prints in.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// Whether the value is zero.
    pub fn is_zero(&self) -> bool {
        self.milli == 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(&self) -> bool {
        self.milli < 0
    }

    /// The format of a sum or difference: `self`'s, unless `self` is zero,
    /// when it is `other`'s (as in Kubernetes, so that summing from zero
    /// keeps the operands' format).
    fn result_format(&self, other: &Quantity) -> QuantityFormat {
        if self.milli == 0 {
            other.format
        } else {
            self.format
        }
    }

    /// The sum, or `None` beyond the 2^63-1 limit. Keeps `self`'s format
    /// (`other`'s when `self` is zero).
    pub fn checked_add(self, other: Quantity) -> Option<Quantity> {
        let milli = self.milli.checked_add(other.milli)?;
        (milli.abs() <= MAX_MILLI).then_some(Quantity {
            milli,
            format: self.result_format(&other),
        })
    }

    /// The difference, or `None` beyond the 2^63-1 limit; formatted as
    /// [`checked_add`](Quantity::checked_add).
    pub fn checked_sub(self, other: Quantity) -> Option<Quantity> {
        self.checked_add(-other)
    }

    /// Parses a quantity.
    pub fn parse(input: &str) -> Result<Quantity, QuantityError> {
        let (negative, rest) = match input.as_bytes().first() {
            Some(b'-') => (true, &input[1..]),
            Some(b'+') => (false, &input[1..]),
            _ => (false, input),
        };
        let number_len = rest
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(number_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(QuantityError::Syntax);
        }
        let (format, exp10, exp2) = parse_suffix(suffix)?;

        // value = digits / 10^frac_len * 2^exp2 * 10^exp10, in milli-units.
        let frac_part = frac_part.trim_end_matches('0');
        let digits = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 38 {
            return Err(QuantityError::TooLarge);
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| QuantityError::Syntax)?
        };
        let scaled = mantissa
            .checked_mul(1i128 << exp2)
            .ok_or(QuantityError::TooLarge)?;
        let frac_len = i64::try_from(frac_part.len()).map_err(|_| QuantityError::TooLarge)?;
        let shift = 3 + exp10 - frac_len;
        let milli = if scaled == 0 {
            0
        } else if shift >= 0 {
            let factor = u32::try_from(shift)
                .ok()
                .and_then(|s| 10i128.checked_pow(s))
                .ok_or(QuantityError::TooLarge)?;
            scaled.checked_mul(factor).ok_or(QuantityError::TooLarge)?
        } else {
            // Divide, rounding up: more precision than a milli-unit is lost upwards.
            match u32::try_from(-shift)
                .ok()
                .and_then(|s| 10i128.checked_pow(s))
            {
                Some(divisor) => scaled / divisor + i128::from(scaled % divisor != 0),
                None => 1,
            }
        };
        if milli > MAX_MILLI {
            return Err(QuantityError::TooLarge);
        }
        Ok(Quantity {
            milli: if negative { -milli } else { milli },
            format,
        })
    }
}

/// Suffix → (format, power of ten, power of two).
fn parse_suffix(suffix: &str) -> Result<(QuantityFormat, i64, u32), QuantityError> {
    use QuantityFormat::*;
    let decimal = |e| Ok((DecimalSI, e, 0));
    let binary = |e| Ok((BinarySI, 0, e));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exp = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or_else(|| QuantityError::Suffix(suffix.to_string()))?;
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::Suffix(suffix.to_string()));
            }
            // Saturate huge exponents: they are refused or round up later.
            let value: i64 = exp.parse().unwrap_or(if exp.starts_with('-') {
                -10_000
            } else {
                10_000
            });
            Ok((DecimalExponent, value.clamp(-10_000, 10_000), 0))
        }
    }
}

/// Splits a milli value into an integer mantissa and a power-of-ten exponent
/// that is a multiple of three, making the mantissa as small as possible
/// while it stays an integer, the exponent at most `max_exp`.
fn decimal_parts(milli: i128, max_exp: i32) -> (i128, i32) {
    let mut mantissa = milli;
    let mut exp = -3;
    while mantissa != 0 && mantissa % 1000 == 0 && exp < max_exp {
        mantissa /= 1000;
        exp += 3;
    }
    (mantissa, exp)
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli == 0 {
            return f.write_str("0");
        }
        let format = match self.format {
            QuantityFormat::BinarySI
                if self.milli.abs() < 1024 * 1000 || self.milli % 1000 != 0 =>
            {
                QuantityFormat::DecimalSI
            }
            other => other,
        };
        match format {
            QuantityFormat::DecimalSI => {
                let (mantissa, exp) = decimal_parts(self.milli, 18);
                let suffix = match exp {
                    -3 => "m",
                    0 => "",
                    3 => "k",
                    6 => "M",
                    9 => "G",
                    12 => "T",
                    15 => "P",
                    _ => "E",
                };
                write!(f, "{mantissa}{suffix}")
            }
            QuantityFormat::DecimalExponent => {
                let (mantissa, exp) = decimal_parts(self.milli, i32::MAX);
                if exp == 0 {
                    write!(f, "{mantissa}")
                } else {
                    write!(f, "{mantissa}e{exp}")
                }
            }
            QuantityFormat::BinarySI => {
                let mut units = self.milli / 1000;
                let mut index = 0;
                while units % 1024 == 0 && index < 6 {
                    units /= 1024;
                    index += 1;
                }
                let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][index];
                write!(f, "{units}{suffix}")
            }
        }
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}

impl Eq for Quantity {}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.milli.hash(state);
    }
}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl Neg for Quantity {
    type Output = Quantity;
    fn neg(self) -> Quantity {
        Quantity {
            milli: -self.milli,
            ..self
        }
    }
}

/// Exact addition. Values are bounded by 2^63-1 units, so sums of up to
/// 2^50 quantities cannot overflow the `i128` they are held in; use
/// [`Quantity::checked_add`] to stay within the Kubernetes limit.
impl Add for Quantity {
    type Output = Quantity;
    fn add(self, rhs: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + rhs.milli,
            format: self.result_format(&rhs),
        }
    }
}

impl AddAssign for Quantity {
    fn add_assign(&mut self, rhs: Quantity) {
        *self = *self + rhs;
    }
}

/// Exact subtraction (see [`Add`](#impl-Add-for-Quantity) on range).
impl Sub for Quantity {
    type Output = Quantity;
    fn sub(self, rhs: Quantity) -> Quantity {
        Quantity {
            milli: self.milli - rhs.milli,
            format: self.result_format(&rhs),
        }
    }
}

impl SubAssign for Quantity {
    fn sub_assign(&mut self, rhs: Quantity) {
        *self = *self - rhs;
    }
}

impl std::iter::Sum for Quantity {
    fn sum<I: Iterator<Item = Quantity>>(iter: I) -> Quantity {
        iter.fold(Quantity::default(), Add::add)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity (a string such as \"250m\" or \"1Gi\", or a number)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Quantity::parse(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::from_units(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                i64::try_from(v)
                    .map(Quantity::from_units)
                    .map_err(|_| E::custom(QuantityError::TooLarge))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                if !v.is_finite() {
                    return Err(E::custom(QuantityError::Syntax));
                }
                // `Display` for f64 prints the shortest exact decimal, never
                // an exponent: parse that text exactly.
                Quantity::parse(&v.to_string()).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_exactly() {
        let cases: &[(&str, i128, &str)] = &[
            ("250m", 250, "250m"),
            ("1", 1000, "1"),
            ("0.5", 500, "500m"),
            (".5", 500, "500m"),
            ("5.", 5000, "5"),
            ("128Mi", 128 * 1024 * 1024 * 1000, "128Mi"),
            ("1Gi", 1024 * 1024 * 1024 * 1000, "1Gi"),
            ("1024Mi", 1024 * 1024 * 1024 * 1000, "1Gi"),
            ("0.5Gi", 512 * 1024 * 1024 * 1000, "512Mi"),
            ("1.5Ki", 1536 * 1000, "1536"),
            ("1023Ki", 1023 * 1024 * 1000, "1023Ki"),
            ("1G", 1_000_000_000_000, "1G"),
            ("1e3", 1_000_000, "1e3"),
            ("1E3", 1_000_000, "1e3"),
            ("1.5e3", 1_500_000, "1500"),
            ("1e-3", 1, "1e-3"),
            ("1e+3", 1_000_000, "1e3"),
            ("100k", 100_000_000, "100k"),
            ("1000", 1_000_000, "1k"),
            ("1500m", 1500, "1500m"),
            ("1.5", 1500, "1500m"),
            ("2000m", 2000, "2"),
            ("0", 0, "0"),
            ("0Mi", 0, "0"),
            ("-1", -1000, "-1"),
            ("+1", 1000, "1"),
            ("-1Gi", -(1 << 30) * 1000, "-1Gi"),
            ("100n", 1, "1m"),
            ("1u", 1, "1m"),
            ("0.1m", 1, "1m"),
            ("1.0001", 1001, "1001m"),
            ("1E", 1_000_000_000_000_000_000_000, "1E"),
            ("2Ei", (1i128 << 61) * 1000, "2Ei"),
            ("0001.1000", 1100, "1100m"),
            ("1e-30", 1, "1e-3"),
            ("12e2", 1_200_000, "1200"),
        ];
        for (input, milli, canonical) in cases {
            let got = q(input);
            assert_eq!(got.milli_value(), *milli, "{input}");
            assert_eq!(got.to_string(), *canonical, "{input}");
            assert_eq!(q(canonical), got, "{canonical} re-parsed");
        }
    }

    #[test]
    fn refuses_bad_syntax() {
        for bad in [
            "", "-", "+", ".", "1..2", "1.2.3", "abc", "1Mb", "1 Gi", "1i", "1e", "1e+", "1ee3",
            "Gi", "1KI", "1k3", "1e3.5", "--1", "1e3e3",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Quantity::parse("1Mb"),
            Err(QuantityError::Suffix("Mb".into()))
        );
    }

    #[test]
    fn refuses_too_large() {
        assert_eq!(Quantity::parse("1e400"), Err(QuantityError::TooLarge));
        assert_eq!(Quantity::parse("10E"), Err(QuantityError::TooLarge));
        assert_eq!(Quantity::parse("8Ei"), Err(QuantityError::TooLarge));
        assert!(Quantity::parse("9223372036854775807").is_ok());
        assert_eq!(
            Quantity::parse("9223372036854775808"),
            Err(QuantityError::TooLarge)
        );
        assert_eq!(
            Quantity::parse(&"9".repeat(60)),
            Err(QuantityError::TooLarge)
        );
    }

    #[test]
    fn whole_unit_value_rounds_up() {
        assert_eq!(q("250m").value(), 1);
        assert_eq!(q("2").value(), 2);
        assert_eq!(q("1Ki").value(), 1024);
        assert_eq!(q("-250m").value(), 0);
        assert_eq!(q("-1250m").value(), -1);
    }

    #[test]
    fn compares_and_adds_by_value() {
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1k"), q("1e3"));
        assert!(q("1G") < q("1Gi"));
        assert!(q("999m") < q("1"));
        assert!(q("-1") < q("0"));
        let sum = q("250m") + q("750m");
        assert_eq!(sum, q("1"));
        assert_eq!(sum.to_string(), "1");
        let mut mem = q("512Mi");
        mem += q("512Mi");
        assert_eq!(mem.to_string(), "1Gi");
        mem -= q("1Gi");
        assert!(mem.is_zero());
        assert_eq!((q("1") - q("1500m")).to_string(), "-500m");
        let total: Quantity = ["100m", "200m", "0.7"].iter().map(|s| q(s)).sum();
        assert_eq!(total, q("1"));
        let mem: Quantity = ["512Mi", "512Mi"].iter().map(|s| q(s)).sum();
        assert_eq!(
            mem.to_string(),
            "1Gi",
            "a sum from zero keeps the binary format"
        );
        assert_eq!((Quantity::default() - q("1Ki")).to_string(), "-1Ki");
        assert_eq!(q("1").checked_add(q("1")), Some(q("2")));
        assert_eq!(q("7Ei").checked_add(q("1Ei")), None);
        assert_eq!(q("1").checked_sub(q("3")), Some(q("-2")));
        assert!(q("-1").is_negative());
    }

    #[test]
    fn serde_strings_and_numbers() {
        let v: Quantity = serde_json::from_str("\"128Mi\"").unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), "\"128Mi\"");
        let n: Quantity = serde_json::from_str("2").unwrap();
        assert_eq!(n, q("2"));
        let f: Quantity = serde_json::from_str("0.5").unwrap();
        assert_eq!(f.to_string(), "500m");
        let neg: Quantity = serde_json::from_str("-3").unwrap();
        assert_eq!(neg, q("-3"));
        let big: Quantity = serde_json::from_str("1e3").unwrap();
        assert_eq!(big, q("1k"));
        let err = serde_json::from_str::<Quantity>("\"12XB\"").unwrap_err();
        assert!(err.to_string().contains("unknown quantity suffix"), "{err}");
        assert!(serde_json::from_str::<Quantity>("true").is_err());
        assert!(serde_json::from_str::<Quantity>("18446744073709551615").is_err());
    }

    fn format_strategy() -> impl Strategy<Value = QuantityFormat> {
        prop_oneof![
            Just(QuantityFormat::DecimalSI),
            Just(QuantityFormat::BinarySI),
            Just(QuantityFormat::DecimalExponent),
        ]
    }

    proptest! {
        #[test]
        fn canonical_round_trip(milli in -MAX_MILLI..=MAX_MILLI, format in format_strategy()) {
            let quantity = Quantity::from_milli(milli, format);
            let text = quantity.to_string();
            let back = Quantity::parse(&text).unwrap();
            prop_assert_eq!(back.milli_value(), milli, "{}", text);
            // Canonical text is a fixed point.
            prop_assert_eq!(back.to_string(), text);
        }

        #[test]
        fn small_values_round_trip(milli in -10_000_000i128..10_000_000, format in format_strategy()) {
            let quantity = Quantity::from_milli(milli, format);
            prop_assert_eq!(Quantity::parse(&quantity.to_string()).unwrap(), quantity);
        }

        #[test]
        fn decimal_text_parses_exactly(int in 0u64..1_000_000_000, frac in 0u32..1000, suffix in 0usize..4) {
            let (s, mul) = [("", 1i128), ("k", 1000), ("M", 1_000_000), ("G", 1_000_000_000)][suffix];
            let text = format!("{int}.{frac:03}{s}");
            let expected = (i128::from(int) * 1000 + i128::from(frac)) * mul;
            prop_assert_eq!(Quantity::parse(&text).unwrap().milli_value(), expected);
        }

        #[test]
        fn binary_text_parses_exactly(units in 0i64..1_000_000, power in 0u32..5) {
            let suffix = ["", "Ki", "Mi", "Gi", "Ti"][power as usize];
            let text = format!("{units}{suffix}");
            let expected = i128::from(units) * (1i128 << (10 * power)) * 1000;
            prop_assert_eq!(Quantity::parse(&text).unwrap().milli_value(), expected);
        }

        #[test]
        fn addition_is_exact(a in -MAX_MILLI / 4..MAX_MILLI / 4, b in -MAX_MILLI / 4..MAX_MILLI / 4) {
            let qa = Quantity::from_milli(a, QuantityFormat::DecimalSI);
            let qb = Quantity::from_milli(b, QuantityFormat::BinarySI);
            prop_assert_eq!((qa + qb).milli_value(), a + b);
            prop_assert_eq!(qa + qb, qb + qa);
            prop_assert_eq!((qa + qb) - qb, qa);
            prop_assert_eq!(qa.cmp(&qb), a.cmp(&b));
        }
    }
}

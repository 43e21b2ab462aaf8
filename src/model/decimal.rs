//! Exact decimal arithmetic with PostgreSQL's rules for numeric: scales of sums and
//! products, the result scale of division (`select_div_scale`) and rounding half away
//! from zero. Numerics never pass through f64.

use std::cmp::Ordering;

use num_bigint::{BigInt, Sign};
use num_integer::Integer;
use num_traits::{Signed, ToPrimitive, Zero};

/// A decimal number `mant * 10^-scale` with the display scale PostgreSQL would keep.
#[derive(Debug, Clone)]
pub struct Decimal {
    /// Unscaled digits.
    pub mant: BigInt,
    /// Number of digits after the decimal point.
    pub scale: u32,
}

fn pow10(n: u32) -> BigInt {
    num_traits::pow(BigInt::from(10u8), n as usize)
}

impl Decimal {
    /// A whole number.
    pub fn from_i64(v: i64) -> Decimal {
        Decimal { mant: BigInt::from(v), scale: 0 }
    }

    /// Decodes PostgreSQL's binary numeric; `None` for NaN and infinities.
    pub fn from_pg_binary(raw: &[u8]) -> Result<Option<Decimal>, String> {
        if raw.len() < 8 {
            return Err("numeric: short buffer".into());
        }
        let rd = |i: usize| i16::from_be_bytes([raw[i], raw[i + 1]]);
        let ndigits = usize::try_from(rd(0)).map_err(|_| "numeric: negative digit count")?;
        let weight = rd(2) as i64;
        let sign = u16::from_be_bytes([raw[4], raw[5]]);
        let dscale = u16::from_be_bytes([raw[6], raw[7]]) as u32;
        if sign == 0xC000 || sign == 0xD000 || sign == 0xF000 {
            return Ok(None);
        }
        // PostgreSQL's own checks on external numerics (numeric_recv).
        if sign != 0 && sign != 0x4000 {
            return Err("numeric: invalid sign".into());
        }
        if dscale > 0x3FFF {
            return Err("numeric: invalid scale".into());
        }
        if raw.len() != 8 + 2 * ndigits {
            return Err("numeric: digit count does not match the length".into());
        }
        let mut n = BigInt::zero();
        for i in 0..ndigits {
            let d = rd(8 + 2 * i);
            if !(0..10000).contains(&d) {
                return Err("numeric: invalid digit".into());
            }
            n = n * 10000 + BigInt::from(d);
        }
        // value = n * 10^(4*(weight - ndigits + 1)); mant = value * 10^dscale
        let exp = 4 * (weight - ndigits as i64 + 1) + dscale as i64;
        let mant = if exp >= 0 { n * pow10(exp as u32) } else { n / pow10((-exp) as u32) };
        let mant = if sign == 0x4000 { -mant } else { mant };
        Ok(Some(Decimal { mant, scale: dscale }))
    }

    /// Decodes Redshift's binary NUMERIC: an 8-byte (precision up to 19) or 16-byte big-endian
    /// two's-complement unscaled integer; the scale comes from the column's type modifier
    /// (as the Redshift JDBC driver's `ByteConverter.redshiftNumeric` reads it).
    pub fn from_redshift_binary(raw: &[u8], scale: u32) -> Result<Decimal, String> {
        if raw.len() != 8 && raw.len() != 16 {
            return Err(format!("Redshift numeric: {} bytes, not 8 or 16", raw.len()));
        }
        Ok(Decimal { mant: BigInt::from_signed_bytes_be(raw), scale })
    }

    /// Parses plain decimal text such as `-12.50` or `3`.
    pub fn parse(text: &str) -> Option<Decimal> {
        let t = text.trim();
        let (neg, body) = match t.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, t.strip_prefix('+').unwrap_or(t)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let digits = format!("{int}{frac}");
        let mant: BigInt = if digits.is_empty() { BigInt::zero() } else { digits.parse().ok()? };
        Some(Decimal { mant: if neg { -mant } else { mant }, scale: frac.len() as u32 })
    }

    /// Same value with at least `scale` fractional digits (never drops digits).
    pub fn rescale_up(&self, scale: u32) -> Decimal {
        if scale <= self.scale {
            return self.clone();
        }
        Decimal { mant: &self.mant * pow10(scale - self.scale), scale }
    }

    /// Rounds half away from zero to `scale` digits (PostgreSQL `round(numeric, s)`).
    pub fn round(&self, scale: i32) -> Decimal {
        let target = scale.max(0) as u32;
        if scale >= 0 && target >= self.scale {
            return self.rescale_up(target);
        }
        let drop = (self.scale as i64 - scale as i64) as u32;
        let m = round_div(&self.mant, &pow10(drop));
        if scale >= 0 {
            Decimal { mant: m, scale: target }
        } else {
            Decimal { mant: m * pow10((-scale) as u32), scale: 0 }
        }
    }

    /// Exact sum; scale is the larger of the two.
    pub fn add(&self, o: &Decimal) -> Decimal {
        let s = self.scale.max(o.scale);
        Decimal { mant: self.rescale_up(s).mant + o.rescale_up(s).mant, scale: s }
    }

    /// Exact difference.
    pub fn sub(&self, o: &Decimal) -> Decimal {
        self.add(&o.neg())
    }

    /// Negation.
    pub fn neg(&self) -> Decimal {
        Decimal { mant: -self.mant.clone(), scale: self.scale }
    }

    /// Exact product; scale is the sum of scales.
    pub fn mul(&self, o: &Decimal) -> Decimal {
        Decimal { mant: &self.mant * &o.mant, scale: self.scale + o.scale }
    }

    /// Division with PostgreSQL's result scale; `None` when dividing by zero.
    pub fn div(&self, o: &Decimal) -> Option<Decimal> {
        if o.mant.is_zero() {
            return None;
        }
        let rscale = self.div_scale(o);
        Some(self.div_to_scale(o, rscale))
    }

    /// Division rounded half away from zero to exactly `rscale` digits.
    pub fn div_to_scale(&self, o: &Decimal, rscale: u32) -> Decimal {
        // a/b = (ma/10^sa)/(mb/10^sb); q*10^r = ma*10^(r+sb-sa)/mb
        let e = rscale as i64 + o.scale as i64 - self.scale as i64;
        let (num, den) = if e >= 0 {
            (&self.mant * pow10(e as u32), o.mant.clone())
        } else {
            (self.mant.clone(), &o.mant * pow10((-e) as u32))
        };
        Decimal { mant: round_div(&num, &den), scale: rscale }
    }

    /// PostgreSQL's `select_div_scale`.
    fn div_scale(&self, o: &Decimal) -> u32 {
        let (w1, d1) = self.weight_and_first_digit();
        let (w2, d2) = o.weight_and_first_digit();
        let mut qweight = w1 - w2;
        if d1 <= d2 {
            qweight -= 1;
        }
        let rscale = 16 - qweight * 4;
        let rscale = rscale.max(self.scale as i64).max(o.scale as i64).max(0);
        rscale.min(1000) as u32
    }

    /// Weight and leading digit in PostgreSQL's base-10000 representation.
    fn weight_and_first_digit(&self) -> (i64, i64) {
        if self.mant.is_zero() {
            return (0, 0);
        }
        let digits = self.mant.abs().to_string();
        let n_int = digits.len() as i64 - self.scale as i64; // digits before the point
        if n_int > 0 {
            let weight = (n_int - 1) / 4;
            let lead = ((n_int - 1) % 4 + 1) as usize;
            (weight, digits[..lead].parse().unwrap_or(0))
        } else {
            // value < 1: groups of four fractional digits
            let zeros = (-n_int) as usize; // leading fractional zeros
            let group = zeros / 4; // index of first non-zero group (0-based)
            let padded = format!("{}{}", "0".repeat(zeros), digits);
            let start = group * 4;
            let end = (start + 4).min(padded.len());
            let mut g = padded[start..end].to_string();
            while g.len() < 4 {
                g.push('0');
            }
            (-(group as i64) - 1, g.parse().unwrap_or(0))
        }
    }

    /// Compares values (not representations): 1.0 == 1.00.
    pub fn cmp_value(&self, o: &Decimal) -> Ordering {
        let s = self.scale.max(o.scale);
        self.rescale_up(s).mant.cmp(&o.rescale_up(s).mant)
    }

    /// Value without trailing fractional zeros, for hashing and grouping.
    pub fn normalized(&self) -> Decimal {
        let mut d = self.clone();
        while d.scale > 0 && (&d.mant % 10u8).is_zero() {
            d.mant /= 10u8;
            d.scale -= 1;
        }
        d
    }

    /// Nearest f64 (for mixed numeric/float arithmetic, as PostgreSQL's implicit cast does).
    pub fn to_f64(&self) -> f64 {
        self.to_string().parse().unwrap_or(f64::NAN)
    }

    /// The value as i64 after rounding half away from zero, if it fits.
    pub fn to_i64_rounded(&self) -> Option<i64> {
        self.round(0).mant.to_i64()
    }

    /// True when the value is zero.
    pub fn is_zero(&self) -> bool {
        self.mant.is_zero()
    }
}

/// Integer division rounding half away from zero.
fn round_div(num: &BigInt, den: &BigInt) -> BigInt {
    let (q, r) = num.div_rem(den);
    if r.is_zero() {
        return q;
    }
    let twice = r.abs() * 2u8;
    if twice >= den.abs() {
        let negative = (num.sign() == Sign::Minus) != (den.sign() == Sign::Minus);
        if negative {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

impl std::fmt::Display for Decimal {
    /// Plain notation with exactly `scale` fractional digits, like PostgreSQL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let neg = self.mant.sign() == Sign::Minus;
        let digits = self.mant.abs().to_string();
        let scale = self.scale as usize;
        let padded = if digits.len() <= scale {
            format!("{}{}", "0".repeat(scale + 1 - digits.len()), digits)
        } else {
            digits
        };
        let (int, frac) = padded.split_at(padded.len() - scale);
        if neg {
            f.write_str("-")?;
        }
        f.write_str(int)?;
        if scale > 0 {
            write!(f, ".{frac}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn division_matches_postgres_scales() {
        // values checked against PostgreSQL 15
        assert_eq!(d("10").div(&d("3")).unwrap().to_string(), "3.3333333333333333");
        assert_eq!(d("1").div(&d("3")).unwrap().to_string(), "0.33333333333333333333");
        assert_eq!(d("12345.67").div(&d("7")).unwrap().to_string(), "1763.6671428571428571");
        assert_eq!(d("2").div(&d("3")).unwrap().to_string(), "0.66666666666666666667");
        assert_eq!(d("-2").div(&d("3")).unwrap().to_string(), "-0.66666666666666666667");
        assert_eq!(d("100000").div(&d("4")).unwrap().to_string(), "25000.000000000000");
        assert_eq!(d("0.001").div(&d("3")).unwrap().to_string(), "0.00033333333333333333");
        assert!(d("1").div(&d("0")).is_none());
    }

    #[test]
    fn arithmetic_and_render() {
        assert_eq!(d("1.5").add(&d("2.25")).to_string(), "3.75");
        assert_eq!(d("1.5").mul(&d("2.25")).to_string(), "3.375");
        assert_eq!(d("-0.05").to_string(), "-0.05");
        assert_eq!(d("2.345").round(2).to_string(), "2.35");
        assert_eq!(d("-2.345").round(2).to_string(), "-2.35");
        assert_eq!(d("1234.5").round(-2).to_string(), "1200");
        assert_eq!(d("1.10").cmp_value(&d("1.1")), Ordering::Equal);
        assert_eq!(d("1.100").normalized().to_string(), "1.1");
    }

    #[test]
    fn binary_numeric() {
        // 12.50: ndigits 2, weight 0, sign 0, dscale 2, digits [12, 5000]
        let raw = [0, 2, 0, 0, 0, 0, 0, 2, 0, 12, 0x13, 0x88];
        assert_eq!(Decimal::from_pg_binary(&raw).unwrap().unwrap().to_string(), "12.50");
        // -100000: ndigits 1, weight 1, sign 0x4000, dscale 0, digits [10]
        let raw = [0, 1, 0, 1, 0x40, 0, 0, 0, 0, 10];
        assert_eq!(Decimal::from_pg_binary(&raw).unwrap().unwrap().to_string(), "-100000");
    }
}

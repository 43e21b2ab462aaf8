//! A duration as a config file spells it ("250ms", "5s", "2m", "1h", a bare number of
//! seconds), parsed once when the config loads so no caller parses it again.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A configured duration, read from its text form when the config is deserialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span(pub Duration);

impl Span {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Parses "250ms", "5s", "2m" / "2min", "1h" or a bare number of seconds.
    pub fn parse(text: &str) -> Result<Span, String> {
        let t = text.trim();
        let (num, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
            Some(i) => (&t[..i], t[i..].trim()),
            None => (t, "s"),
        };
        let n: f64 = num.parse().map_err(|_| format!("{text:?} is not a duration"))?;
        let secs = match unit {
            "ms" => n / 1000.0,
            "s" => n,
            "m" | "min" => n * 60.0,
            "h" => n * 3600.0,
            _ => return Err(format!("{text:?}: unknown unit {unit:?}")),
        };
        Duration::try_from_secs_f64(secs).map(Span).map_err(|_| format!("{text:?} is out of range"))
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let text = String::deserialize(d)?;
        Span::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_parse_each_unit_and_refuse_the_rest() {
        assert_eq!(Span::parse("250ms").unwrap().get(), Duration::from_millis(250));
        assert_eq!(Span::parse("2m").unwrap().get(), Duration::from_secs(120));
        assert_eq!(Span::parse("3").unwrap().get(), Duration::from_secs(3));
        assert!(Span::parse("3 parsecs").is_err());
        assert!(Span::parse("1e400").is_err());
    }
}

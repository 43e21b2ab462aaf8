//! Flight SQL bearer tokens any replica accepts: the user and an expiry, signed.
//!
//! A token is `tm1.<user, base64url>.<expiry, unix seconds>.<HMAC-SHA256 of the first three
//! parts, base64url>`. The first of `[flight] token_keys` signs, every one verifies, so keys
//! rotate without refusing live tokens: put the new key first, drop the old one after
//! `token_ttl`. Revocation is by expiry. Without configured keys each process draws a random
//! key, and its tokens hold on that replica only (as before the fleet).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ring::hmac;

use crate::config::FlightConfig;
use crate::error::{Error, Result};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;
const PREFIX: &str = "tm1";

/// Why a token was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a token, or not signed by any of the keys.
    Invalid,
    /// Signed, but past its expiry.
    Expired,
}

/// The keys tokens are signed and verified with, and how long a new token lives.
pub struct Tokens {
    keys: Vec<hmac::Key>,
    ttl: Duration,
}

impl Tokens {
    /// The configured keys (each at least 32 bytes), or a random one for this process.
    pub fn new(cfg: &FlightConfig) -> Result<Tokens> {
        let from_file = match &cfg.token_keys_file {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                Error::Config(format!("[flight] token_keys_file: cannot read {path}: {e}"))
            })?,
            None => String::new(),
        };
        let listed = cfg.token_keys.iter().map(|k| k.expose());
        let lines = from_file.lines().map(str::trim).filter(|l| !l.is_empty());
        let mut keys = Vec::new();
        for k in listed.chain(lines) {
            if k.len() < 32 {
                let why = "[flight] token_keys: each key needs 32 bytes at least";
                return Err(Error::Config(why.into()));
            }
            keys.push(hmac::Key::new(hmac::HMAC_SHA256, k.as_bytes()));
        }
        if keys.is_empty() {
            let rng = ring::rand::SystemRandom::new();
            let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
                .map_err(|_| Error::internal("no randomness for the Flight token key"))?;
            keys.push(key);
        }
        Ok(Tokens { keys, ttl: cfg.token_ttl.get() })
    }

    /// A token for `user`, valid for the configured time from `now`.
    pub fn issue(&self, user: &str, now: SystemTime) -> String {
        let expiry = (now + self.ttl).duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let body = format!("{PREFIX}.{}.{expiry}", B64.encode(user));
        let tag = hmac::sign(&self.keys[0], body.as_bytes());
        format!("{body}.{}", B64.encode(tag.as_ref()))
    }

    /// The user a token was issued to, if one of the keys signed it and it has not expired.
    pub fn verify(&self, token: &str, now: SystemTime) -> std::result::Result<String, Refused> {
        let (body, tag) = token.rsplit_once('.').ok_or(Refused::Invalid)?;
        let tag = B64.decode(tag).map_err(|_| Refused::Invalid)?;
        if !self.keys.iter().any(|k| hmac::verify(k, body.as_bytes(), &tag).is_ok()) {
            return Err(Refused::Invalid);
        }
        let mut parts = body.split('.');
        let (Some(PREFIX), Some(user), Some(expiry), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Refused::Invalid);
        };
        let user = B64.decode(user).ok().and_then(|u| String::from_utf8(u).ok());
        let expiry: u64 = expiry.parse().map_err(|_| Refused::Invalid)?;
        let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if now >= expiry {
            return Err(Refused::Expired);
        }
        user.ok_or(Refused::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(keys: &[&str], ttl_secs: u64) -> Tokens {
        let toml = format!(
            "token_keys = [{}]\ntoken_ttl = \"{ttl_secs}s\"",
            keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ")
        );
        let cfg: FlightConfig = toml::from_str(&toml).expect("flight config");
        Tokens::new(&cfg).expect("tokens")
    }

    const OLD: &str = "an old key of thirty-two bytes at least";
    const NEW: &str = "a new key, also thirty-two bytes long or more";

    #[test]
    fn any_key_verifies_the_first_signs_and_expiry_is_enforced() {
        let now = SystemTime::now();
        let old = tokens(&[OLD], 60);
        let rotated = tokens(&[NEW, OLD], 60);
        let t = old.issue("alice", now);
        assert_eq!(rotated.verify(&t, now), Ok("alice".into()), "the old key still verifies");
        let retired = tokens(&[NEW], 60);
        assert_eq!(retired.verify(&t, now), Err(Refused::Invalid), "a retired key does not");
        assert_eq!(retired.verify(&rotated.issue("bob", now), now), Ok("bob".into()));
        let later = now + Duration::from_secs(61);
        assert_eq!(old.verify(&t, later), Err(Refused::Expired));
        let forged = t.replace(&B64.encode("alice"), &B64.encode("admin"));
        assert_eq!(old.verify(&forged, now), Err(Refused::Invalid));
        assert_eq!(old.verify("garbage", now), Err(Refused::Invalid));
    }

    #[test]
    fn keys_come_from_the_file_too() {
        let path = std::env::temp_dir().join(format!("tm-token-keys-{}", std::process::id()));
        std::fs::write(&path, format!("\n{NEW}\n{OLD}\n")).expect("write keys");
        let toml = format!("token_keys_file = \"{}\"", path.display());
        let cfg: FlightConfig = toml::from_str(&toml).expect("config");
        let from_file = Tokens::new(&cfg).expect("tokens");
        let now = SystemTime::now();
        let by_old = tokens(&[OLD], 60).issue("alice", now);
        assert_eq!(from_file.verify(&by_old, now), Ok("alice".into()));
        assert_eq!(tokens(&[NEW], 60).verify(&from_file.issue("bob", now), now), Ok("bob".into()));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn short_keys_are_refused() {
        let cfg: FlightConfig = toml::from_str("token_keys = [\"short\"]").expect("config");
        assert!(Tokens::new(&cfg).is_err());
    }
}

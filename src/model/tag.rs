//! The command tag of an answer, as PostgreSQL's CommandComplete names it.

use std::fmt;

/// What kind of statement an answer is for; pgwire writes it as the CommandComplete tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    /// Rows of a query (pgwire adds the row count).
    Select,
    /// Rows of a SHOW.
    Show,
    /// The lines of an EXPLAIN.
    Explain,
    /// Rows fetched from a cursor.
    Fetch,
    /// A `COPY ... TO STDOUT`.
    Copy,
    /// A SET (of a setting or of the transaction's characteristics).
    Set,
    /// A RESET.
    Reset,
    /// `DISCARD <what>`, upper case (ALL puts the settings back).
    Discard(String),
    /// Any other tag, as written (BEGIN, COMMIT, SAVEPOINT, DEALLOCATE, ...).
    Other(String),
}

impl Tag {
    /// The tag a statement starting with `word` answers with (a pass-through's tag).
    pub fn of_word(word: &str) -> Tag {
        match word.to_ascii_uppercase().as_str() {
            "SELECT" => Tag::Select,
            "SHOW" => Tag::Show,
            "EXPLAIN" => Tag::Explain,
            "FETCH" => Tag::Fetch,
            other => Tag::Other(other.to_string()),
        }
    }

    /// Whether the statement may have changed settings the client is told about.
    pub fn changes_settings(&self) -> bool {
        matches!(self, Tag::Set | Tag::Reset) || matches!(self, Tag::Discard(w) if w == "ALL")
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tag::Select => f.write_str("SELECT"),
            Tag::Show => f.write_str("SHOW"),
            Tag::Explain => f.write_str("EXPLAIN"),
            Tag::Fetch => f.write_str("FETCH"),
            Tag::Copy => f.write_str("COPY"),
            Tag::Set => f.write_str("SET"),
            Tag::Reset => f.write_str("RESET"),
            Tag::Discard(what) => write!(f, "DISCARD {what}"),
            Tag::Other(t) => f.write_str(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tag;

    #[test]
    fn tags_read_as_postgresql_writes_them() {
        assert_eq!(Tag::of_word("select"), Tag::Select);
        assert_eq!(Tag::of_word("with").to_string(), "WITH");
        assert_eq!(Tag::Discard("ALL".into()).to_string(), "DISCARD ALL");
        assert!(Tag::Discard("ALL".into()).changes_settings());
        assert!(!Tag::Discard("PLANS".into()).changes_settings());
    }
}

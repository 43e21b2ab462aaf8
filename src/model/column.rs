//! What the warehouse says a result holds and what a query is given: columns, their types and
//! modifiers, parameters, and the session parameters that travel with a statement.

use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};

/// A query parameter, always sent in text format so the warehouse parses it with the
/// parameter's own type (exactly as psql would), whatever that type is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Param {
    /// SQL NULL.
    Null,
    /// Text form of the value (numbers keep their exact digits).
    Text(String),
}

impl ToSql for Param {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Param::Null => Ok(IsNull::Yes),
            Param::Text(s) => {
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }
    to_sql_checked!();
}

/// A result column as the warehouse describes it.
#[derive(Debug, Clone)]
pub struct Column {
    /// Output name.
    pub name: String,
    /// PostgreSQL type the engine holds the values as.
    pub ty: Type,
    /// Type modifier (`numeric(p,s)`: `((p << 16) | s) + 4`); -1 when there is none.
    pub typmod: i32,
    /// For a column held as its text (an array, an `int2vector`): the warehouse's own type,
    /// which clients are told (pgwire sends its OID and, in binary, its binary form).
    pub shown: Option<Type>,
}

impl Column {
    /// A column of type `ty` without a type modifier.
    pub fn new(name: impl Into<String>, ty: Type) -> Column {
        Column { name: name.into(), ty, typmod: -1, shown: None }
    }

    /// A column as tokio-postgres describes it.
    pub fn of(c: &tokio_postgres::Column) -> Column {
        Column {
            name: c.name().into(),
            ty: c.type_().clone(),
            typmod: c.type_modifier(),
            shown: None,
        }
    }
}

/// The `(precision, scale)` a `numeric` type modifier declares (`numeric(p,s)`: `((p << 16) |
/// (s & 0x7ff)) + 4`, the scale possibly negative); None for unconstrained numeric.
pub fn numeric_typmod(typmod: i32) -> Option<(i32, i32)> {
    if typmod < 4 {
        return None;
    }
    let m = typmod - 4;
    Some(((m >> 16) & 0xffff, ((m & 0x7ff) ^ 1024) - 1024))
}

/// What the warehouse says about a statement without running it.
#[derive(Debug, Clone)]
pub struct Described {
    /// Output columns.
    pub columns: Vec<Column>,
    /// Parameter types the warehouse inferred.
    pub params: Vec<Type>,
}

/// Session parameters a client set that change how the warehouse evaluates its queries
/// (`timezone`, `datestyle`, `search_path`, ...), as (name, value) pairs in a stable order.
pub type SessionParams = Vec<(String, String)>;

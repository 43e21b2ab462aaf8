//! A forwarded statement's answer as the warehouse sent it, message by message (the pgwire
//! fast path relays these bytes without decoding the rows).

use bytes::BytesMut;

/// One message of a forwarded statement's answer.
#[derive(Debug)]
pub enum Reply {
    /// RowDescription body (field count first), as the warehouse sent it.
    Fields(BytesMut),
    /// DataRow: the field count and the fields' bytes as the warehouse sent them.
    Row(i16, BytesMut),
    /// CommandComplete: the command tag.
    Done(String),
    /// EmptyQueryResponse.
    Empty,
}

//! A minimal PostgreSQL protocol client (startup with trust auth, simple queries), for tests
//! that must see what drivers hide: the transaction status of each ReadyForQuery, command
//! tags, NoticeResponse and ErrorResponse SQLSTATEs, CopyData framing.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One backend message: its type byte and body.
#[derive(Debug, Clone)]
pub struct Msg {
    /// Message type (`C`, `E`, `N`, `T`, `D`, `d`, `Z`, ...).
    pub tag: u8,
    /// Body after the length.
    pub body: Vec<u8>,
}

impl Msg {
    /// A field of an ErrorResponse / NoticeResponse (`C` SQLSTATE, `M` message, `S` severity).
    pub fn field(&self, code: u8) -> Option<String> {
        let mut rest = &self.body[..];
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                return None;
            }
            let end = tail.iter().position(|b| *b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }

    /// The text of a CommandComplete.
    pub fn command_tag(&self) -> String {
        String::from_utf8_lossy(self.body.strip_suffix(&[0]).unwrap_or(&self.body)).into_owned()
    }
}

/// The answer to one simple query.
#[derive(Debug)]
pub struct Reply {
    /// Every message before ReadyForQuery.
    pub msgs: Vec<Msg>,
    /// The ReadyForQuery status: `I` idle, `T` in a block, `E` in a failed block.
    pub status: char,
}

impl Reply {
    /// CommandComplete tags in order.
    pub fn tags(&self) -> Vec<String> {
        self.msgs.iter().filter(|m| m.tag == b'C').map(Msg::command_tag).collect()
    }

    /// The SQLSTATE of the ErrorResponse, if any.
    pub fn error(&self) -> Option<String> {
        self.msgs.iter().find(|m| m.tag == b'E').and_then(|m| m.field(b'C'))
    }

    /// SQLSTATEs of the NoticeResponses (warnings and notices).
    pub fn notices(&self) -> Vec<String> {
        self.msgs.iter().filter(|m| m.tag == b'N').filter_map(|m| m.field(b'C')).collect()
    }

    /// Bodies of the CopyData messages.
    pub fn copy_data(&self) -> Vec<Vec<u8>> {
        self.msgs.iter().filter(|m| m.tag == b'd').map(|m| m.body.clone()).collect()
    }
}

/// A connection speaking the protocol by hand.
pub struct RawPg(TcpStream, Option<(i32, Vec<u8>)>);

impl RawPg {
    /// Connects to 127.0.0.1:`port` as `user` to `db` (trust auth) and reads to ReadyForQuery.
    pub fn connect(port: u16, user: &str, db: &str) -> RawPg {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut body = 196_608i32.to_be_bytes().to_vec();
        for (k, v) in [("user", user), ("database", db)] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut msg = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&body);
        s.write_all(&msg).expect("startup");
        let mut c = RawPg(s, None);
        let r = c.read_reply();
        assert!(r.error().is_none(), "startup failed: {:?}", r.msgs);
        c.1 = r.msgs.iter().find(|m| m.tag == b'K').map(|m| {
            (i32::from_be_bytes([m.body[0], m.body[1], m.body[2], m.body[3]]), m.body[4..].to_vec())
        });
        c
    }

    /// The BackendKeyData the server sent: process id and secret key.
    pub fn backend_key(&self) -> Option<(i32, Vec<u8>)> {
        self.1.clone()
    }

    /// Sends one simple Query and reads its whole reply.
    pub fn query(&mut self, sql: &str) -> Reply {
        let mut msg = vec![b'Q'];
        msg.extend_from_slice(&((sql.len() + 5) as i32).to_be_bytes());
        msg.extend_from_slice(sql.as_bytes());
        msg.push(0);
        self.0.write_all(&msg).expect("send Query");
        self.read_reply()
    }

    /// Sends a CancelRequest for `(pid, secret)` to 127.0.0.1:`port` (any server: a cancel
    /// may reach another replica than the one running the statement).
    pub fn cancel(port: u16, (pid, secret): (i32, &[u8])) {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect for a cancel");
        let mut msg = ((12 + secret.len()) as i32).to_be_bytes().to_vec();
        msg.extend_from_slice(&80_877_102i32.to_be_bytes());
        msg.extend_from_slice(&pid.to_be_bytes());
        msg.extend_from_slice(secret);
        s.write_all(&msg).expect("send CancelRequest");
    }

    fn read_reply(&mut self) -> Reply {
        let mut msgs = Vec::new();
        loop {
            let mut head = [0u8; 5];
            self.0.read_exact(&mut head).expect("read a message");
            let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut body = vec![0u8; len - 4];
            self.0.read_exact(&mut body).expect("read its body");
            if head[0] == b'Z' {
                return Reply { msgs, status: body[0] as char };
            }
            msgs.push(Msg { tag: head[0], body });
        }
    }
}

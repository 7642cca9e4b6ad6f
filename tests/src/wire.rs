//! A raw PostgreSQL wire client, for tests that speak the protocol as an attacker would: any
//! message sequence (batches without Sync, names the client should not know, floods of tiny
//! messages), sent when the test says, and every answer read back as it came.
//!
//! Messages are built with postgres-protocol's frontend codec; answers are split into
//! (tag, body) pairs, with the few fields tests look at (error and notice messages, SQLSTATE,
//! data rows) read out.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Its type byte (`E` error, `N` notice, `Z` ready, `D` row, `C` complete, ...).
    pub tag: u8,
    /// Its body (after the length).
    pub body: Vec<u8>,
}

impl Msg {
    /// A field of an ErrorResponse or NoticeResponse (`b'M'` message, `b'C'` SQLSTATE).
    pub fn field(&self, code: u8) -> Option<String> {
        if self.tag != b'E' && self.tag != b'N' {
            return None;
        }
        let mut rest = self.body.as_slice();
        while let Some((&c, tail)) = rest.split_first() {
            if c == 0 {
                break;
            }
            let end = tail.iter().position(|b| *b == 0)?;
            if c == code {
                return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
            }
            rest = &tail[end + 1..];
        }
        None
    }

    /// The values of a DataRow, as text (None: NULL).
    pub fn row(&self) -> Option<Vec<Option<String>>> {
        if self.tag != b'D' {
            return None;
        }
        let mut b = self.body.as_slice();
        let n = b.get_i16();
        let mut out = Vec::new();
        for _ in 0..n {
            let len = b.get_i32();
            if len < 0 {
                out.push(None);
            } else {
                out.push(Some(
                    String::from_utf8_lossy(&b[..len as usize]).into_owned(),
                ));
                b.advance(len as usize);
            }
        }
        Some(out)
    }
}

/// What a batch got back: every message, and the parts tests ask about.
#[derive(Debug, Clone, Default)]
pub struct Answers(pub Vec<Msg>);

impl Answers {
    /// Error messages, in order.
    pub fn errors(&self) -> Vec<String> {
        self.with(b'E', b'M')
    }

    /// SQLSTATEs of the errors, in order.
    pub fn sqlstates(&self) -> Vec<String> {
        self.with(b'E', b'C')
    }

    /// Notice messages, in order.
    pub fn notices(&self) -> Vec<String> {
        self.with(b'N', b'M')
    }

    fn with(&self, tag: u8, field: u8) -> Vec<String> {
        self.0
            .iter()
            .filter(|m| m.tag == tag)
            .filter_map(|m| m.field(field))
            .collect()
    }

    /// The type bytes, as a string (`"12CZ"`).
    pub fn tags(&self) -> String {
        self.0.iter().map(|m| m.tag as char).collect()
    }

    /// The first column of every DataRow.
    pub fn firsts(&self) -> Vec<Option<String>> {
        self.0
            .iter()
            .filter_map(Msg::row)
            .map(|r| r.into_iter().next().flatten())
            .collect()
    }

    /// The id of the review a notice names (`... review 7 ...`), if any.
    pub fn review_id(&self) -> Option<i64> {
        self.notices().iter().find_map(|n| review_id_in(n))
    }
}

/// The number after `review ` in a message.
pub fn review_id_in(text: &str) -> Option<i64> {
    text.split("review ")
        .skip(1)
        .find_map(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
}

/// A session through a tunnel (or straight to a server that asks for a cleartext password).
pub struct Wire {
    stream: TcpStream,
    buf: BytesMut,
    /// What the next [`Wire::send`] writes.
    pub out: BytesMut,
    /// The cancel key the server gave (process id, secret).
    pub key: (i32, i32),
    port: u16,
}

impl Wire {
    /// Connects to `127.0.0.1:port` as user `hoop` with `password` and waits for the first
    /// ReadyForQuery.
    pub async fn connect(port: u16, password: &str, database: &str) -> Result<Wire> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut w = Wire {
            stream,
            buf: BytesMut::new(),
            out: BytesMut::new(),
            key: (0, 0),
            port,
        };
        frontend::startup_message([("user", "hoop"), ("database", database)], &mut w.out)?;
        w.send().await?;
        loop {
            let m = w.next(Duration::from_secs(30)).await?;
            match m.tag {
                b'R' if m.body.get(..4) == Some(&[0, 0, 0, 3]) => {
                    frontend::password_message(password.as_bytes(), &mut w.out)?;
                    w.send().await?;
                }
                b'K' => {
                    let mut b = m.body.as_slice();
                    w.key = (b.get_i32(), b.get_i32());
                }
                b'E' => bail!("login refused: {:?}", m.field(b'M')),
                b'Z' => return Ok(w),
                _ => {}
            }
        }
    }

    /// Parse `sql` as statement `name`.
    pub fn parse(&mut self, name: &str, sql: &str) -> &mut Self {
        frontend::parse(name, sql, [], &mut self.out).unwrap();
        self
    }

    /// Parse with parameter type OIDs.
    pub fn parse_typed(&mut self, name: &str, sql: &str, types: &[u32]) -> &mut Self {
        frontend::parse(name, sql, types.iter().copied(), &mut self.out).unwrap();
        self
    }

    /// Bind text parameters (None: NULL) to portal `portal` from statement `stmt`.
    pub fn bind(&mut self, portal: &str, stmt: &str, params: &[Option<&str>]) -> &mut Self {
        let values: Vec<Option<&[u8]>> = params.iter().map(|p| p.map(str::as_bytes)).collect();
        self.bind_formats(portal, stmt, &[0], &values)
    }

    /// Bind with explicit parameter format codes (0 text, 1 binary) and raw values.
    pub fn bind_formats(
        &mut self,
        portal: &str,
        stmt: &str,
        formats: &[i16],
        values: &[Option<&[u8]>],
    ) -> &mut Self {
        frontend::bind(
            portal,
            stmt,
            formats.iter().copied(),
            values.iter(),
            |v, buf| match v {
                Some(v) => {
                    buf.put_slice(v);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            [0i16],
            &mut self.out,
        )
        .map_err(|_| anyhow::anyhow!("bind"))
        .unwrap();
        self
    }

    /// Describe statement `name`.
    pub fn describe_statement(&mut self, name: &str) -> &mut Self {
        frontend::describe(b'S', name, &mut self.out).unwrap();
        self
    }

    /// Describe portal `name`.
    pub fn describe_portal(&mut self, name: &str) -> &mut Self {
        frontend::describe(b'P', name, &mut self.out).unwrap();
        self
    }

    /// Execute portal `name` (0: all rows).
    pub fn execute(&mut self, portal: &str, max_rows: i32) -> &mut Self {
        frontend::execute(portal, max_rows, &mut self.out).unwrap();
        self
    }

    /// Close statement `name`.
    pub fn close_statement(&mut self, name: &str) -> &mut Self {
        frontend::close(b'S', name, &mut self.out).unwrap();
        self
    }

    /// Close portal `name`.
    pub fn close_portal(&mut self, name: &str) -> &mut Self {
        frontend::close(b'P', name, &mut self.out).unwrap();
        self
    }

    /// Sync.
    pub fn sync(&mut self) -> &mut Self {
        frontend::sync(&mut self.out);
        self
    }

    /// Flush.
    pub fn flush(&mut self) -> &mut Self {
        frontend::flush(&mut self.out);
        self
    }

    /// A simple Query.
    pub fn query(&mut self, sql: &str) -> &mut Self {
        frontend::query(sql, &mut self.out).unwrap();
        self
    }

    /// Any bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.put_slice(bytes);
        self
    }

    /// Writes what was built.
    pub async fn send(&mut self) -> Result<()> {
        self.stream.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// The next message, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Result<Msg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.buf.len() >= 5 {
                let len = i32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
                if self.buf.len() > len {
                    let tag = self.buf[0];
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    return Ok(Msg { tag, body });
                }
            }
            let n = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf))
                .await
                .context("no answer in time")??;
            if n == 0 {
                bail!("the server closed the connection");
            }
        }
    }

    /// Sends what was built, then reads until ReadyForQuery.
    pub async fn run(&mut self) -> Result<Answers> {
        self.send().await?;
        self.until_ready(Duration::from_secs(30)).await
    }

    /// Reads until ReadyForQuery (included).
    pub async fn until_ready(&mut self, wait: Duration) -> Result<Answers> {
        self.until(|m| m.tag == b'Z', wait).await
    }

    /// Reads until a message `done` says ends it (included).
    pub async fn until(&mut self, done: impl Fn(&Msg) -> bool, wait: Duration) -> Result<Answers> {
        let mut got = Vec::new();
        loop {
            let m = self
                .next(wait)
                .await
                .with_context(|| format!("after {:?}", Answers(got.clone()).tags()))?;
            let end = done(&m);
            got.push(m);
            if end {
                return Ok(Answers(got));
            }
        }
    }

    /// Reads what arrives within `wait` (nothing is an answer too).
    pub async fn quiet_for(&mut self, wait: Duration) -> Answers {
        let mut got = Vec::new();
        while let Ok(m) = self.next(wait).await {
            got.push(m);
        }
        Answers(got)
    }

    /// Reads until a notice names a review, and returns its id.
    pub async fn review_notice(&mut self) -> Result<i64> {
        let a = self
            .until(
                |m| m.tag == b'E' || m.field(b'M').is_some_and(|t| review_id_in(&t).is_some()),
                Duration::from_secs(30),
            )
            .await?;
        a.review_id()
            .with_context(|| format!("no review notice: {:?}", a.errors()))
    }

    /// Sends a CancelRequest with this session's key on a new connection.
    pub async fn cancel(&self) -> Result<()> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let mut b = BytesMut::new();
        frontend::cancel_request(self.key.0, self.key.1, &mut b);
        s.write_all(&b).await?;
        Ok(())
    }
}

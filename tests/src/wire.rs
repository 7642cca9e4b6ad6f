//! A raw PostgreSQL wire client, for tests that speak the protocol as an attacker would or need
//! what psql and tokio-postgres do not give: any message sequence (batches without Sync, names
//! the client should not know, floods of tiny messages, several messages in one write), query
//! text of any bytes (not UTF-8, far too large for a command line), startup parameters of the
//! test's choosing, every message the server sent (ParameterStatus included) and the
//! CommandComplete tag of every statement of a simple Query.
//!
//! One type, [`Wire`], connects over TCP (a `hoop connect` tunnel, or a server that asks for a
//! cleartext password) or a cluster's unix socket. Messages are built into [`Wire::out`] with
//! builder methods and written by [`Wire::send`] or [`Wire::run`]; answers come back either as
//! every message as it came ([`Answers`], a list of [`Msg`]) or, for one simple Query, as its
//! digest ([`Answer`]: tags, error, notices, first column of the rows).
//!
//! Frontend messages are built with postgres-protocol's codec, except the Query message: its
//! text is written by hand because the codec refuses what tests must be able to send.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::IsNull;
use postgres_protocol::message::{backend, frontend};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long a read waits when the test does not say.
const WAIT: Duration = Duration::from_secs(30);

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

    /// The tag of a CommandComplete (`SELECT 1`, `INSERT 0 1`...).
    pub fn completion(&self) -> Option<String> {
        (self.tag == b'C').then(|| cstr(&self.body))
    }

    /// The (name, value) of a ParameterStatus.
    pub fn parameter(&self) -> Option<(String, String)> {
        if self.tag != b'S' {
            return None;
        }
        let nul = self.body.iter().position(|b| *b == 0)?;
        Some((cstr(&self.body[..nul]), cstr(&self.body[nul + 1..])))
    }
}

/// Text up to the first NUL (or the end).
fn cstr(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Every message a batch got back, in order, and the parts tests ask about.
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

/// The digest of what the server answered to one simple Query, up to its ReadyForQuery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    /// CommandComplete tags, in order (`SELECT 1`, `INSERT 0 1`, `CREATE TABLE`...).
    pub tags: Vec<String>,
    /// The (last) ErrorResponse, if any: SQLSTATE and message.
    pub error: Option<(String, String)>,
    /// Notice messages.
    pub notices: Vec<String>,
    /// Text of the first column of every row.
    pub rows: Vec<Option<String>>,
    /// An EmptyQueryResponse came.
    pub empty: bool,
}

impl From<&Answers> for Answer {
    fn from(a: &Answers) -> Answer {
        Answer {
            tags: a.0.iter().filter_map(Msg::completion).collect(),
            error: a.0.iter().rfind(|m| m.tag == b'E').map(|e| {
                (
                    e.field(b'C').unwrap_or_default(),
                    e.field(b'M').unwrap_or_default(),
                )
            }),
            notices: a
                .0
                .iter()
                .filter(|m| m.tag == b'N')
                .map(|m| m.field(b'M').unwrap_or_default())
                .collect(),
            rows: a.firsts(),
            empty: a.0.iter().any(|m| m.tag == b'I'),
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where a session went, so a CancelRequest can go there too.
#[derive(Debug, Clone)]
enum Peer {
    Tcp(u16),
    Unix(PathBuf),
}

impl Peer {
    async fn open(&self) -> Result<Box<dyn Io>> {
        Ok(match self {
            Peer::Tcp(port) => Box::new(
                tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .with_context(|| format!("connect to 127.0.0.1:{port}"))?,
            ),
            Peer::Unix(path) => Box::new(
                tokio::net::UnixStream::connect(path)
                    .await
                    .with_context(|| format!("connect to {}", path.display()))?,
            ),
        })
    }
}

/// One session.
pub struct Wire {
    io: Box<dyn Io>,
    buf: BytesMut,
    peer: Peer,
    /// What the next [`Wire::send`] writes.
    pub out: BytesMut,
    /// The cancel key the server gave (process id, secret).
    pub key: (i32, i32),
    /// Every message of the login, up to and including the first ReadyForQuery.
    pub startup: Answers,
    /// ParameterStatus values the server sent, in order (the last one of a name is current).
    pub parameters: Vec<(String, String)>,
}

impl Wire {
    /// Connects to `127.0.0.1:port` as user `hoop` with `password` (a `hoop connect` tunnel)
    /// and waits for the first ReadyForQuery.
    pub async fn connect(port: u16, password: &str, database: &str) -> Result<Wire> {
        Self::tcp(port, "hoop", password, database, &[]).await
    }

    /// Connects to `127.0.0.1:port` as `user`, with extra startup parameters
    /// (`client_encoding`...), answering a cleartext password request with `password`.
    pub async fn tcp(
        port: u16,
        user: &str,
        password: &str,
        database: &str,
        extra: &[(&str, &str)],
    ) -> Result<Wire> {
        Self::start(Peer::Tcp(port), user, Some(password), database, extra).await
    }

    /// Connects over a cluster's unix socket (trusted: no password).
    pub async fn unix(socket_dir: &Path, port: u16, user: &str, database: &str) -> Result<Wire> {
        let path = socket_dir.join(format!(".s.PGSQL.{port}"));
        Self::start(Peer::Unix(path), user, None, database, &[]).await
    }

    async fn start(
        peer: Peer,
        user: &str,
        password: Option<&str>,
        database: &str,
        extra: &[(&str, &str)],
    ) -> Result<Wire> {
        let mut w = Wire {
            io: peer.open().await?,
            buf: BytesMut::with_capacity(8192),
            peer,
            out: BytesMut::new(),
            key: (0, 0),
            startup: Answers::default(),
            parameters: Vec::new(),
        };
        let mut params = vec![("user", user), ("database", database)];
        params.extend_from_slice(extra);
        frontend::startup_message(params, &mut w.out)?;
        w.send().await?;
        loop {
            let m = w.next(WAIT).await?;
            match m.tag {
                b'R' => match m.body.get(..4) {
                    Some([0, 0, 0, 0]) => {}
                    Some([0, 0, 0, 3]) => {
                        let Some(pw) = password else {
                            bail!("the server asked for a password");
                        };
                        frontend::password_message(pw.as_bytes(), &mut w.out)?;
                        w.send().await?;
                    }
                    other => bail!(
                        "the server asked for an authentication this client does not speak: {other:?}"
                    ),
                },
                b'K' => {
                    let mut b = m.body.as_slice();
                    w.key = (b.get_i32(), b.get_i32());
                }
                b'S' | b'N' | b'Z' => {}
                b'E' => bail!(
                    "startup refused: {} {}",
                    m.field(b'C').unwrap_or_default(),
                    m.field(b'M').unwrap_or_default()
                ),
                other => bail!("unexpected message during startup: {:?}", other as char),
            }
            let ready = m.tag == b'Z';
            w.startup.0.push(m);
            if ready {
                return Ok(w);
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

    /// A simple Query of exactly these bytes. Written by hand: the codec takes only UTF-8 text
    /// without NUL, and tests send other encodings and any bytes.
    pub fn query(&mut self, text: impl AsRef<[u8]>) -> &mut Self {
        let text = text.as_ref();
        self.out.put_u8(b'Q');
        self.out
            .put_i32(i32::try_from(text.len() + 5).unwrap_or(i32::MAX));
        self.out.put_slice(text);
        self.out.put_u8(0);
        self
    }

    /// Any bytes.
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.out.put_slice(bytes);
        self
    }

    /// Writes what was built.
    pub async fn send(&mut self) -> Result<()> {
        self.io.write_all(&self.out).await?;
        self.out.clear();
        Ok(())
    }

    /// The next message, waiting at most `wait`. ParameterStatus values are recorded in
    /// [`Wire::parameters`] as they pass.
    pub async fn next(&mut self, wait: Duration) -> Result<Msg> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(h) = backend::Header::parse(&self.buf)? {
                let len = h.len() as usize;
                if self.buf.len() > len {
                    self.buf.advance(5);
                    let body = self.buf.split_to(len - 4).to_vec();
                    let m = Msg { tag: h.tag(), body };
                    if let Some(p) = m.parameter() {
                        self.parameters.push(p);
                    }
                    return Ok(m);
                }
            }
            let n = tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf))
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
        self.until_ready(WAIT).await
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
                WAIT,
            )
            .await?;
        a.review_id()
            .with_context(|| format!("no review notice: {:?}", a.errors()))
    }

    /// Sends one simple Query (any bytes) and reads its [`Answer`].
    pub async fn simple_query(&mut self, text: impl AsRef<[u8]>) -> Result<Answer> {
        self.query(text).send().await?;
        self.answer().await
    }

    /// Reads the answer to one simple Query already sent, up to its ReadyForQuery. A COPY FROM
    /// STDIN is ended with CopyFail: there is no data to send.
    pub async fn answer(&mut self) -> Result<Answer> {
        let mut got = Answers::default();
        loop {
            let m = self.next(WAIT).await?;
            if m.tag == b'G' {
                frontend::copy_fail("no data", &mut self.out)?;
                self.send().await?;
            }
            let ready = m.tag == b'Z';
            got.0.push(m);
            if ready {
                return Ok(Answer::from(&got));
            }
        }
    }

    /// The last value the server reported for a parameter.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Reads until the server closes the connection (or drops it), at most `wait`: every byte
    /// not yet read as a message, for sessions that were sent something malformed.
    pub async fn until_closed(&mut self, wait: Duration) -> Result<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf))
                .await
                .context("the session was not closed")?
            {
                Ok(0) | Err(_) => return Ok(self.buf.split().to_vec()),
                Ok(_) => {}
            }
        }
    }

    /// Sends a CancelRequest with this session's key on a new connection.
    pub async fn cancel(&self) -> Result<()> {
        let mut s = self.peer.open().await?;
        let mut b = BytesMut::new();
        frontend::cancel_request(self.key.0, self.key.1, &mut b);
        s.write_all(&b).await?;
        Ok(())
    }
}

//! A raw PostgreSQL wire client for tests that need what psql and tokio-postgres do not give:
//! the CommandComplete tag of every statement of a simple Query, query text that is not valid
//! UTF-8, several messages pipelined in one write, startup parameters of the test's choosing.
//!
//! Messages are framed and decoded with `postgres-protocol`; the Query message is written by
//! hand so its text can be any bytes.

use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use bytes::{BufMut as _, BytesMut};
use fallible_iterator::FallibleIterator as _;
use postgres_protocol::message::{backend::Message, frontend};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// What the server answered to one Query message, up to its ReadyForQuery.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Answer {
    /// CommandComplete tags, in order (`SELECT 1`, `INSERT 0 1`, `CREATE TABLE`...).
    pub tags: Vec<String>,
    /// The ErrorResponse, if any: SQLSTATE and message.
    pub error: Option<(String, String)>,
    /// Notice messages.
    pub notices: Vec<String>,
    /// Text of the first column of every row.
    pub rows: Vec<Option<String>>,
    /// An EmptyQueryResponse came.
    pub empty: bool,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connection.
pub struct RawClient {
    io: Box<dyn Io>,
    buf: BytesMut,
    /// ParameterStatus values the server sent, last value wins.
    pub parameters: Vec<(String, String)>,
}

const TIMEOUT: Duration = Duration::from_secs(30);

impl RawClient {
    /// Connects over TCP (a `hoop connect` tunnel), answering a cleartext password request.
    pub async fn tcp(port: u16, user: &str, password: &str, database: &str) -> Result<Self> {
        Self::tcp_with(port, user, password, database, &[]).await
    }

    /// [`RawClient::tcp`] with extra startup parameters (`client_encoding`...).
    pub async fn tcp_with(
        port: u16,
        user: &str,
        password: &str,
        database: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .with_context(|| format!("connect to 127.0.0.1:{port}"))?;
        Self::start(Box::new(stream), user, Some(password), database, extra).await
    }

    /// Connects over the cluster's unix socket (trusted: no password).
    pub async fn unix(
        socket_dir: &std::path::Path,
        port: u16,
        user: &str,
        database: &str,
    ) -> Result<Self> {
        let path = socket_dir.join(format!(".s.PGSQL.{port}"));
        let stream = tokio::net::UnixStream::connect(&path)
            .await
            .with_context(|| format!("connect to {}", path.display()))?;
        Self::start(Box::new(stream), user, None, database, &[]).await
    }

    async fn start(
        io: Box<dyn Io>,
        user: &str,
        password: Option<&str>,
        database: &str,
        extra: &[(&str, &str)],
    ) -> Result<Self> {
        let mut c = RawClient {
            io,
            buf: BytesMut::with_capacity(8192),
            parameters: Vec::new(),
        };
        let mut out = BytesMut::new();
        let mut params = vec![("user", user), ("database", database)];
        params.extend_from_slice(extra);
        frontend::startup_message(params, &mut out)?;
        c.io.write_all(&out).await?;
        loop {
            match c.next().await? {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword => {
                    let Some(pw) = password else {
                        bail!("the server asked for a password");
                    };
                    let mut out = BytesMut::new();
                    frontend::password_message(pw.as_bytes(), &mut out)?;
                    c.io.write_all(&out).await?;
                }
                Message::ParameterStatus(p) => {
                    c.parameters
                        .push((p.name()?.to_owned(), p.value()?.to_owned()));
                }
                Message::BackendKeyData(_) | Message::NoticeResponse(_) => {}
                Message::ReadyForQuery(_) => return Ok(c),
                Message::ErrorResponse(e) => {
                    let (code, message) = error_fields(e.fields())?;
                    bail!("startup refused: {code} {message}");
                }
                other => bail!("unexpected message during startup: {:?}", tag_of(&other)),
            }
        }
    }

    /// Sends raw bytes (whole messages, possibly several).
    pub async fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.io.write_all(bytes).await?;
        Ok(())
    }

    /// A Query message of exactly these bytes.
    pub fn query_message(text: &[u8]) -> Vec<u8> {
        let mut m = BytesMut::new();
        m.put_u8(b'Q');
        let len = i32::try_from(text.len() + 5).unwrap_or(i32::MAX);
        m.put_i32(len);
        m.put_slice(text);
        m.put_u8(0);
        m.to_vec()
    }

    /// Sends one simple Query and reads its answer.
    pub async fn query(&mut self, text: impl AsRef<[u8]>) -> Result<Answer> {
        let m = Self::query_message(text.as_ref());
        self.send(&m).await?;
        self.answer().await
    }

    /// Reads the answer to one Query already sent (up to ReadyForQuery).
    pub async fn answer(&mut self) -> Result<Answer> {
        let mut a = Answer::default();
        loop {
            match self.next().await? {
                Message::CommandComplete(c) => a.tags.push(c.tag()?.to_owned()),
                Message::ErrorResponse(e) => a.error = Some(error_fields(e.fields())?),
                Message::NoticeResponse(n) => a.notices.push(error_fields(n.fields())?.1),
                Message::DataRow(d) => {
                    let first = d.ranges().next()?.flatten();
                    a.rows.push(first.map(|r| {
                        String::from_utf8_lossy(d.buffer().get(r).unwrap_or_default()).into_owned()
                    }));
                }
                Message::EmptyQueryResponse => a.empty = true,
                Message::ParameterStatus(p) => {
                    self.parameters
                        .push((p.name()?.to_owned(), p.value()?.to_owned()));
                }
                Message::ReadyForQuery(_) => return Ok(a),
                Message::CopyInResponse(_) => {
                    // Nothing to send: end the COPY with an error.
                    let mut out = BytesMut::new();
                    frontend::copy_fail("no data", &mut out)?;
                    self.io.write_all(&out).await?;
                }
                _ => {}
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

    async fn next(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = Message::parse(&mut self.buf)? {
                return Ok(m);
            }
            let n = tokio::time::timeout(TIMEOUT, self.io.read_buf(&mut self.buf))
                .await
                .context("no answer from the server in 30 s")??;
            if n == 0 {
                bail!("the server closed the connection");
            }
        }
    }
}

fn error_fields(
    mut fields: postgres_protocol::message::backend::ErrorFields<'_>,
) -> Result<(String, String)> {
    let mut code = String::new();
    let mut message = String::new();
    while let Some(f) = fields.next()? {
        match f.type_() {
            b'C' => code = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(f.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Ok((code, message))
}

fn tag_of(m: &Message) -> &'static str {
    match m {
        Message::AuthenticationMd5Password(_) => "AuthenticationMD5Password",
        Message::AuthenticationSasl(_) => "AuthenticationSASL",
        _ => "another message",
    }
}

//! The only module that touches russh (pinned `=0.65.1`: its minor versions break APIs). It
//! turns russh's server callbacks into [`FrontEvent`]s on one channel for the session task,
//! russh's channel messages into our [`FromClient`] / [`FromTarget`] enums, and gives the
//! session task small writer types for both sides. No policy lives here.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use russh::keys::ssh_key::{self, HashAlg, LineEnding};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, ChannelReadHalf, ChannelWriteHalf, MethodKind, MethodSet, Pty, Sig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// The gateway's own SSH host key (what local clients see).
#[derive(Clone)]
pub struct HostKey(Arc<PrivateKey>);

impl HostKey {
    /// Loads the key at `path`, or creates a new Ed25519 key there (mode 0600) on first start.
    pub fn load_or_create(path: &std::path::Path) -> Result<HostKey, String> {
        if path.exists() {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read SSH host key {}: {e}", path.display()))?;
            let key = PrivateKey::from_openssh(pem.as_bytes())
                .map_err(|e| format!("SSH host key {} is not usable: {e}", path.display()))?;
            return Ok(HostKey(Arc::new(key)));
        }
        let seed: [u8; 32] = rand::random();
        let key = PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed));
        let pem = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| format!("cannot encode the SSH host key: {e}"))?;
        write_private(path, pem.as_bytes())
            .map_err(|e| format!("cannot write SSH host key {}: {e}", path.display()))?;
        Ok(HostKey(Arc::new(key)))
    }

    /// `SHA256:...` of the public key, as OpenSSH prints it.
    pub fn fingerprint(&self) -> String {
        self.0.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The public key in OpenSSH format (`ssh-ed25519 AAAA...`).
    pub fn public_openssh(&self) -> String {
        self.0.public_key().to_openssh().unwrap_or_default()
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// The target's pinned host key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyPin {
    /// A full public key (from a known_hosts line or a bare `type base64` key).
    Key {
        /// Its algorithm name, for messages.
        algorithm: String,
        /// Its SHA-256 fingerprint.
        fingerprint: String,
    },
    /// Only a SHA-256 fingerprint (`SHA256:...`).
    Fingerprint(String),
}

impl HostKeyPin {
    /// Parses a known_hosts line (`host[,host] type base64 [comment]`, markers like
    /// `@revoked` refused), a bare `type base64 [comment]` key, or `SHA256:<base64>`.
    pub fn parse(text: &str) -> Result<HostKeyPin, String> {
        let text = text.trim();
        if let Some(fp) = text.strip_prefix("SHA256:") {
            let fp = fp.trim_end_matches('=');
            if fp.is_empty()
                || !fp
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
            {
                return Err(
                    "a SHA256: fingerprint is followed by base64, as `ssh-keygen -lf` prints it"
                        .into(),
                );
            }
            return Ok(HostKeyPin::Fingerprint(format!("SHA256:{fp}")));
        }
        if text.starts_with('@') {
            return Err("known_hosts markers (@cert-authority, @revoked) are not supported; pin the host's own key".into());
        }
        let words: Vec<&str> = text.split_whitespace().collect();
        // Bare key first ("ssh-ed25519 AAAA..."), then a known_hosts line with hosts in front.
        let candidates = [words.first().copied(), words.get(1).copied()];
        for (i, alg) in candidates.iter().enumerate() {
            let (Some(alg), Some(b64)) = (alg, words.get(i + 1)) else {
                continue;
            };
            if let Ok(key) = PublicKey::from_openssh(&format!("{alg} {b64}")) {
                return Ok(HostKeyPin::Key {
                    algorithm: key.algorithm().to_string(),
                    fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
                });
            }
        }
        Err("not a known_hosts line, an OpenSSH public key or a SHA256: fingerprint (get it with `ssh-keyscan HOST` or `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the target)".into())
    }

    fn fingerprint(&self) -> &str {
        match self {
            HostKeyPin::Key { fingerprint, .. } | HostKeyPin::Fingerprint(fingerprint) => {
                fingerprint
            }
        }
    }

    /// True when `key` is the pinned key.
    fn matches(&self, key: &PublicKey) -> bool {
        let fp = key.fingerprint(HashAlg::Sha256).to_string();
        // Compare without base64 padding, since some tools print it.
        fp.trim_end_matches('=') == self.fingerprint().trim_end_matches('=')
    }
}

/// Checks a private key parses (for `hoopd check`); the error never includes key material.
pub fn check_private_key(pem: &str) -> Result<(), String> {
    russh::keys::decode_secret_key(pem, None)
        .map(|_| ())
        .map_err(|e| format!("not a usable unencrypted private key ({e})"))
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Terminal modes of a pty request, passed through untouched.
#[derive(Debug, Clone)]
pub struct PtyModes(Vec<(Pty, u32)>);

/// A signal name, passed through untouched.
#[derive(Debug, Clone)]
pub struct Signal(Sig);

impl Signal {
    /// SIGTERM (`hoop exec --timeout` stops the remote command with it).
    pub fn term() -> Signal {
        Signal(Sig::TERM)
    }

    /// The name, for the recording (`INT`, `TERM`, ...).
    pub fn name(&self) -> String {
        match &self.0 {
            Sig::Custom(s) => s.clone(),
            other => format!("{other:?}"),
        }
    }
}

/// A pty request.
#[derive(Debug, Clone)]
pub struct PtyRequest {
    /// `TERM`.
    pub term: String,
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
    /// Width in pixels.
    pub px_width: u32,
    /// Height in pixels.
    pub px_height: u32,
    /// Terminal modes.
    pub modes: PtyModes,
}

/// What the local client sent on a channel.
#[derive(Debug)]
pub enum FromClient {
    /// Channel data (stdin).
    Data(Bytes),
    /// The client will send no more data.
    Eof,
    /// The client closed the channel.
    Close,
    /// `pty-req`.
    Pty(PtyRequest),
    /// `shell`.
    Shell,
    /// `exec` with its command bytes.
    Exec(Vec<u8>),
    /// `subsystem` (sftp).
    Subsystem(String),
    /// `env`.
    Env(String, String),
    /// `window-change`: cols, rows, px width, px height.
    WindowChange(u32, u32, u32, u32),
    /// `signal`.
    Signal(Signal),
    /// A request the gateway does not relay (x11, agent forwarding, flow control).
    Unsupported(&'static str),
}

fn from_client(msg: ChannelMsg) -> Option<FromClient> {
    Some(match msg {
        ChannelMsg::Data { data } => FromClient::Data(data),
        ChannelMsg::ExtendedData { .. } => return None,
        ChannelMsg::Eof => FromClient::Eof,
        ChannelMsg::Close => FromClient::Close,
        ChannelMsg::RequestPty {
            term,
            col_width,
            row_height,
            pix_width,
            pix_height,
            terminal_modes,
            ..
        } => FromClient::Pty(PtyRequest {
            term,
            cols: col_width,
            rows: row_height,
            px_width: pix_width,
            px_height: pix_height,
            modes: PtyModes(terminal_modes),
        }),
        ChannelMsg::RequestShell { .. } => FromClient::Shell,
        ChannelMsg::Exec { command, .. } => FromClient::Exec(command),
        ChannelMsg::RequestSubsystem { name, .. } => FromClient::Subsystem(name),
        ChannelMsg::SetEnv {
            variable_name,
            variable_value,
            ..
        } => FromClient::Env(variable_name, variable_value),
        ChannelMsg::WindowChange {
            col_width,
            row_height,
            pix_width,
            pix_height,
        } => FromClient::WindowChange(col_width, row_height, pix_width, pix_height),
        ChannelMsg::Signal { signal } => FromClient::Signal(Signal(signal)),
        ChannelMsg::RequestX11 { .. } => FromClient::Unsupported("x11 forwarding"),
        ChannelMsg::AgentForward { .. } => FromClient::Unsupported("agent forwarding"),
        ChannelMsg::XonXoff { .. } => FromClient::Unsupported("xon-xoff"),
        // Window bookkeeping and replies are russh's business.
        _ => return None,
    })
}

/// What the target sent on a channel.
#[derive(Debug)]
pub enum FromTarget {
    /// stdout.
    Data(Bytes),
    /// stderr (extended data 1) or another extended stream.
    Stderr(u32, Bytes),
    /// No more output.
    Eof,
    /// Closed.
    Close,
    /// The command's exit status.
    ExitStatus(u32),
    /// The command died of a signal.
    ExitSignal {
        /// The signal.
        signal: Signal,
        /// A core was dumped.
        core_dumped: bool,
        /// The target's message.
        message: String,
    },
    /// A request on this channel succeeded.
    Success,
    /// A request on this channel failed.
    Failure,
}

fn from_target(msg: ChannelMsg) -> Option<FromTarget> {
    Some(match msg {
        ChannelMsg::Data { data } => FromTarget::Data(data),
        ChannelMsg::ExtendedData { data, ext } => FromTarget::Stderr(ext, data),
        ChannelMsg::Eof => FromTarget::Eof,
        ChannelMsg::Close => FromTarget::Close,
        ChannelMsg::ExitStatus { exit_status } => FromTarget::ExitStatus(exit_status),
        ChannelMsg::ExitSignal {
            signal_name,
            core_dumped,
            error_message,
            ..
        } => FromTarget::ExitSignal {
            signal: Signal(signal_name),
            core_dumped,
            message: error_message,
        },
        ChannelMsg::Success => FromTarget::Success,
        ChannelMsg::Failure => FromTarget::Failure,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// The server side (the local client, through the tunnel)
// ---------------------------------------------------------------------------------------------

/// What a local client logs in with.
pub enum Credential {
    /// A password.
    Password(String),
    /// A public key offered (ownership not proven yet: the client asks whether it would do).
    KeyOffered {
        /// Its SHA-256 fingerprint.
        fingerprint: String,
    },
    /// A public key whose signature russh verified.
    Key {
        /// Its SHA-256 fingerprint.
        fingerprint: String,
    },
}

/// The SHA-256 fingerprint (`SHA256:...`) of an OpenSSH public key line, as [`Credential`]
/// carries it.
pub fn public_key_fingerprint(openssh: &str) -> Result<String, String> {
    PublicKey::from_openssh(openssh.trim())
        .map(|k| k.fingerprint(HashAlg::Sha256).to_string())
        .map_err(|e| format!("not an OpenSSH public key: {e}"))
}

/// A callback from the local client's connection, for the session task.
pub enum FrontEvent {
    /// A login attempt; answer on `reply` (true accepts).
    Auth {
        /// The user name the client gave.
        user: String,
        /// What it logs in with.
        credential: Credential,
        /// The decision.
        reply: oneshot::Sender<bool>,
    },
    /// A session channel was opened.
    Session(PendingChannel),
    /// A direct-tcpip channel (`ssh -L`) was opened.
    DirectTcpip {
        /// The channel.
        channel: PendingChannel,
        /// Host to connect to (as the target sees it).
        host: String,
        /// Port to connect to.
        port: u32,
        /// Originator address.
        origin: String,
        /// Originator port.
        origin_port: u32,
    },
}

/// A channel the client asked for; accept or reject it.
pub struct PendingChannel {
    channel: russh::Channel<russh::server::Msg>,
    reply: russh::server::ChannelOpenHandle,
    handle: russh::server::Handle,
}

impl PendingChannel {
    /// Accepts: returns the reader and writer for the channel.
    pub async fn accept(self) -> (FrontReader, FrontWriter) {
        self.reply.accept().await;
        let id = self.channel.id();
        let (read, write) = self.channel.split();
        (
            FrontReader(read),
            FrontWriter {
                write,
                handle: self.handle,
                id,
            },
        )
    }

    /// Refuses the channel ("administratively prohibited").
    pub async fn reject(self) {
        self.reply
            .reject(russh::ChannelOpenFailure::AdministrativelyProhibited)
            .await;
    }
}

/// Reads what the client sends on one channel.
pub struct FrontReader(ChannelReadHalf);

impl FrontReader {
    /// The next message; `None` when the channel is gone.
    pub async fn next(&mut self) -> Option<FromClient> {
        loop {
            let msg = self.0.wait().await?;
            if let Some(m) = from_client(msg) {
                return Some(m);
            }
        }
    }
}

/// Writes to the client on one channel.
pub struct FrontWriter {
    write: ChannelWriteHalf<russh::server::Msg>,
    handle: russh::server::Handle,
    id: russh::ChannelId,
}

type Io<T = ()> = Result<T, String>;

fn io<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

impl FrontWriter {
    /// stdout data.
    pub async fn data(&self, data: Bytes) -> Io {
        self.write.data_bytes(data).await.map_err(io)
    }
    /// stderr (or another extended stream).
    pub async fn stderr(&self, ext: u32, data: Bytes) -> Io {
        self.write.extended_data_bytes(ext, data).await.map_err(io)
    }
    /// EOF.
    pub async fn eof(&self) -> Io {
        self.write.eof().await.map_err(io)
    }
    /// Close.
    pub async fn close(&self) -> Io {
        self.write.close().await.map_err(io)
    }
    /// `exit-status`.
    pub async fn exit_status(&self, status: u32) -> Io {
        self.write.exit_status(status).await.map_err(io)
    }
    /// `exit-signal`.
    pub async fn exit_signal(&self, signal: Signal, core: bool, message: String) -> Io {
        self.handle
            .exit_signal_request(self.id, signal.0, core, message, String::new())
            .await
            .map_err(io)
    }
    /// Channel request succeeded.
    pub async fn success(&self) -> Io {
        self.handle.channel_success(self.id).await.map_err(io)
    }
    /// Channel request failed.
    pub async fn failure(&self) -> Io {
        self.handle.channel_failure(self.id).await.map_err(io)
    }
}

/// Ends the client's connection with a message OpenSSH prints ("Received disconnect ...").
#[derive(Clone)]
pub struct FrontControl(russh::server::Handle);

impl FrontControl {
    /// Disconnects with `message`.
    pub async fn disconnect(&self, message: String) {
        let _ = self
            .0
            .disconnect(russh::Disconnect::ByApplication, message, String::new())
            .await;
    }
}

struct FrontHandler {
    events: mpsc::Sender<FrontEvent>,
}

impl FrontHandler {
    /// Asks the session task to decide a login.
    async fn decide(&self, user: &str, credential: Credential) -> russh::server::Auth {
        let (reply, wait) = oneshot::channel();
        let ev = FrontEvent::Auth {
            user: user.to_string(),
            credential,
            reply,
        };
        if self.events.send(ev).await.is_err() {
            return russh::server::Auth::reject();
        }
        match wait.await {
            Ok(true) => russh::server::Auth::Accept,
            _ => russh::server::Auth::reject(),
        }
    }
}

impl russh::server::Handler for FrontHandler {
    type Error = russh::Error;

    async fn auth_password(
        &mut self,
        user: &str,
        password: &str,
    ) -> Result<russh::server::Auth, Self::Error> {
        Ok(self
            .decide(user, Credential::Password(password.to_string()))
            .await)
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<russh::server::Auth, Self::Error> {
        let fingerprint = offer.public_key.fingerprint(HashAlg::Sha256).to_string();
        Ok(self
            .decide(user, Credential::KeyOffered { fingerprint })
            .await)
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: russh::server::VerifiedPublicKey<'_>,
    ) -> Result<russh::server::Auth, Self::Error> {
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        Ok(self.decide(user, Credential::Key { fingerprint }).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: russh::Channel<russh::server::Msg>,
        reply: russh::server::ChannelOpenHandle,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        let pending = PendingChannel {
            channel,
            reply,
            handle: session.handle(),
        };
        // A full queue drops the pending channel, which refuses it.
        let _ = self.events.send(FrontEvent::Session(pending)).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: russh::Channel<russh::server::Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: russh::server::ChannelOpenHandle,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        let pending = PendingChannel {
            channel,
            reply,
            handle: session.handle(),
        };
        let _ = self
            .events
            .send(FrontEvent::DirectTcpip {
                channel: pending,
                host: host_to_connect.to_string(),
                port: port_to_connect,
                origin: originator_address.to_string(),
                origin_port: originator_port,
            })
            .await;
        Ok(())
    }
}

/// A running SSH server session on the tunnel stream.
pub struct FrontSession {
    running: russh::server::RunningSession<FrontHandler>,
}

impl FrontSession {
    /// Handle to disconnect the client.
    pub fn control(&self) -> FrontControl {
        FrontControl(self.running.handle())
    }

    /// Waits until the connection ends.
    pub async fn wait(self) -> Result<(), String> {
        self.running.await.map_err(|e| e.to_string())
    }
}

/// Runs the SSH server side on `stream`: login as `hoop` with the tunnel's key or password;
/// every callback becomes a [`FrontEvent`].
pub async fn run_front<S>(
    stream: S,
    host_key: &HostKey,
    events: mpsc::Sender<FrontEvent>,
) -> Result<FrontSession, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-hoop".into()),
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        // Constant-time rejections; the first "none" probe of OpenSSH is answered at once.
        auth_rejection_time: std::time::Duration::from_secs(1),
        auth_rejection_time_initial: Some(std::time::Duration::from_millis(0)),
        keys: vec![(*host_key.0).clone()],
        max_auth_attempts: 3,
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(30)),
        window_size: 8 << 20,
        nodelay: true,
        ..Default::default()
    };
    let running = russh::server::run_stream(Arc::new(config), stream, FrontHandler { events })
        .await
        .map_err(|e| e.to_string())?;
    Ok(FrontSession { running })
}

// ---------------------------------------------------------------------------------------------
// The client side (the target)
// ---------------------------------------------------------------------------------------------

/// How the gateway logs in to the target.
pub enum TargetAuth {
    /// An OpenSSH/PEM private key (unencrypted).
    Key(String),
    /// A password.
    Password(String),
}

/// Why the target connection failed; messages are safe to show the user.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The host key differs from the pin.
    #[error(
        "the target's host key changed or is not the pinned one: it presented {presented} ({algorithm}), the connection pins {pinned}; if the change is expected, update `host_key` in the gateway's config"
    )]
    HostKey {
        /// Fingerprint seen.
        presented: String,
        /// Its algorithm.
        algorithm: String,
        /// Fingerprint pinned.
        pinned: String,
    },
    /// Could not connect or speak SSH.
    #[error("cannot reach the target {address}: {reason}")]
    Connect {
        /// Where.
        address: String,
        /// Why.
        reason: String,
    },
    /// The target refused the vaulted credential.
    #[error("the target refused the gateway's credential for user {user:?}")]
    Refused {
        /// The user.
        user: String,
    },
    /// The configured key does not parse.
    #[error("the connection's private key is not usable")]
    BadKey,
}

struct TargetHandler {
    pin: HostKeyPin,
    seen: Arc<Mutex<Option<(String, String)>>>,
    /// The message of a disconnect the server sent (the gateway's own adapter explains itself
    /// this way, e.g. when it cannot reach the target).
    said: Arc<Mutex<Option<String>>>,
}

impl russh::client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn disconnected(
        &mut self,
        reason: russh::client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        match reason {
            russh::client::DisconnectReason::ReceivedDisconnect(info) => {
                *self.said.lock().unwrap_or_else(|p| p.into_inner()) = Some(info.message);
                Ok(())
            }
            russh::client::DisconnectReason::Error(e) => Err(e),
        }
    }

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key,
            // A host certificate carries the host's key; pin that.
            PublicKeyOrCertificate::Certificate(cert) => {
                let pk = PublicKey::from(cert.public_key().clone());
                let ok = self.pin.matches(&pk);
                if !ok {
                    self.record(&pk);
                }
                return Ok(ok);
            }
        };
        let ok = self.pin.matches(key);
        if !ok {
            self.record(key);
        }
        Ok(ok)
    }
}

impl TargetHandler {
    fn record(&self, key: &PublicKey) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        *seen = Some((
            key.fingerprint(HashAlg::Sha256).to_string(),
            key.algorithm().to_string(),
        ));
    }
}

/// A logged-in connection to the target.
pub struct Target {
    handle: russh::client::Handle<TargetHandler>,
    said: Arc<Mutex<Option<String>>>,
}

/// Connects to `address`, checks the host key against `pin`, logs in as `user`.
pub async fn connect_target(
    address: &str,
    user: &str,
    auth: &TargetAuth,
    pin: &HostKeyPin,
) -> Result<Target, TargetError> {
    let config = russh::client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(std::time::Duration::from_secs(30)),
        window_size: 8 << 20,
        nodelay: true,
        ..Default::default()
    };
    let seen = Arc::new(Mutex::new(None));
    let said = Arc::new(Mutex::new(None));
    let handler = TargetHandler {
        pin: pin.clone(),
        seen: seen.clone(),
        said: said.clone(),
    };
    let connect = russh::client::connect(Arc::new(config), address, handler);
    let result = tokio::time::timeout(std::time::Duration::from_secs(20), connect)
        .await
        .map_err(|_| TargetError::Connect {
            address: address.to_string(),
            reason: "timed out".into(),
        })?;
    let handle = match result {
        Ok(h) => h,
        Err(e) => {
            let mismatch = seen.lock().unwrap_or_else(|p| p.into_inner()).take();
            return Err(match mismatch {
                Some((presented, algorithm)) => TargetError::HostKey {
                    presented,
                    algorithm,
                    pinned: pin.fingerprint().to_string(),
                },
                None => TargetError::Connect {
                    address: address.to_string(),
                    reason: e.to_string(),
                },
            });
        }
    };
    login(handle, user, auth, said).await
}

/// Connects over `stream` to the gateway's own SSH adapter (`hoop exec` on an ssh connection):
/// `host_key` is the gateway's, the login is `hoop` with the exec's own fresh secret.
pub async fn connect_own_adapter<S>(
    stream: S,
    host_key: &HostKey,
    secret: &str,
) -> Result<Target, TargetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = russh::client::Config {
        inactivity_timeout: None,
        window_size: 8 << 20,
        ..Default::default()
    };
    let pin = HostKeyPin::Fingerprint(host_key.fingerprint());
    let said = Arc::new(Mutex::new(None));
    let handler = TargetHandler {
        pin,
        seen: Arc::new(Mutex::new(None)),
        said: said.clone(),
    };
    let handle = russh::client::connect_stream(Arc::new(config), stream, handler)
        .await
        .map_err(|e| TargetError::Connect {
            address: "the gateway's SSH adapter".into(),
            reason: e.to_string(),
        })?;
    login(
        handle,
        "hoop",
        &TargetAuth::Password(secret.to_string()),
        said,
    )
    .await
}

async fn login(
    mut handle: russh::client::Handle<TargetHandler>,
    user: &str,
    auth: &TargetAuth,
    said: Arc<Mutex<Option<String>>>,
) -> Result<Target, TargetError> {
    let refused = || TargetError::Refused {
        user: user.to_string(),
    };
    let ok = match auth {
        TargetAuth::Password(p) => handle
            .authenticate_password(user, p.clone())
            .await
            .map_err(|_| refused())?
            .success(),
        TargetAuth::Key(pem) => {
            let key = russh::keys::decode_secret_key(pem, None).map_err(|_| TargetError::BadKey)?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .ok()
                .flatten()
                .flatten();
            let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
            handle
                .authenticate_publickey(user, key)
                .await
                .map_err(|_| refused())?
                .success()
        }
    };
    if !ok {
        return Err(refused());
    }
    Ok(Target { handle, said })
}

impl Target {
    /// Opens a session channel on the target.
    pub async fn open_session(&self) -> Result<(BackReader, BackWriter), String> {
        let ch = match self.handle.channel_open_session().await {
            Ok(ch) => ch,
            Err(e) => {
                // The server may have said why it ended the connection; its disconnect is
                // read just before or after the failed open.
                for _ in 0..10 {
                    if let Some(m) = self.said.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        return Err(m.strip_prefix("hoop: ").unwrap_or(&m).to_string());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                return Err(format!("the target refused a session channel: {e}"));
            }
        };
        let (r, w) = ch.split();
        Ok((BackReader(r), BackWriter(w)))
    }

    /// Opens a direct-tcpip channel from the target to `host:port`.
    pub async fn open_direct_tcpip(
        &self,
        host: &str,
        port: u32,
        origin: &str,
        origin_port: u32,
    ) -> Result<(BackReader, BackWriter), String> {
        let ch = self
            .handle
            .channel_open_direct_tcpip(host, port, origin, origin_port)
            .await
            .map_err(|e| format!("the target refused to forward to {host}:{port}: {e}"))?;
        let (r, w) = ch.split();
        Ok((BackReader(r), BackWriter(w)))
    }

    /// Ends the connection.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }
}

/// Reads what the target sends on one channel.
pub struct BackReader(ChannelReadHalf);

impl BackReader {
    /// The next message; `None` when the channel is gone.
    pub async fn next(&mut self) -> Option<FromTarget> {
        loop {
            let msg = self.0.wait().await?;
            if let Some(m) = from_target(msg) {
                return Some(m);
            }
        }
    }
}

/// Writes to the target on one channel.
pub struct BackWriter(ChannelWriteHalf<russh::client::Msg>);

impl BackWriter {
    /// stdin data.
    pub async fn data(&self, data: Bytes) -> Io {
        self.0.data_bytes(data).await.map_err(io)
    }
    /// EOF.
    pub async fn eof(&self) -> Io {
        self.0.eof().await.map_err(io)
    }
    /// Close.
    pub async fn close(&self) -> Io {
        self.0.close().await.map_err(io)
    }
    /// `pty-req` (reply wanted; it arrives as [`FromTarget::Success`]/`Failure`).
    pub async fn pty(&self, p: &PtyRequest) -> Io {
        self.0
            .request_pty(
                true,
                &p.term,
                p.cols,
                p.rows,
                p.px_width,
                p.px_height,
                &p.modes.0,
            )
            .await
            .map_err(io)
    }
    /// `shell` (reply wanted).
    pub async fn shell(&self) -> Io {
        self.0.request_shell(true).await.map_err(io)
    }
    /// `exec` (reply wanted).
    pub async fn exec(&self, command: Vec<u8>) -> Io {
        self.0.exec(true, command).await.map_err(io)
    }
    /// `subsystem` (reply wanted).
    pub async fn subsystem(&self, name: &str) -> Io {
        self.0.request_subsystem(true, name).await.map_err(io)
    }
    /// `env` (no reply).
    pub async fn env(&self, name: &str, value: &str) -> Io {
        self.0.set_env(false, name, value).await.map_err(io)
    }
    /// `window-change`.
    pub async fn window_change(&self, cols: u32, rows: u32, pw: u32, ph: u32) -> Io {
        self.0.window_change(cols, rows, pw, ph).await.map_err(io)
    }
    /// `signal`.
    pub async fn signal(&self, s: Signal) -> Io {
        self.0.signal(s.0).await.map_err(io)
    }
}

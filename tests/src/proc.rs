//! Ports, readiness waits, owned child processes and the built binaries.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use rustix::process::Pid;
/// Signals for [`ChildGuard::signal`] and [`ChildGuard::set_stop_signal`] (`Signal::TERM`, ...).
pub use rustix::process::Signal;

/// A currently free TCP port on 127.0.0.1 (bind to port 0, read it back, release it).
///
/// There is a small window in which another process may take the port; prefer letting
/// a child bind port 0 and report its port where the child supports it.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .local_addr()
        .expect("local_addr of bound listener")
        .port()
}

/// Wait until a TCP connection to `addr` succeeds, or fail after `timeout`.
pub async fn wait_for_tcp(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last_err = match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(_stream)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out".to_owned(),
        };
        if Instant::now() >= deadline {
            bail!("{addr} did not accept TCP connections within {timeout:?}: {last_err}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Location of a binary of this workspace (`hoop`, `hoopd`), built into the same target
/// directory as the running test binary.
///
/// `HOOP_BIN_DIR` overrides the directory.
pub fn bin_path(name: &str) -> Result<PathBuf> {
    let dir = bin_dir()?;
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!(
            "binary {name} not found at {}: run `cargo build --workspace --bins` first",
            path.display()
        ))
    }
}

fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HOOP_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    // Same approach as ripgrep's integration tests: the test binary lives in
    // target/<profile>/deps, the workspace binaries in target/<profile>.
    let exe = std::env::current_exe().context("current_exe")?;
    let mut dir = exe
        .parent()
        .with_context(|| format!("{} has no parent directory", exe.display()))?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}

/// A child process owned by a test. Its stdout and stderr go to log files; it is stopped
/// on drop (first with its stop signal and a grace period, then `SIGKILL`) and reaped.
///
/// Only this process (and, with [`ChildGuard::spawn_group`], its own process group) is
/// ever signalled.
#[derive(Debug)]
pub struct ChildGuard {
    name: String,
    child: Option<Child>,
    /// Set once the child has been reaped: its pid must never be signalled again.
    exited: Option<ExitStatus>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    group: bool,
    stop_signal: Signal,
    grace: Duration,
}

impl ChildGuard {
    /// Spawn `cmd` with stdin closed and stdout/stderr redirected to
    /// `<log_dir>/<name>.stdout.log` and `<log_dir>/<name>.stderr.log`.
    pub fn spawn(name: &str, cmd: &mut Command, log_dir: &Path) -> Result<Self> {
        Self::spawn_inner(name, cmd, log_dir, false)
    }

    /// Like [`ChildGuard::spawn`], but the child leads a new process group, and the whole
    /// group is killed on drop (for children that start children of their own).
    pub fn spawn_group(name: &str, cmd: &mut Command, log_dir: &Path) -> Result<Self> {
        Self::spawn_inner(name, cmd, log_dir, true)
    }

    fn spawn_inner(name: &str, cmd: &mut Command, log_dir: &Path, group: bool) -> Result<Self> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("create log dir {}", log_dir.display()))?;
        let stdout_path = log_dir.join(format!("{name}.stdout.log"));
        let stderr_path = log_dir.join(format!("{name}.stderr.log"));
        let stdout = File::create(&stdout_path)
            .with_context(|| format!("create {}", stdout_path.display()))?;
        let stderr = File::create(&stderr_path)
            .with_context(|| format!("create {}", stderr_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        if group {
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {name}: {:?}", cmd))?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            exited: None,
            stdout_path,
            stderr_path,
            group,
            stop_signal: Signal::KILL,
            grace: Duration::from_secs(5),
        })
    }

    /// Signal sent first when stopping (default `SIGKILL`), and how long to wait for the
    /// child to exit before `SIGKILL`.
    pub fn set_stop_signal(&mut self, signal: Signal, grace: Duration) {
        self.stop_signal = signal;
        self.grace = grace;
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Process id (0 once the child has been reaped).
    pub fn id(&self) -> u32 {
        if self.exited.is_some() {
            return 0;
        }
        self.child.as_ref().map_or(0, Child::id)
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Everything the child has written to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// Everything the child has written to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// The tail of both logs, formatted for an error message.
    pub fn logs(&self) -> String {
        format!(
            "--- {name} stdout ({}) ---\n{}\n--- {name} stderr ({}) ---\n{}",
            self.stdout_path.display(),
            tail(&self.stdout(), 8000),
            self.stderr_path.display(),
            tail(&self.stderr(), 8000),
            name = self.name,
        )
    }

    /// The exit status if the child has exited (reaping it).
    pub fn try_status(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.exited {
            return Ok(Some(status));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child
            .try_wait()
            .with_context(|| format!("try_wait {}", self.name))?;
        self.exited = status;
        Ok(status)
    }

    /// Error (with the child's logs) if the child has exited.
    pub fn ensure_running(&mut self) -> Result<()> {
        if let Some(status) = self.try_status()? {
            bail!("{} exited early with {status}\n{}", self.name, self.logs());
        }
        Ok(())
    }

    /// Wait until `addr` accepts TCP connections; fails early (with logs) if the child exits.
    pub async fn wait_for_tcp(&mut self, addr: SocketAddr, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not accept TCP connections on {addr} within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait until stdout or stderr contains `needle`; returns the first line containing
    /// it. Fails early (with logs) if the child exits.
    pub async fn wait_for_output(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            for text in [self.stdout(), self.stderr()] {
                if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                    return Ok(line.to_owned());
                }
            }
            self.ensure_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {needle:?} within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Send `signal` to the child (no-op once it has been reaped).
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let Some(pid) = self.pid() else {
            return Ok(());
        };
        rustix::process::kill_process(pid, signal)
            .with_context(|| format!("send {signal:?} to {} ({pid:?})", self.name))
    }

    /// Send `SIGTERM` and wait up to `timeout` for the child to exit, then `SIGKILL` it.
    /// Returns its exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        if self.try_status()?.is_none() {
            self.signal(Signal::TERM)?;
        }
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill_now();
        let child = self.child.as_mut().context("child already reaped")?;
        let status = child
            .wait()
            .with_context(|| format!("wait for {}", self.name))?;
        self.exited = Some(status);
        Ok(status)
    }

    /// Wait for the child to exit on its own (polling), up to `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn pid(&self) -> Option<Pid> {
        if self.exited.is_some() {
            return None;
        }
        let child = self.child.as_ref()?;
        Pid::from_raw(i32::try_from(child.id()).ok()?)
    }

    /// `SIGKILL` the child (and its process group) unless it has already been reaped.
    fn kill_now(&mut self) {
        let Some(pid) = self.pid() else { return };
        if self.group {
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
    }

    /// Stop (stop signal, grace period, then `SIGKILL`) and reap the child. Idempotent.
    pub fn stop(&mut self) {
        let Some(pid) = self.pid() else {
            self.child = None;
            return;
        };
        if matches!(self.try_status(), Ok(None)) && self.stop_signal != Signal::KILL {
            if self.group {
                let _ = rustix::process::kill_process_group(pid, self.stop_signal);
            } else {
                let _ = rustix::process::kill_process(pid, self.stop_signal);
            }
            let deadline = Instant::now() + self.grace;
            while Instant::now() < deadline {
                if !matches!(self.try_status(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill_now();
        if let Some(mut child) = self.child.take()
            && self.exited.is_none()
        {
            self.exited = child.wait().ok();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Read a file as (lossy) UTF-8; empty if unreadable.
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `max` bytes of `s` (on a char boundary).
pub fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

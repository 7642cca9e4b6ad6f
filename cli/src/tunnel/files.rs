//! Where a tunnel keeps what only its owner may read: a private directory (mode 0700) holding
//! the tunnel password for libpq (a pgpass file and a pg_service file) or the SSH login key, the
//! gateway's pinned host key and an ssh_config. Files are created 0600 and never overwritten
//! (`O_EXCL`); the directory and everything in it is removed when the tunnel ends.
//!
//! Printed lines and process arguments then carry paths, not secrets: other local users can
//! read every process's argv (`ps`, /proc/*/cmdline) but not these files.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::exit::{CliResult, internal};

/// The private directory of one running tunnel.
pub struct TunnelDir {
    dir: tempfile::TempDir,
}

/// Where tunnel directories go: `$XDG_RUNTIME_DIR` when it is a private directory of this user
/// (systemd's /run/user/UID, emptied at logout), else the system temp directory. The tunnel's
/// own directory gets a random name and mode 0700 either way, so a shared /tmp is safe too.
fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from)
        && dir.is_absolute()
        && private_to_me(&dir)
    {
        return dir;
    }
    std::env::temp_dir()
}

#[cfg(unix)]
fn private_to_me(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // lstat: a symlink planted by someone else is not our directory.
    std::fs::symlink_metadata(dir).is_ok_and(|m| {
        m.is_dir() && m.uid() == rustix::process::getuid().as_raw() && m.mode() & 0o077 == 0
    })
}

#[cfg(not(unix))]
fn private_to_me(_dir: &Path) -> bool {
    false
}

impl TunnelDir {
    /// Creates `<base>/hoop-<connection>-<random>` with mode 0700.
    pub fn create(connection: &str) -> CliResult<Self> {
        Self::create_in(&base_dir(), connection)
    }

    fn create_in(base: &Path, connection: &str) -> CliResult<Self> {
        let mut builder = tempfile::Builder::new();
        let prefix = format!("hoop-{connection}-");
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o700));
        }
        let dir = builder.tempdir_in(base).map_err(|e| {
            internal(format!(
                "cannot create a private directory for the tunnel in {}: {e}; set TMPDIR to a directory you own",
                base.display()
            ))
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mode = std::fs::symlink_metadata(dir.path())
                .map(|m| m.mode())
                .unwrap_or(0o777);
            if mode & 0o077 != 0 {
                return Err(internal(format!(
                    "the tunnel directory {} is not private (mode {:o}); refusing to write the tunnel password there",
                    dir.path().display(),
                    mode & 0o777
                )));
            }
        }
        Ok(Self { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a new file `name` readable by its owner only.
    pub fn write_private(&self, name: &str, contents: &[u8]) -> CliResult<PathBuf> {
        let path = self.dir.path().join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(&path)
            .and_then(|mut f| f.write_all(contents))
            .map_err(|e| internal(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

/// libpq's files for a PostgreSQL tunnel.
pub struct PgFiles {
    /// The pgpass file (`passfile`, `PGPASSFILE`).
    pub passfile: PathBuf,
    /// The connection service file (`PGSERVICEFILE`).
    pub service_file: PathBuf,
    /// The service's name in it.
    pub service: String,
    /// A libpq URL with no password in it: the passfile is named by its `passfile` parameter.
    pub url: String,
}

/// Escapes a pgpass field (`:` and `\`).
fn pgpass_field(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

/// Percent-encodes everything but unreserved characters and `/` (libpq decodes `%XX` in URIs
/// and, unlike HTML forms, does not read `+` as a space).
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Writes the pgpass and service files for a tunnel on `127.0.0.1:port`.
pub fn write_pg_files(
    dir: &TunnelDir,
    connection: &str,
    port: u16,
    database: &str,
    password: &str,
) -> CliResult<PgFiles> {
    // Both names libpq may look up: the printed host and `-h localhost`. Any database and user:
    // the gateway decides both.
    let pw = pgpass_field(password);
    let passfile = dir.write_private(
        "pgpass",
        format!("127.0.0.1:{port}:*:*:{pw}\nlocalhost:{port}:*:*:{pw}\n").as_bytes(),
    )?;
    let service = connection.to_string();
    let service_file = dir.write_private(
        "pg_service.conf",
        format!(
            "# hoop connect {connection}: removed when the tunnel ends\n\
             [{service}]\nhost=127.0.0.1\nport={port}\ndbname={database}\nuser=hoop\n\
             sslmode=disable\npassfile={}\n",
            passfile.display()
        )
        .as_bytes(),
    )?;
    let url = format!(
        "postgres://hoop@127.0.0.1:{port}/{}?sslmode=disable&passfile={}",
        uri_encode(database),
        uri_encode(&passfile.display().to_string())
    );
    Ok(PgFiles {
        passfile,
        service_file,
        service,
        url,
    })
}

/// OpenSSH's files for an SSH tunnel.
pub struct SshFiles {
    /// The tunnel's private key (`IdentityFile`).
    pub identity: PathBuf,
    /// known_hosts with the gateway's key under the alias, when the gateway published it.
    pub known_hosts: Option<PathBuf>,
    /// An ssh_config for `ssh -F`, with a `Host <connection>.hoop` entry.
    pub config: PathBuf,
    /// The host name in that config.
    pub host: String,
}

/// Quotes a path for ssh_config.
fn ssh_quote(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// Writes the key, the pinned host key and an ssh_config for a tunnel on `127.0.0.1:port`.
pub fn write_ssh_files(
    dir: &TunnelDir,
    connection: &str,
    port: u16,
    private_key: &str,
    host_key: Option<&str>,
    host_key_alias: &str,
) -> CliResult<SshFiles> {
    let identity = dir.write_private("id_ed25519", private_key.as_bytes())?;
    let known_hosts = host_key
        .map(|k| dir.write_private("known_hosts", format!("{host_key_alias} {k}\n").as_bytes()))
        .transpose()?;
    let host = format!("{connection}.hoop");
    let pin = match &known_hosts {
        Some(k) => format!(
            "  UserKnownHostsFile {}\n  StrictHostKeyChecking yes\n",
            ssh_quote(k)
        ),
        None => String::new(),
    };
    let config = dir.write_private(
        "ssh_config",
        format!(
            "# hoop connect {connection}: removed when the tunnel ends\n\
             Host {host}\n  HostName 127.0.0.1\n  Port {port}\n  User hoop\n  \
             HostKeyAlias {host_key_alias}\n  IdentityFile {}\n  IdentitiesOnly yes\n  \
             PreferredAuthentications publickey\n{pin}",
            ssh_quote(&identity)
        )
        .as_bytes(),
    )?;
    Ok(SshFiles {
        identity,
        known_hosts,
        config,
        host,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(p: &Path) -> u32 {
        use std::os::unix::fs::MetadataExt;
        std::fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    #[test]
    fn files_are_private_and_gone_when_the_tunnel_ends() {
        let base = tempfile::tempdir().unwrap();
        let dir = TunnelDir::create_in(base.path(), "shop").unwrap();
        let root = dir.path().to_path_buf();
        let pg = write_pg_files(&dir, "shop", 5433, "shop", "Secret:with\\odd").unwrap();
        #[cfg(unix)]
        {
            assert_eq!(mode(&root), 0o700);
            assert_eq!(mode(&pg.passfile), 0o600);
            assert_eq!(mode(&pg.service_file), 0o600);
        }
        let pass = std::fs::read_to_string(&pg.passfile).unwrap();
        assert!(
            pass.contains("127.0.0.1:5433:*:*:Secret\\:with\\\\odd\n"),
            "{pass}"
        );
        assert!(!pg.url.contains("Secret"), "{}", pg.url);
        assert!(pg.url.contains("passfile=/"), "{}", pg.url);
        let service = std::fs::read_to_string(&pg.service_file).unwrap();
        assert!(service.contains("[shop]\n") && !service.contains("Secret"));
        // A file is never overwritten (O_EXCL): a planted file fails the write.
        assert!(dir.write_private("pgpass", b"x").is_err());
        drop(dir);
        assert!(!root.exists());
    }

    #[test]
    fn ssh_files_pin_the_gateway_and_name_the_key() {
        let base = tempfile::tempdir().unwrap();
        let dir = TunnelDir::create_in(base.path(), "web").unwrap();
        let f = write_ssh_files(
            &dir,
            "web",
            2222,
            "-----BEGIN OPENSSH PRIVATE KEY-----\n",
            Some("ssh-ed25519 AAAAC3Nza"),
            "hoop-gateway",
        )
        .unwrap();
        let cfg = std::fs::read_to_string(&f.config).unwrap();
        assert!(cfg.contains("Host web.hoop\n"), "{cfg}");
        assert!(cfg.contains("IdentitiesOnly yes"), "{cfg}");
        assert!(cfg.contains("StrictHostKeyChecking yes"), "{cfg}");
        assert_eq!(
            std::fs::read_to_string(f.known_hosts.unwrap()).unwrap(),
            "hoop-gateway ssh-ed25519 AAAAC3Nza\n"
        );
        #[cfg(unix)]
        assert_eq!(mode(&f.identity), 0o600);
    }

    #[test]
    fn uri_encoding_keeps_paths_readable_and_escapes_the_rest() {
        assert_eq!(
            uri_encode("/run/user/0/hoop-a_b.c"),
            "/run/user/0/hoop-a_b.c"
        );
        assert_eq!(uri_encode("a b+c&d"), "a%20b%2Bc%26d");
    }
}

//! TLS with a real CA: `hoop login --ca-file` against a gateway with its own certificate, and
//! the gateway's TLS to PostgreSQL (`tls = "require"` and `"verify-full"`).

use std::path::{Path, PathBuf};
use std::process::Command;

use hoop_tests::gateway::{code, stderr, stdout};
use hoop_tests::{CliUser, Gateway};

use crate::postgres::{psql, setup};

/// A throwaway CA and a server certificate for localhost / 127.0.0.1, made with openssl.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=hoop test CA",
            "-days",
            "2",
        ]);
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        // A second, unrelated CA for the negative case.
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "other.key",
            "-out",
            "other-ca.pem",
            "-subj",
            "/CN=other CA",
            "-days",
            "2",
        ]);
        Pki { dir }
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

#[tokio::test]
async fn login_with_a_ca_file_needs_no_pin() {
    let pki = Pki::new();
    let gw = Gateway::start(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"\n[auth]\ndevice_poll_interval = \"1s\"\n",
        pki.path("server.pem").display(),
        pki.path("server.key").display()
    ))
    .await
    .unwrap();
    gw.add_user("alice", "alice-password", "engineering")
        .unwrap();
    let cli = CliUser::new().unwrap();
    // Without the CA the certificate is untrusted.
    let out = cli.run(&["login", "--gateway", &gw.url]).unwrap();
    assert_eq!(code(&out), 84, "{}", stderr(&out));
    let ca = pki.path("ca.pem");
    let ca = ca.to_str().unwrap();
    let gwr = &gw;
    let out = cli
        .login(&["--gateway", &gw.url, "--ca-file", ca], |p| async move {
            let page = gwr
                .submit_device_page(&p.code, "alice", "alice-password", false)
                .await?;
            anyhow::ensure!(page.contains("You are signed in"), "{page}");
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    // The CA is remembered for the gateway: later commands need no flag.
    let out = cli.run(&["whoami", "-o", "json"]).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).contains("alice"));
    let settings = std::fs::read_to_string(cli.home().join(".config/hoop/config.toml")).unwrap();
    assert!(settings.contains("ca_file"), "{settings}");
}

fn chown_postgres(path: &Path) {
    let _ = Command::new("chown")
        .arg("postgres:postgres")
        .arg(path)
        .status();
}

#[tokio::test]
async fn the_gateway_speaks_tls_to_postgres_and_verifies_it() {
    let pki = Pki::new();
    std::fs::write(pki.path("pw"), crate::postgres::TARGET_PASSWORD).unwrap();
    let env = setup(
        "",
        &format!(
            r#"
[[connections]]
name = "shop-verified"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = {{ file = "{pw}" }}
allow = ["engineering"]
tls = "verify-full"
tls_ca_file = "{ca}"

[[connections]]
name = "shop-wrong-ca"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = {{ file = "{pw}" }}
allow = ["engineering"]
tls = "verify-full"
tls_ca_file = "{other}"

[[connections]]
name = "shop-require"
type = "postgres"
address = "127.0.0.1:$PGPORT"
database = "shop"
user = "app"
password = {{ file = "{pw}" }}
allow = ["engineering"]
tls = "require"
"#,
            pw = pki.path("pw").display(),
            ca = pki.path("ca.pem").display(),
            other = pki.path("other-ca.pem").display(),
        ),
    )
    .await;
    // Turn TLS on in the target.
    let data = env.pg.data_dir().to_path_buf();
    std::fs::copy(pki.path("server.pem"), data.join("server.crt")).unwrap();
    std::fs::copy(pki.path("server.key"), data.join("server.key")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        data.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    chown_postgres(&data.join("server.crt"));
    chown_postgres(&data.join("server.key"));
    env.pg
        .psql(
            "postgres",
            "alter system set ssl = on; select pg_reload_conf();",
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let on = env.pg.psql("postgres", "show ssl;").await.unwrap();
    assert_eq!(on.trim(), "on", "{}", env.pg.logs());

    for (name, works) in [
        ("shop-verified", true),
        ("shop-require", true),
        ("shop-wrong-ca", false),
    ] {
        let tunnel = env
            .cli
            .connect(name, &[("HOOP_TOKEN", &env.key)])
            .await
            .unwrap();
        let out = psql(
            &tunnel.url,
            "select ssl from pg_stat_ssl where pid = pg_backend_pid();",
        );
        if works {
            assert!(out.status.success(), "{name}: {}", stderr(&out));
            assert_eq!(
                stdout(&out).trim(),
                "t",
                "{name}: the gateway's upstream connection is encrypted"
            );
        } else {
            assert!(!out.status.success(), "{name} must be refused");
            assert!(stderr(&out).contains("TLS"), "{name}: {}", stderr(&out));
        }
    }
}

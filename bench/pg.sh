#!/usr/bin/env bash
# bench/pg.sh: PostgreSQL throughput, large results and idle memory through hoop, compared with
# direct connections and with a chain of two plain TCP relays. Not run in CI; see bench/README.md.
#
# Environment (all optional):
#   BENCH_T=15            seconds per pgbench run
#   BENCH_ROUNDS=3        rounds; each round runs every mode on every path (A B C D ...)
#   BENCH_MODES="simple extended prepared"
#   BENCH_CLIENTS=8 BENCH_JOBS=2 BENCH_SCALE=10
#   BENCH_LARGE_ROWS=4000000   rows of the large result (0 skips it)
#   BENCH_IDLE=100        idle sessions for the memory check (0 skips it)
#   BENCH_BUILD=1         0: do not run cargo, use existing release binaries
#   BENCH_REV             a git revision (e.g. HEAD): build hoop/hoopd from a snapshot of it
#                         (git archive into bench/.snapshot, its own target dir) instead of the
#                         working tree, which other people may be editing
#   BENCH_WAIT_IDLE=0     wait up to this many seconds for running rustc processes to finish
#   BENCH_KEEP=0          1: keep the work dir (logs, config, TSVs) instead of deleting it
#   BENCH_HOLD=0          1: set everything up, print the four URLs and the PIDs, and wait for
#                         Ctrl-C instead of benchmarking (for perf, manual pgbench runs, ...)
#   HOOP_BIN_DIR          where hoop and hoopd are (default: <repo>/target/release)
#   PG_BIN                PostgreSQL binaries (default: /usr/lib/postgresql/15/bin, else newest)
set -euo pipefail

BENCH_T=${BENCH_T:-15}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_MODES=${BENCH_MODES:-simple extended prepared}
BENCH_CLIENTS=${BENCH_CLIENTS:-8}
BENCH_JOBS=${BENCH_JOBS:-2}
BENCH_SCALE=${BENCH_SCALE:-10}
BENCH_LARGE_ROWS=${BENCH_LARGE_ROWS:-4000000}
BENCH_IDLE=${BENCH_IDLE:-100}
BENCH_BUILD=${BENCH_BUILD:-1}
BENCH_WAIT_IDLE=${BENCH_WAIT_IDLE:-0}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_HOLD=${BENCH_HOLD:-0}
BENCH_REV=${BENCH_REV:-}

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
SNAPSHOT=$BENCH_DIR/.snapshot
if [[ -n $BENCH_REV ]]; then
    HOOP_BIN_DIR=${HOOP_BIN_DIR:-$SNAPSHOT/target/release}
else
    HOOP_BIN_DIR=${HOOP_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
fi
RELAY_BIN=$BENCH_DIR/relay/target/release/bench-relay

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'bench/pg.sh: %s\n' "$*" >&2
    exit 1
}

# --- prerequisites ----------------------------------------------------------------------------

for v in BENCH_T BENCH_ROUNDS BENCH_CLIENTS BENCH_JOBS BENCH_SCALE BENCH_LARGE_ROWS BENCH_IDLE BENCH_WAIT_IDLE; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((BENCH_T > 0 && BENCH_ROUNDS > 0)) || die "BENCH_T and BENCH_ROUNDS must be at least 1"
for m in $BENCH_MODES; do
    case $m in simple | extended | prepared) ;; *) die "BENCH_MODES: unknown pgbench mode '$m'" ;; esac
done

if [[ -z ${PG_BIN:-} ]]; then
    if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
        PG_BIN=/usr/lib/postgresql/15/bin
    else
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    fi
fi
[[ -n $PG_BIN ]] || die "PostgreSQL server binaries not found: apt-get install -y postgresql (or set PG_BIN)"
for b in initdb postgres pg_isready psql pgbench; do
    [[ -x $PG_BIN/$b ]] || die "$PG_BIN/$b is missing: apt-get install -y postgresql postgresql-contrib (or set PG_BIN)"
done
command -v python3 >/dev/null || die "python3 is required (free ports, certificate fingerprint, idle sessions, summary)"
for c in awk sed date mktemp pgrep; do
    command -v "$c" >/dev/null || die "$c is required"
done
[[ -r /proc/self/stat ]] || die "/proc is required (CPU time and RSS are read from it)"
if ((BENCH_BUILD)); then
    command -v cargo >/dev/null || die "cargo is required to build (or set BENCH_BUILD=0 with built binaries)"
fi

AS_PG=()
if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (apt-get install -y postgresql)"
    if command -v setpriv >/dev/null; then
        # setpriv execs, so the PID we record is postgres itself.
        AS_PG=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
    elif command -v runuser >/dev/null; then
        AS_PG=(runuser -u postgres --)
    else
        die "running as root needs setpriv or runuser (util-linux) to start PostgreSQL as 'postgres'"
    fi
fi

# --- cleanup ------------------------------------------------------------------------------------

W=$(mktemp -d /tmp/hoop-bench.XXXXXX)
chmod 755 "$W"
PIDS=()   # our background children, in start order
PG_PID=""
IDLE_PID=""

stop_pid() { # pid signal seconds
    local pid=$1 sig=$2 secs=$3 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    set +e
    trap - EXIT INT TERM
    [[ -n $IDLE_PID ]] && stop_pid "$IDLE_PID" TERM 5
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${PIDS[i]}" TERM 10
    done
    # SIGQUIT: immediate shutdown (the cluster is thrown away); postgres is our direct child.
    [[ -n $PG_PID ]] && stop_pid "$PG_PID" QUIT 10
    if ((rc != 0)); then
        for f in "$W"/*.log; do
            [[ -s $f ]] || continue
            printf '\n--- last lines of %s ---\n' "$(basename "$f")" >&2
            tail -n 15 "$f" >&2
        done
    fi
    if ((BENCH_KEEP)); then
        log "work dir kept: $W"
    else
        rm -rf "$W"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- helpers ------------------------------------------------------------------------------------

rustc_count() { pgrep -c -x rustc 2>/dev/null || true; }

cpu_ticks() { # utime+stime of a pid, in clock ticks
    local s
    s=$(<"/proc/$1/stat") || {
        echo 0
        return
    }
    s=${s##*) }
    # shellcheck disable=SC2086
    set -- $s
    echo $((${12} + ${13}))
}

rss_kb() { awk -v k="${2:-VmRSS}:" '$1 == k {print $2}' "/proc/$1/status"; }

free_ports() { # n
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_for_line() { # file pattern seconds pid what
    local file=$1 pat=$2 secs=$3 pid=$4 what=$5 i
    for ((i = 0; i < secs * 10; i++)); do
        grep -q -- "$pat" "$file" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready (see its log above)"
        sleep 0.1
    done
    die "$what was not ready within ${secs}s"
}

# --- build --------------------------------------------------------------------------------------

if ((BENCH_WAIT_IDLE > 0)); then
    # Idle means no rustc in two checks 5 s apart (builds have short gaps between crates).
    quiet=0
    for ((i = 0; i < BENCH_WAIT_IDLE; i += 5)); do
        if [[ $(rustc_count) == 0 ]]; then
            ((++quiet >= 2)) && break
        else
            quiet=0
        fi
        ((i == 0)) && log "waiting up to ${BENCH_WAIT_IDLE}s for running rustc processes to finish"
        sleep 5
    done
fi

if ((BENCH_BUILD)); then
    if [[ -n $BENCH_REV ]]; then
        rev=$(git -C "$ROOT" rev-parse --verify "$BENCH_REV^{commit}" 2>/dev/null) ||
            die "BENCH_REV=$BENCH_REV is not a commit of $ROOT"
        log "building hoop and hoopd from a snapshot of $BENCH_REV (${rev:0:9}) in bench/.snapshot"
        # Extract only when the commit changed, stamping files with the current time (tar -m):
        # cargo compares mtimes, and a commit's own (older) times could leave stale builds fresh.
        if [[ ! -d $SNAPSHOT/src || $(cat "$SNAPSHOT/rev" 2>/dev/null) != "$rev" ]]; then
            rm -rf "$SNAPSHOT/src" "$SNAPSHOT/rev"
            mkdir -p "$SNAPSHOT/src"
            git -C "$ROOT" archive "$rev" | tar -x -m -C "$SNAPSHOT/src" || die "git archive $BENCH_REV failed"
            echo "$rev" >"$SNAPSHOT/rev"
        fi
        (cd "$SNAPSHOT/src" && CARGO_TARGET_DIR=$SNAPSHOT/target cargo build --release --bins --quiet) ||
            die "cargo build --release --bins of $BENCH_REV failed"
    else
        log "building hoop and hoopd (cargo build --release --bins)"
        (cd "$ROOT" && cargo build --release --bins --quiet) ||
            die "cargo build --release --bins failed (the working tree may be mid-edit: BENCH_REV=HEAD builds the last commit)"
    fi
    log "building the TCP relay (bench/relay)"
    cargo build --release --quiet --manifest-path "$BENCH_DIR/relay/Cargo.toml" ||
        die "building bench/relay failed"
fi
for b in "$HOOP_BIN_DIR/hoop" "$HOOP_BIN_DIR/hoopd" "$RELAY_BIN"; do
    [[ -x $b ]] || die "$b not found: run without BENCH_BUILD=0, or set HOOP_BIN_DIR"
done

# --- PostgreSQL ---------------------------------------------------------------------------------

read -r PG_PORT RELAY1_PORT RELAY2_PORT GW_PORT PLAIN_PORT POLICY_PORT <<<"$(free_ports 6)"
DB=bench
DB_USER=bench
DB_PW="bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
PG_DIR=$W/pg
PG_DATA=$PG_DIR/data
mkdir -p "$PG_DIR"
printf '%s\n' "$DB_PW" >"$W/db-password"
chmod 600 "$W/db-password"
su_pw=$(python3 -c 'import secrets; print(secrets.token_hex(12))')
printf '%s\n' "$su_pw" >"$PG_DIR/pwfile"
[[ ${#AS_PG[@]} -gt 0 ]] && chown -R postgres: "$PG_DIR"

log "initdb in $PG_DIR"
(cd "$PG_DIR" && LC_ALL=C "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --pwfile="$PG_DIR/pwfile" --no-sync \
    --no-instructions) >"$W/initdb.log" 2>&1 || die "initdb failed: $(tail -5 "$W/initdb.log")"
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$PG_DATA/pg_hba.conf"

log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
(cd "$PG_DIR" && LC_ALL=C exec "${AS_PG[@]}" "$PG_BIN/postgres" -D "$PG_DATA" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$PG_DIR" \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
    -c shared_buffers=256MB -c max_connections=300 -c password_encryption=scram-sha-256 \
    -c log_min_messages=warning) >"$W/postgres.log" 2>&1 &
PG_PID=$!
for ((i = 0; i < 300; i++)); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 1 && break
    kill -0 "$PG_PID" 2>/dev/null || die "PostgreSQL exited during start"
    sleep 0.1
done
"$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" || die "PostgreSQL not ready within 30 s"

pg_super() { "$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$PG_DIR" -p "$PG_PORT" -U postgres -d "${2:-postgres}" -c "$1"; }
pg_super "SET password_encryption = 'scram-sha-256'; CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PW';" ||
    die "cannot create the role"
pg_super "CREATE DATABASE $DB OWNER $DB_USER;" || die "cannot create the database"
DIRECT_URL="postgres://$DB_USER:$DB_PW@127.0.0.1:$PG_PORT/$DB?sslmode=disable"
log "pgbench -i -s $BENCH_SCALE"
"$PG_BIN/pgbench" -i -s "$BENCH_SCALE" -q "$DIRECT_URL" >"$W/pgbench-init.log" 2>&1 ||
    die "pgbench -i failed: $(tail -5 "$W/pgbench-init.log")"

# --- relay chain --------------------------------------------------------------------------------

"$RELAY_BIN" "127.0.0.1:$RELAY2_PORT" "127.0.0.1:$PG_PORT" >"$W/relay2.log" 2>&1 &
PIDS+=($!)
RELAY2_PID=$!
"$RELAY_BIN" "127.0.0.1:$RELAY1_PORT" "127.0.0.1:$RELAY2_PORT" >"$W/relay1.log" 2>&1 &
PIDS+=($!)
RELAY1_PID=$!
wait_for_line "$W/relay2.log" '^ready' 10 "$RELAY2_PID" "relay 2"
wait_for_line "$W/relay1.log" '^ready' 10 "$RELAY1_PID" "relay 1"
RELAY_URL="postgres://$DB_USER:$DB_PW@127.0.0.1:$RELAY1_PORT/$DB?sslmode=disable"

# --- hoopd and hoop connect ---------------------------------------------------------------------

GW_DIR=$W/hoopd
mkdir -p "$GW_DIR"
cat >"$GW_DIR/hoopd.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "data"

[[connections]]
name = "bench-plain"
type = "postgres"
address = "127.0.0.1:$PG_PORT"
database = "$DB"
user = "$DB_USER"
password = { file = "$W/db-password" }
allow = ["bench"]

[[connections]]
name = "bench-policy"
type = "postgres"
address = "127.0.0.1:$PG_PORT"
database = "$DB"
user = "$DB_USER"
password = { file = "$W/db-password" }
allow = ["bench"]
guardrails = ["no-ddl", "no-unbounded-writes"]
masking = ["pii"]
EOF
log "starting hoopd on 127.0.0.1:$GW_PORT"
(cd "$GW_DIR" && exec "$HOOP_BIN_DIR/hoopd" --config "$GW_DIR/hoopd.toml") >"$W/hoopd.log" 2>&1 &
PIDS+=($!)
HOOPD_PID=$!
wait_for_line "$W/hoopd.log" 'gateway listening' 60 "$HOOPD_PID" "hoopd"
KEY=$("$HOOP_BIN_DIR/hoopd" api-keys create --name bench --groups bench --config "$GW_DIR/hoopd.toml" 2>"$W/api-key.log") ||
    die "hoopd api-keys create failed: $(cat "$W/api-key.log")"
KEY=$(printf '%s' "$KEY" | tail -1 | tr -d '[:space:]')
FINGERPRINT=$(python3 - "$GW_DIR/data/tls.crt" <<'EOF'
import base64, hashlib, sys
pem = open(sys.argv[1]).read()
b64 = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END")[0]
print("SHA256:" + hashlib.sha256(base64.b64decode("".join(b64.split()))).hexdigest())
EOF
) || die "cannot read the gateway certificate $GW_DIR/data/tls.crt"

CLI_HOME=$W/home
mkdir -p "$CLI_HOME/.config/hoop" "$CLI_HOME/.local/share"
GW_URL="https://127.0.0.1:$GW_PORT"
printf 'gateway = "%s"\n[gateways."%s"]\nfingerprint = "%s"\n' "$GW_URL" "$GW_URL" "$FINGERPRINT" \
    >"$CLI_HOME/.config/hoop/config.toml"

start_connect() { # name port -> sets CONNECT_PID, CONNECT_URL, CONNECT_PW
    local name=$1 port=$2
    (cd "$W" && exec env -u HOOP_GATEWAY -u DISPLAY -u WAYLAND_DISPLAY HOME="$CLI_HOME" \
        XDG_CONFIG_HOME="$CLI_HOME/.config" XDG_DATA_HOME="$CLI_HOME/.local/share" \
        HOOP_CREDENTIAL_STORE=file HOOP_TOKEN="$KEY" \
        "$HOOP_BIN_DIR/hoop" connect "$name" -o json --port "$port") \
        >"$W/connect-$name.out" 2>"$W/connect-$name.log" &
    CONNECT_PID=$!
    PIDS+=($CONNECT_PID)
    wait_for_line "$W/connect-$name.out" '"event":"ready"' 30 "$CONNECT_PID" "hoop connect $name"
    read -r CONNECT_URL CONNECT_PW < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    if "\"ready\"" in line:
        v = json.loads(line)
        print(v["url"], v["password"])
        break' "$W/connect-$name.out")
}
start_connect bench-plain "$PLAIN_PORT"
PLAIN_PID=$CONNECT_PID
PLAIN_URL=$CONNECT_URL
start_connect bench-policy "$POLICY_PORT"
POLICY_PID=$CONNECT_PID
POLICY_URL=$CONNECT_URL
POLICY_PW=$CONNECT_PW

# --- metadata -----------------------------------------------------------------------------------

if [[ -n $BENCH_REV ]]; then
    [[ -n ${rev:-} ]] || rev=$(git -C "$ROOT" rev-parse "$BENCH_REV" 2>/dev/null || echo "$BENCH_REV")
    commit="${rev:0:9} (snapshot of $BENCH_REV)"
else
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git -C "$ROOT" status --porcelain -- . ':!bench' 2>/dev/null | wc -l)
    ((dirty > 0)) && commit="$commit (+$dirty uncommitted files in the working tree)"
fi
((BENCH_BUILD)) || commit="$commit, prebuilt binaries from $HOOP_BIN_DIR"
{
    echo "date=$(date '+%Y-%m-%d %H:%M:%S %Z')"
    echo "commit=$commit"
    echo "postgres=$("$PG_BIN/postgres" --version)"
    echo "cpus=$(nproc)"
    echo "load_start=$(cut -d' ' -f1-3 /proc/loadavg)"
    echo "rustc_start=$(rustc_count)"
    echo "clk_tck=$(getconf CLK_TCK)"
    echo "t=$BENCH_T"
    echo "rounds=$BENCH_ROUNDS"
    echo "clients=$BENCH_CLIENTS"
    echo "jobs=$BENCH_JOBS"
    echo "scale=$BENCH_SCALE"
} >"$W/meta.txt"
[[ $(rustc_count) == 0 ]] || log "warning: rustc is running; numbers will be noisier (BENCH_WAIT_IDLE=600 waits)"

# url, local proxy pid, remote proxy pid of each path
declare -A URL=([direct]=$DIRECT_URL [relay]=$RELAY_URL [hoop-plain]=$PLAIN_URL [hoop-policy]=$POLICY_URL)
declare -A LOCAL=([direct]="" [relay]=$RELAY1_PID [hoop-plain]=$PLAIN_PID [hoop-policy]=$POLICY_PID)
declare -A REMOTE=([direct]="" [relay]=$RELAY2_PID [hoop-plain]=$HOOPD_PID [hoop-policy]=$HOOPD_PID)
PATHS_ORDER=(direct relay hoop-plain hoop-policy)
ticks_of() { [[ -n $1 ]] && cpu_ticks "$1" || echo 0; }

if ((BENCH_HOLD)); then
    {
        for path in "${PATHS_ORDER[@]}"; do
            printf 'URL_%s=%q\n' "${path//-/_}" "${URL[$path]}"
        done
        printf 'PGBIN=%q\nPG_PID=%s\nRELAY1_PID=%s\nRELAY2_PID=%s\nHOOPD_PID=%s\n' \
            "$PG_BIN" "$PG_PID" "$RELAY1_PID" "$RELAY2_PID" "$HOOPD_PID"
        printf 'HOOP_PLAIN_PID=%s\nHOOP_POLICY_PID=%s\n' "$PLAIN_PID" "$POLICY_PID"
    } >"$W/env.sh"
    cat "$W/env.sh"
    log "holding; the above is in $W/env.sh (source it). Ctrl-C or kill -TERM $$ to stop."
    trap 'exit 0' INT TERM
    sleep infinity &
    PIDS+=($!)
    wait $! || true
    exit 0
fi

# --- memory with idle sessions (first, on a fresh gateway) ------------------------------------

if ((BENCH_IDLE > 0)); then
    log "memory: $BENCH_IDLE idle sessions through hoop-policy"
    # One session first so lazily built state (policy, TLS, HTTP/2) is in "before".
    python3 "$BENCH_DIR/lib/idle_sessions.py" 127.0.0.1 "$POLICY_PORT" hoop "$POLICY_PW" "$DB" 1 \
        >"$W/idle-warm.out" 2>"$W/idle.log" &
    IDLE_PID=$!
    wait_for_line "$W/idle-warm.out" '^ready' 30 "$IDLE_PID" "idle session warm-up"
    stop_pid "$IDLE_PID" TERM 5
    sleep 1
    hb=$(rss_kb "$HOOPD_PID")
    cb=$(rss_kb "$POLICY_PID")
    python3 "$BENCH_DIR/lib/idle_sessions.py" 127.0.0.1 "$POLICY_PORT" hoop "$POLICY_PW" "$DB" "$BENCH_IDLE" \
        >"$W/idle.out" 2>"$W/idle.log" &
    IDLE_PID=$!
    wait_for_line "$W/idle.out" '^ready' 120 "$IDLE_PID" "idle sessions"
    sleep 2
    hw=$(rss_kb "$HOOPD_PID")
    cw=$(rss_kb "$POLICY_PID")
    backends=$(pg_super "select count(*) from pg_stat_activity where datname = '$DB'")
    stop_pid "$IDLE_PID" TERM 5
    IDLE_PID=""
    printf 'sessions=%s\nhoopd_before_kb=%s\nhoopd_with_kb=%s\nhoop_before_kb=%s\nhoop_with_kb=%s\npg_backends=%s\n' \
        "$BENCH_IDLE" "$hb" "$hw" "$cb" "$cw" "$backends" >"$W/rss.txt"
    log "hoopd VmRSS ${hb} kB -> ${hw} kB with $BENCH_IDLE idle sessions"
    sleep 2 # let the sessions end on both sides
fi

# --- pgbench ------------------------------------------------------------------------------------

PGBENCH=("$PG_BIN/pgbench" -n -S -c "$BENCH_CLIENTS" -j "$BENCH_JOBS")

# The gateway's SQL analysis counters: "text_hits shape_hits misses analyses seconds".
sql_stats() {
    python3 - "$GW_URL/metrics" <<'PY'
import re, ssl, sys, urllib.request
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
text = urllib.request.urlopen(sys.argv[1], context=ctx, timeout=10).read().decode()
def value(name):
    m = re.search(re.escape(name) + r" ([0-9.e+-]+)", text)
    return m.group(1) if m else "0"
lookups = 'hoop_sql_cache_lookups_total{result="%s"}'
print(value(lookups % "text_hit"), value(lookups % "shape_hit"), value(lookups % "miss"),
      value("hoop_sql_analysis_seconds_count"), value("hoop_sql_analysis_seconds_sum"))
PY
}

run_pgbench() { # mode path round seconds -> appends to pgbench.tsv unless round is "warmup"
    local mode=$1 path=$2 round=$3 secs=$4 l0 r0 l1 r1 busy out tps tx failed s0="" s1=""
    busy=$(rustc_count)
    if [[ $path == hoop-policy ]]; then s0=$(sql_stats); fi
    l0=$(ticks_of "${LOCAL[$path]}")
    r0=$(ticks_of "${REMOTE[$path]}")
    out=$("${PGBENCH[@]}" -T "$secs" -M "$mode" "${URL[$path]}" 2>&1) || {
        printf '%s\n' "$out" >&2
        die "pgbench -M $mode through $path failed"
    }
    l1=$(ticks_of "${LOCAL[$path]}")
    r1=$(ticks_of "${REMOTE[$path]}")
    if [[ $path == hoop-policy ]]; then s1=$(sql_stats); fi
    tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time).*/\1/p' <<<"$out")
    tx=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    [[ -n $tps && -n $tx ]] || {
        printf '%s\n' "$out" >&2
        die "cannot read pgbench's output (-M $mode through $path)"
    }
    if [[ ${failed:-0} != 0 ]]; then
        printf '%s\n' "$out" >&2
        log "warning: $failed failed transactions (-M $mode through $path)"
    fi
    [[ $round == warmup ]] && return 0
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$path" "$round" "$tps" "$tx" "${failed:-0}" \
        $((l1 - l0)) $((r1 - r0)) "$busy" >>"$W/pgbench.tsv"
    if [[ $path == hoop-policy ]]; then
        # mode, round, transactions, then the counters before and after the run
        printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$round" "$tx" "${s0// /$'\t'}" "${s1// /$'\t'}" \
            >>"$W/sqlstats.tsv"
    fi
    log "round $round -M $mode $path: $tps tps"
}

log "warm-up (checks every path works)"
run_pgbench simple direct warmup 3
for path in relay hoop-plain hoop-policy; do
    run_pgbench extended "$path" warmup 1
done

: >"$W/pgbench.tsv"
: >"$W/sqlstats.tsv"
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    for mode in $BENCH_MODES; do
        for path in "${PATHS_ORDER[@]}"; do
            run_pgbench "$mode" "$path" "$round" "$BENCH_T"
        done
    done
done

# --- large result -------------------------------------------------------------------------------

if ((BENCH_LARGE_ROWS > 0)); then
    LARGE_SQL="select g, md5(g::text) from generate_series(1, $BENCH_LARGE_ROWS) g"
    PSQL=("$PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1)
    log "large result: measuring its size directly"
    bytes=$("${PSQL[@]}" -c "$LARGE_SQL" "$DIRECT_URL" | wc -c)
    bytes_policy=$("${PSQL[@]}" -c "$LARGE_SQL" "$POLICY_URL" | wc -c)
    {
        echo "large_sql=$LARGE_SQL"
        echo "large_bytes=$bytes"
        echo "large_bytes_policy=$bytes_policy"
    } >>"$W/meta.txt"
    : >"$W/large.tsv"
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
        for path in "${PATHS_ORDER[@]}"; do
            busy=$(rustc_count)
            l0=$(ticks_of "${LOCAL[$path]}")
            r0=$(ticks_of "${REMOTE[$path]}")
            t0=$(date +%s.%N)
            "${PSQL[@]}" -c "$LARGE_SQL" "${URL[$path]}" >/dev/null 2>"$W/large-psql.log" ||
                die "the large result through $path failed: $(cat "$W/large-psql.log")"
            t1=$(date +%s.%N)
            l1=$(ticks_of "${LOCAL[$path]}")
            r1=$(ticks_of "${REMOTE[$path]}")
            secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$round" "$bytes" "$secs" $((l1 - l0)) $((r1 - r0)) \
                "$busy" >>"$W/large.tsv"
            log "large result round $round $path: ${secs}s"
        done
    done
fi

# --- summary ------------------------------------------------------------------------------------

if [[ -f $W/rss.txt ]]; then
    printf 'hoopd_end_kb=%s\nhoopd_hwm_kb=%s\n' "$(rss_kb "$HOOPD_PID")" "$(rss_kb "$HOOPD_PID" VmHWM)" >>"$W/rss.txt"
fi
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$W/meta.txt"
mkdir -p "$BENCH_DIR/results"
RESULT=$BENCH_DIR/results/pg-$(date +%Y%m%d-%H%M%S).txt
python3 "$BENCH_DIR/lib/summary.py" "$W" >"$RESULT" || die "summary failed"
echo
cat "$RESULT"
echo
log "written to ${RESULT#"$ROOT"/}"

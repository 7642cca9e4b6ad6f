#!/usr/bin/env bash
# bench/exec.sh: peak memory of `hoop exec` and of hoopd while a large result streams through
# them (issue 5: both under 64 MB for a million rows). Not run in CI.
#
# Starts a throwaway PostgreSQL and a hoopd with one connection (masking `pii` on, so every value
# goes through the detectors), runs `hoop exec -o csv` on a generated result with stdout to
# /dev/null, and reports the CLI's peak RSS (getrusage of the child) and hoopd's VmHWM (peak RSS
# since its start) before and after, plus the wall time.
#
# Environment (all optional):
#   BENCH_ROWS=1000000      rows of the result
#   BENCH_FORMAT=csv        table | csv | tsv | json
#   HOOP_BIN_DIR            where hoop and hoopd are (default: <repo>/target/release if built,
#                           else <repo>/target/debug)
#   PG_BIN                  PostgreSQL binaries (default: /usr/lib/postgresql/15/bin, else newest)
set -euo pipefail

BENCH_ROWS=${BENCH_ROWS:-1000000}
BENCH_FORMAT=${BENCH_FORMAT:-csv}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -z ${HOOP_BIN_DIR:-} ]]; then
    if [[ -x $ROOT/target/release/hoopd && -x $ROOT/target/release/hoop ]]; then
        HOOP_BIN_DIR=$ROOT/target/release
    else
        HOOP_BIN_DIR=$ROOT/target/debug
    fi
fi

log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    printf 'bench/exec.sh: %s\n' "$*" >&2
    exit 1
}

[[ $BENCH_ROWS =~ ^[0-9]+$ ]] || die "BENCH_ROWS must be a whole number, got '$BENCH_ROWS'"
case $BENCH_FORMAT in table | csv | tsv | json) ;; *) die "BENCH_FORMAT: unknown format '$BENCH_FORMAT'" ;; esac
for b in "$HOOP_BIN_DIR/hoop" "$HOOP_BIN_DIR/hoopd"; do
    [[ -x $b ]] || die "$b not found: cargo build --release --bins (or set HOOP_BIN_DIR)"
done
if [[ -z ${PG_BIN:-} ]]; then
    if [[ -x /usr/lib/postgresql/15/bin/postgres ]]; then
        PG_BIN=/usr/lib/postgresql/15/bin
    else
        PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
    fi
fi
[[ -n $PG_BIN && -x $PG_BIN/postgres ]] || die "PostgreSQL server binaries not found: apt-get install -y postgresql (or set PG_BIN)"
command -v python3 >/dev/null || die "python3 is required (free ports, fingerprint, peak RSS of the CLI)"
[[ -r /proc/self/status ]] || die "/proc is required (hoopd's VmHWM is read from it)"

AS_PG=()
if [[ $(id -u) == 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' user (apt-get install -y postgresql)"
    if command -v setpriv >/dev/null; then
        AS_PG=(setpriv --reuid=postgres --regid=postgres --clear-groups --)
    else
        AS_PG=(runuser -u postgres --)
    fi
fi

W=$(mktemp -d /tmp/hoop-bench-exec.XXXXXX)
chmod 755 "$W"
PG_PID=""
HOOPD_PID=""
stop_pid() { # pid signal
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$2" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    [[ -n $HOOPD_PID ]] && stop_pid "$HOOPD_PID" TERM
    [[ -n $PG_PID ]] && stop_pid "$PG_PID" QUIT
    if ((rc != 0)); then
        for f in "$W"/*.log; do
            [[ -f $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }
        done
    fi
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

read -r PG_PORT GW_PORT <<<"$(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"

# --- PostgreSQL -------------------------------------------------------------------------------
PG_DIR=$W/pg
mkdir -p "$PG_DIR"
DB_PW="bench-$(python3 -c 'import secrets; print(secrets.token_hex(12))')"
printf '%s\n' "$DB_PW" >"$W/db-password"
chmod 600 "$W/db-password"
[[ ${#AS_PG[@]} -gt 0 ]] && chown -R postgres: "$PG_DIR"
log "initdb"
(cd "$PG_DIR" && LC_ALL=C "${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres -E UTF8 --locale=C \
    --auth-local=trust --auth-host=scram-sha-256 --no-sync --no-instructions) >"$W/initdb.log" 2>&1 ||
    die "initdb failed"
printf 'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n' >"$PG_DIR/data/pg_hba.conf"
(cd "$PG_DIR" && LC_ALL=C exec "${AS_PG[@]}" "$PG_BIN/postgres" -D "$PG_DIR/data" -p "$PG_PORT" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories="$PG_DIR" -c fsync=off \
    -c password_encryption=scram-sha-256) >"$W/postgres.log" 2>&1 &
PG_PID=$!
for ((i = 0; i < 300; i++)); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 1 && break
    sleep 0.1
done
"$PG_BIN/psql" -X -q -h "$PG_DIR" -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
    -c "SET password_encryption = 'scram-sha-256'; CREATE ROLE bench LOGIN PASSWORD '$DB_PW';" \
    -c "CREATE DATABASE bench OWNER bench;" >/dev/null || die "cannot create the role and database"

# --- hoopd ------------------------------------------------------------------------------------
mkdir -p "$W/hoopd"
cat >"$W/hoopd/hoopd.toml" <<EOF
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "data"

[[connections]]
name = "bench"
type = "postgres"
address = "127.0.0.1:$PG_PORT"
database = "bench"
user = "bench"
password = { file = "$W/db-password" }
allow = ["bench"]
masking = ["pii"]
EOF
log "starting hoopd ($HOOP_BIN_DIR)"
(cd "$W/hoopd" && exec "$HOOP_BIN_DIR/hoopd" --config "$W/hoopd/hoopd.toml") >"$W/hoopd.log" 2>&1 &
HOOPD_PID=$!
for ((i = 0; i < 600; i++)); do
    grep -q 'gateway listening' "$W/hoopd.log" && break
    kill -0 "$HOOPD_PID" 2>/dev/null || die "hoopd exited"
    sleep 0.1
done
KEY=$("$HOOP_BIN_DIR/hoopd" api-keys create --name bench --groups bench --config "$W/hoopd/hoopd.toml" 2>"$W/api-key.log" | tail -1 | tr -d '[:space:]')
FINGERPRINT=$(python3 - "$W/hoopd/data/tls.crt" <<'EOF'
import base64, hashlib, sys
pem = open(sys.argv[1]).read()
b64 = pem.split("-----BEGIN CERTIFICATE-----")[1].split("-----END")[0]
print("SHA256:" + hashlib.sha256(base64.b64decode("".join(b64.split()))).hexdigest())
EOF
)
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# A warm-up exec, so the baseline includes what every session allocates once.
mkdir -p "$W/home"
export HOME=$W/home HOOP_TOKEN=$KEY HOOP_GATEWAY=https://127.0.0.1:$GW_PORT HOOP_FINGERPRINT=$FINGERPRINT
"$HOOP_BIN_DIR/hoop" exec bench "select 1" >/dev/null || die "a first hoop exec failed"
before=$(hwm "$HOOPD_PID")

SQL="select g as id, 'user' || g || '@example.com' as email, md5(g::text) as note from generate_series(1, $BENCH_ROWS) g"
log "hoop exec -o $BENCH_FORMAT: $BENCH_ROWS rows"
read -r cli_kb secs rc < <(python3 - "$HOOP_BIN_DIR/hoop" "$BENCH_FORMAT" "$SQL" <<'EOF'
import resource, subprocess, sys, time
t = time.monotonic()
with open("/dev/null", "wb") as null:
    p = subprocess.run([sys.argv[1], "exec", "bench", "-o", sys.argv[2], sys.argv[3]], stdout=null)
took = time.monotonic() - t
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, f"{took:.1f}", p.returncode)
EOF
)
((rc == 0)) || die "hoop exec exited $rc"
after=$(hwm "$HOOPD_PID")
printf 'rows=%s format=%s binaries=%s\n' "$BENCH_ROWS" "$BENCH_FORMAT" "$HOOP_BIN_DIR"
printf 'hoop exec peak RSS:  %6.1f MB\n' "$(echo "$cli_kb / 1024" | bc -l)"
printf 'hoopd peak RSS:      %6.1f MB (before the exec: %.1f MB)\n' "$(echo "$after / 1024" | bc -l)" "$(echo "$before / 1024" | bc -l)"
printf 'wall time:           %6s s\n' "$secs"

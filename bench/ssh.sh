#!/usr/bin/env bash
# bench/ssh.sh: scp throughput of one large file through hoop (hoop connect → hoopd → sshd),
# against scp straight to sshd and through a chain of two plain TCP relays (the same hops
# without SSH termination). Not run in CI; see bench/README.md.
#
# Environment (all optional):
#   BENCH_MB=256          file size in MiB
#   BENCH_ROUNDS=3        rounds; each round copies up and down on every path
#   HOOP_BIN_DIR          where hoop and hoopd are (default: <repo>/target/release; a debug
#                         build measures something else: say so when you report figures)
#   BENCH_KEEP=0          1: keep the work dir (logs, configs)
set -euo pipefail

BENCH_MB=${BENCH_MB:-256}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
HOOP_BIN_DIR=${HOOP_BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
RELAY_BIN=$BENCH_DIR/relay/target/release/bench-relay

die() { printf 'bench/ssh.sh: %s\n' "$*" >&2; exit 1; }
log() { printf '%s bench: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
[[ $BENCH_MB =~ ^[0-9]+$ && $BENCH_MB -gt 0 ]] || die "BENCH_MB must be a positive whole number"
[[ $BENCH_ROUNDS =~ ^[0-9]+$ && $BENCH_ROUNDS -gt 0 ]] || die "BENCH_ROUNDS must be a positive whole number"
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd is missing: apt-get install openssh-server"
for b in hoop hoopd; do
    [[ -x $HOOP_BIN_DIR/$b ]] || die "$HOOP_BIN_DIR/$b is missing: cargo build --release --bins (or set HOOP_BIN_DIR)"
done
if [[ ! -x $RELAY_BIN ]]; then
    log "building bench/relay"
    cargo build --release --quiet --manifest-path "$BENCH_DIR/relay/Cargo.toml"
fi

WORK=$(mktemp -d /tmp/hoop-bench-ssh.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ $BENCH_KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; die "port $1 never opened"; }

# --- sshd --------------------------------------------------------------------------------------
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/client_key"
cp "$WORK/client_key.pub" "$WORK/authorized_keys"
[[ $(id -u) -eq 0 ]] && mkdir -p /run/sshd
SSHD_PORT=$(port)
cat >"$WORK/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -D -e -f "$WORK/sshd_config" 2>"$WORK/sshd.log" &
PIDS+=($!)
wait_port "$SSHD_PORT"
USER_NAME=$(id -un)

# --- two plain relays: the same hops as hoop connect + hoopd --------------------------------
R2=$(port); R1=$(port)
"$RELAY_BIN" "127.0.0.1:$R2" "127.0.0.1:$SSHD_PORT" >"$WORK/relay2.log" 2>&1 &
PIDS+=($!)
"$RELAY_BIN" "127.0.0.1:$R1" "127.0.0.1:$R2" >"$WORK/relay1.log" 2>&1 &
PIDS+=($!)
wait_port "$R1"

# --- hoopd and hoop connect ---------------------------------------------------------------------
GW_PORT=$(port)
cat >"$WORK/hoopd.toml" <<CFG
[server]
listen = "127.0.0.1:$GW_PORT"
data_dir = "data"
[[connections]]
name = "bench"
type = "ssh"
address = "127.0.0.1:$SSHD_PORT"
user = "$USER_NAME"
private_key = { file = "$WORK/client_key" }
host_key = "$(cut -d' ' -f1,2 "$WORK/host_key.pub")"
allow = ["bench"]
CFG
HOOPD_LOG=warn "$HOOP_BIN_DIR/hoopd" --config "$WORK/hoopd.toml" >"$WORK/hoopd.log" 2>&1 &
PIDS+=($!)
wait_port "$GW_PORT"
sleep 1
KEY=$("$HOOP_BIN_DIR/hoopd" api-keys create --name bench --groups bench --config "$WORK/hoopd.toml" 2>/dev/null)
FP=SHA256:$(openssl x509 -in "$WORK/data/tls.crt" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d ':' | tr 'A-F' 'a-f')
export HOME=$WORK/home XDG_CONFIG_HOME=$WORK/home/.config XDG_DATA_HOME=$WORK/home/.local/share
export HOOP_CREDENTIAL_STORE=file HOOP_TOKEN=$KEY
mkdir -p "$XDG_CONFIG_HOME/hoop"
printf 'gateway = "https://127.0.0.1:%s"\n[gateways."https://127.0.0.1:%s"]\nfingerprint = "%s"\n' "$GW_PORT" "$GW_PORT" "$FP" >"$XDG_CONFIG_HOME/hoop/config.toml"
LOCAL=$(port)
"$HOOP_BIN_DIR/hoop" connect bench --port "$LOCAL" -o json >"$WORK/connect.json" 2>"$WORK/connect.log" &
PIDS+=($!)
for _ in $(seq 1 200); do grep -q '"ready"' "$WORK/connect.json" 2>/dev/null && break; sleep 0.05; done
SECRET=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["password"])' "$WORK/connect.json")
printf '#!/bin/sh\necho %s\n' "$SECRET" >"$WORK/askpass"; chmod 700 "$WORK/askpass"

# --- the copies -----------------------------------------------------------------------------------
log "writing a ${BENCH_MB} MiB file"
head -c $((BENCH_MB * 1024 * 1024)) /dev/urandom >"$WORK/big.bin"
OPTS=(-O -q -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
scp_path() { # name direction
    local name=$1 dir=$2 target
    local -a extra
    case $name in
        direct) extra=(-i "$WORK/client_key" -P "$SSHD_PORT"); target=$USER_NAME@127.0.0.1 ;;
        relays) extra=(-i "$WORK/client_key" -P "$R1"); target=$USER_NAME@127.0.0.1 ;;
        hoop) extra=(-o PreferredAuthentications=password -P "$LOCAL"); target=hoop@127.0.0.1 ;;
    esac
    local start end
    start=$(date +%s.%N)
    if [[ $dir == up ]]; then
        SSH_ASKPASS=$WORK/askpass SSH_ASKPASS_REQUIRE=force scp "${OPTS[@]}" "${extra[@]}" "$WORK/big.bin" "$target:$WORK/up-$name.bin"
    else
        SSH_ASKPASS=$WORK/askpass SSH_ASKPASS_REQUIRE=force scp "${OPTS[@]}" "${extra[@]}" "$target:$WORK/big.bin" "$WORK/down-$name.bin"
    fi
    end=$(date +%s.%N)
    cmp -s "$WORK/big.bin" "$WORK/$dir-$name.bin" || die "$name $dir: the copy differs"
    rm -f "$WORK/$dir-$name.bin"
    python3 -c "import sys; print('%.1f' % ($BENCH_MB / (float(sys.argv[2]) - float(sys.argv[1]))))" "$start" "$end"
}
printf 'round\tdirection\tpath\tMiB/s\n' >"$WORK/results.tsv"
for r in $(seq 1 "$BENCH_ROUNDS"); do
    for dir in up down; do
        for p in direct relays hoop; do
            v=$(scp_path "$p" "$dir")
            printf '%s\t%s\t%s\t%s\n' "$r" "$dir" "$p" "$v" >>"$WORK/results.tsv"
            log "round $r $dir $p: $v MiB/s"
        done
    done
done
python3 - "$WORK/results.tsv" "$HOOP_BIN_DIR" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter='\t'))
print(f"scp of one file, median MiB/s over rounds (binaries: {sys.argv[2]})")
for d in ("up", "down"):
    med = {p: statistics.median(float(r["MiB/s"]) for r in rows if r["direction"] == d and r["path"] == p)
           for p in ("direct", "relays", "hoop")}
    print(f"{d:5} direct {med['direct']:7.1f}  relays {med['relays']:7.1f}  hoop {med['hoop']:7.1f}"
          f"  hoop/direct {med['hoop']/med['direct']:.2f}  hoop/relays {med['hoop']/med['relays']:.2f}")
PY

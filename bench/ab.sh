#!/usr/bin/env bash
# bench/ab.sh: compare two or more builds of hoop/hoopd on the PostgreSQL path, side by side,
# in one run. Not run in CI; see bench/README.md ("A/B of two builds").
#
#   bench/ab.sh [-r ROUNDS] [-m MODE] [-t SECONDS] ENV_A ENV_B [ENV_C ...]
#
# Each ENV is the env.sh a holding `bench/pg.sh` run wrote (BENCH_HOLD=1; one run per build,
# HOOP_BIN_DIR pointing at that build). Each round runs, for every ENV in turn, pgbench -S on its
# relay chain and then on its hoop-policy path, and reads the proxies' CPU time from /proc. The
# summary gives, per build, the medians over the rounds of: TPS ratio hoop-policy / relay chain
# (both from the same round, so a slow patch of the machine hits both), and CPU µs per
# transaction of hoop, hoopd and the two relays together. Medians, because this machine's noise
# comes in bursts.
set -euo pipefail

ROUNDS=8 MODE=prepared T=5
while getopts "r:m:t:" o; do
    case $o in
    r) ROUNDS=$OPTARG ;;
    m) MODE=$OPTARG ;;
    t) T=$OPTARG ;;
    *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
(($# >= 2)) || {
    echo "usage: bench/ab.sh [-r ROUNDS] [-m simple|extended|prepared] [-t SECONDS] ENV_A ENV_B ..." >&2
    exit 2
}
for e in "$@"; do [[ -r $e ]] || { echo "bench/ab.sh: cannot read $e (an env.sh of a BENCH_HOLD=1 run)" >&2; exit 2; }; done
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $T =~ ^[1-9][0-9]*$ ]] || { echo "bench/ab.sh: -r and -t take whole numbers" >&2; exit 2; }
case $MODE in simple | extended | prepared) ;; *) echo "bench/ab.sh: -m is simple, extended or prepared" >&2; exit 2 ;; esac

TICK=$(getconf CLK_TCK)
cpu_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run URL PID... -> "TPS US_PER_TXN..." (CPU of each PID during the run)
run() {
    local url=$1 out tx tps line p i=0
    shift
    local -a before=()
    for p in "$@"; do before+=("$(cpu_of "$p")"); done
    out=$("$PGBIN/pgbench" -n -S -M "$MODE" -c 8 -j 2 -T "$T" "$url" 2>&1) || {
        echo "bench/ab.sh: pgbench failed on $url:" >&2
        echo "$out" >&2
        return 1
    }
    tx=$(awk '/actually processed/ {split($NF, a, "/"); print a[1]}' <<<"$out")
    tps=$(awk '/^tps/ {print $3; exit}' <<<"$out")
    line=$tps
    for p in "$@"; do
        line+=" $(awk -v a="$(cpu_of "$p")" -v b="${before[i]}" -v t="$TICK" -v n="$tx" \
            'BEGIN {printf "%.1f", (a - b) * 1e6 / t / n}')"
        i=$((i + 1))
    done
    echo "$line"
}

RAW=$(mktemp)
trap 'rm -f "$RAW"' EXIT
for ((r = 1; r <= ROUNDS; r++)); do
    for e in "$@"; do
        (
            set -a
            # shellcheck disable=SC1090
            source "$e"
            set +a
            read -r rt r1 r2 <<<"$(run "$URL_relay" "$RELAY1_PID" "$RELAY2_PID")"
            read -r pt h hd <<<"$(run "$URL_hoop_policy" "$HOOP_POLICY_PID" "$HOOPD_PID")"
            printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$e" "$rt" "$pt" "$h" "$hd" "$r1" "$r2"
        ) | tee -a "$RAW" >&2
    done
done

python3 - "$RAW" "$MODE" "$ROUNDS" <<'EOF'
import collections, statistics, sys
raw, mode, rounds = sys.argv[1:]
by = collections.OrderedDict()
for line in open(raw):
    e, rt, pt, h, hd, r1, r2 = line.rstrip("\n").split("\t")
    rt, pt, h, hd, r1, r2 = map(float, (rt, pt, h, hd, r1, r2))
    by.setdefault(e, []).append((pt / rt, h, hd, r1 + r2))
print(f"pgbench -S -M {mode}, {rounds} rounds, medians:")
print(f"{'build (env.sh)':<44} {'policy/relay':>12} {'hoop us':>8} {'hoopd us':>9} {'relays us':>10}")
for e, rows in by.items():
    ratio, h, hd, rel = (statistics.median(c) for c in zip(*rows))
    print(f"{e:<44} {ratio:>12.3f} {h:>8.1f} {hd:>9.1f} {rel:>10.1f}")
EOF

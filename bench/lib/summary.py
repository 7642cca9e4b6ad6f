#!/usr/bin/env python3
"""Summarise a bench/pg.sh run: summary.py WORKDIR  (reads meta.txt, pgbench.tsv, large.tsv, rss.txt).

pgbench.tsv: mode path round tps transactions failed local_ticks remote_ticks rustc
sqlstats.tsv: mode round transactions, then the gateway's SQL counters before and after the
              hoop-policy run (text_hits shape_hits misses analyses analysis_seconds, each)
large.tsv:   path round bytes seconds local_ticks remote_ticks rustc
meta.txt, rss.txt: key=value lines
"""

import os
import statistics
import sys

PATHS = ["direct", "relay", "hoop-plain", "hoop-policy"]
LABEL = {
    "direct": "direct",
    "relay": "relay chain",
    "hoop-plain": "hoop, policy off",
    "hoop-policy": "hoop, full policy",
}
# Which processes are the "local" and "remote" proxy for each path.
PROCS = {"relay": "relay1+relay2", "hoop-plain": "hoop+hoopd", "hoop-policy": "hoop+hoopd"}


def kv(path):
    out = {}
    if os.path.exists(path):
        for line in open(path):
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


def rows(path):
    if not os.path.exists(path):
        return []
    return [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]


def fmt_ratio(x):
    return "  n/a" if x is None else f"{x:5.2f}"


def main():
    w = sys.argv[1]
    meta = kv(os.path.join(w, "meta.txt"))
    rss = kv(os.path.join(w, "rss.txt"))
    tick = float(meta.get("clk_tck", "100"))
    out = []
    p = out.append

    p(f"hoop PostgreSQL benchmark, {meta.get('date', '?')}")
    p(f"hoop commit {meta.get('commit', '?')}; {meta.get('postgres', '?')}")
    p(
        f"machine: {meta.get('cpus', '?')} CPUs; load average at start {meta.get('load_start', '?')}, "
        f"at end {meta.get('load_end', '?')}; rustc processes at start {meta.get('rustc_start', '?')}"
    )
    p(
        f"pgbench -n -S -c {meta.get('clients')} -j {meta.get('jobs')} -T {meta.get('t')} "
        f"(scale {meta.get('scale')}), {meta.get('rounds')} round(s), paths alternating "
        "direct, relay, hoop-plain, hoop-policy"
    )
    p("paths: direct = pgbench -> PostgreSQL; relay = two plain tokio TCP relays in series;")
    p("       hoop-plain = hoop connect -> hoopd (no guardrails/masking, recording on);")
    p("       hoop-policy = the same with guardrails no-ddl, no-unbounded-writes and masking pii")
    p("")

    bench = rows(os.path.join(w, "pgbench.tsv"))
    modes = []
    for r in bench:
        if r[0] not in modes:
            modes.append(r[0])
    busy = sum(1 for r in bench if r[8] != "0")
    if bench:
        p(f"runs with rustc running when they started: {busy} of {len(bench)}")
        p("")
    tps = {}
    cpu = {}
    failed = 0
    for mode, path, _rnd, t, tx, fail, lt, rt, _ in bench:
        tps.setdefault((mode, path), []).append(float(t))
        failed += int(fail or 0)
        if path in PROCS and int(tx) > 0:
            c = cpu.setdefault((mode, path), [0, 0, 0])
            c[0] += int(lt)
            c[1] += int(rt)
            c[2] += int(tx)
    med = {k: statistics.median(v) for k, v in tps.items()}
    targets = []

    if bench:
        p("== pgbench -S: TPS (median over rounds) ==")
        p(f"{'mode':<10}" + "".join(f"{LABEL[x]:>19}" for x in PATHS))
        for m in modes:
            p(f"{m:<10}" + "".join(f"{med.get((m, x), 0):>19.0f}" for x in PATHS))
        p("")
        p("== ratios (median TPS) ==")
        p(f"{'mode':<10}{'plain/relay':>13}{'policy/relay':>14}{'plain/direct':>14}{'policy/direct':>15}{'relay/direct':>14}")
        for m in modes:
            d, r = med.get((m, "direct")), med.get((m, "relay"))
            a, b = med.get((m, "hoop-plain")), med.get((m, "hoop-policy"))
            q = lambda x, y: (x / y) if x is not None and y else None  # noqa: E731
            p(
                f"{m:<10}{fmt_ratio(q(a, r)):>13}{fmt_ratio(q(b, r)):>14}{fmt_ratio(q(a, d)):>14}"
                f"{fmt_ratio(q(b, d)):>15}{fmt_ratio(q(r, d)):>14}"
            )
            if q(b, r) is not None:
                targets.append(
                    (f"pgbench -M {m}: full policy >= 0.75x relay chain", q(b, r) >= 0.75, f"{q(b, r):.2f}x")
                )
        p("")
        p("== proxy CPU per transaction, microseconds (local + remote process, all rounds) ==")
        p(f"{'mode':<10}" + "".join(f"{LABEL[x] + ' (' + PROCS[x] + ')':>36}" for x in PROCS))
        for m in modes:
            cells = []
            for x in PROCS:
                c = cpu.get((m, x))
                if not c or not c[2]:
                    cells.append(f"{'n/a':>36}")
                    continue
                lu = c[0] / tick * 1e6 / c[2]
                ru = c[1] / tick * 1e6 / c[2]
                cells.append(f"{f'{lu + ru:.1f} ({lu:.1f} + {ru:.1f})':>36}")
            p(f"{m:<10}" + "".join(cells))
        p("")
        p("== raw TPS per round ==")
        for m in modes:
            for x in PATHS:
                vals = " ".join(f"{v:.0f}" for v in tps.get((m, x), []))
                p(f"{m:<10}{LABEL[x]:<19}{vals}")
        p(f"failed transactions over all runs: {failed}")
        p("")

    stats = rows(os.path.join(w, "sqlstats.tsv"))
    if stats:
        p("== SQL analysis on hoop-policy (the gateway's /metrics, all rounds) ==")
        p("hit rate = statements answered by the verdict cache (exact text or shape) / all judged;")
        p("parse cost = mean time of one analysis (parse, walk, verdict) on a cache miss")
        p(f"{'mode':<10}{'judged':>12}{'per txn':>9}{'text hits':>11}{'shape hits':>12}{'misses':>8}"
          f"{'hit rate':>10}{'parse cost us':>15}")
        agg = {}
        for r in stats:
            mode, tx = r[0], int(r[2])
            before = [float(x) for x in r[3:8]]
            after = [float(x) for x in r[8:13]]
            a = agg.setdefault(mode, [0.0] * 6)
            a[0] += tx
            for i in range(5):
                a[i + 1] += after[i] - before[i]
        for mode, (tx, text, shape, miss, n, secs) in agg.items():
            total = text + shape + miss
            rate = (text + shape) / total if total else 0
            cost = secs / n * 1e6 if n else 0
            p(f"{mode:<10}{total:>12.0f}{(total / tx if tx else 0):>9.1f}{text:>11.0f}{shape:>12.0f}"
              f"{miss:>8.0f}{rate:>10.4f}{cost:>15.1f}")
        p("")

    large = rows(os.path.join(w, "large.tsv"))
    if large:
        nbytes = int(meta.get("large_bytes", "0"))
        p(f"== large result: {meta.get('large_sql')} ==")
        p(
            f"result text (psql -A -t, measured directly with wc -c): {nbytes} bytes; "
            f"through hoop-policy: {meta.get('large_bytes_policy', '?')} bytes; MB = 10^6 bytes"
        )
        secs, lcpu, rcpu = {}, {}, {}
        for path, _rnd, _b, s, lt, rt, _ in large:
            secs.setdefault(path, []).append(float(s))
            lcpu.setdefault(path, []).append(int(lt) / tick)
            rcpu.setdefault(path, []).append(int(rt) / tick)
        p(f"{'path':<19}{'MB/s (median)':>15}{'seconds (each round)':>26}{'proxy CPU s/run (local + remote)':>36}")
        mbs = {}
        for x in PATHS:
            if x not in secs:
                continue
            s = statistics.median(secs[x])
            mbs[x] = nbytes / 1e6 / s
            each = " ".join(f"{v:.2f}" for v in secs[x])
            c = (
                f"{statistics.mean(lcpu[x]) + statistics.mean(rcpu[x]):.2f} "
                f"({statistics.mean(lcpu[x]):.2f} + {statistics.mean(rcpu[x]):.2f})"
                if x in PROCS
                else "-"
            )
            p(f"{LABEL[x]:<19}{mbs[x]:>15.1f}{each:>26}{c:>36}")
        if mbs.get("relay"):
            for x in ("hoop-plain", "hoop-policy"):
                if x in mbs:
                    p(f"{LABEL[x]} / relay chain: {mbs[x] / mbs['relay']:.2f}")
            if "hoop-policy" in mbs:
                r = mbs["hoop-policy"] / mbs["relay"]
                targets.append(("large result: masking on >= 0.8x relay chain", r >= 0.8, f"{r:.2f}x"))
        p("")

    if rss:
        p(f"== memory with {rss.get('sessions')} idle sessions through hoop-policy ==")
        mb = lambda k: int(rss.get(k, "0")) / 1024  # noqa: E731
        p(f"hoopd VmRSS before: {mb('hoopd_before_kb'):.1f} MB; with the sessions: {mb('hoopd_with_kb'):.1f} MB "
          f"(+{(mb('hoopd_with_kb') - mb('hoopd_before_kb')) * 1024 / max(int(rss.get('sessions', '1')), 1):.0f} kB/session)")
        p(f"hoop connect VmRSS before: {mb('hoop_before_kb'):.1f} MB; with the sessions: {mb('hoop_with_kb'):.1f} MB")
        p(f"PostgreSQL backends of the bench database while held: {rss.get('pg_backends', '?')}")
        if "hoopd_end_kb" in rss:
            p(f"hoopd at the end of the whole run: VmRSS {mb('hoopd_end_kb'):.1f} MB, VmHWM (peak) {mb('hoopd_hwm_kb'):.1f} MB")
        targets.append(
            (f"gateway RSS <= 64 MB with {rss.get('sessions')} idle sessions", mb("hoopd_with_kb") <= 64, f"{mb('hoopd_with_kb'):.1f} MB")
        )
        p("")

    if targets:
        p("== targets ==")
        for name, ok, val in targets:
            p(f"{'PASS' if ok else 'FAIL'}  {name}: {val}")
    print("\n".join(out))


if __name__ == "__main__":
    main()

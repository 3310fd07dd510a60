#!/usr/bin/env python3
"""Every benchmark of hexkv in one run, and docs/benchmarks.md regenerated from it.

    scripts/bench.py                 # or: just bench   (about 15 minutes on 2 cores, after the build)
    scripts/bench.py --quick         # shorter runs and 100 000 keys, to try the script
    scripts/bench.py --render        # rewrite the page from docs/bench/results.json only

One run, on this machine: the ceilings (a bare axum handler, and a bare handler whose PUT is
synced to disk with group commit) and hexkv's REST GET and PUT under wrk (scripts/bench-http.sh); a concurrency sweep with `hexkv bench` of GET and PUT over REST and
gRPC on the embedded store (ephemeral, fsync `always`, fsync `interval`) and on PostgreSQL;
latency at half the peak rate (open loop, three runs a row); the same load generator against the
bare axum and tonic handlers (the frameworks' ceilings), plain and with PUT synced by group commit
(peak, and latency at half that peak); memory and start-up with a million keys
(scripts/bench-memory.sh); PostgreSQL beside pgbench (scripts/bench-postgres.sh). The figures
go to docs/bench/results.json, the page and its plots (SVG, docs/bench/) are rendered from
that file, so `--render` reproduces the committed page exactly.

Needs wrk and the PostgreSQL server binaries (pgbench); `--skip postgres` runs without them.
"""

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs/bench/results.json"
PAGE = ROOT / "docs/benchmarks.md"
PLOTS = ROOT / "docs/bench"
HTTP, GRPC = "127.0.0.1:18680", "127.0.0.1:18681"
# The wrk row of scripts/bench-http.sh measuring crates/hexkv-http/examples/bare_durable.rs.
DURABLE_CEILING = "bare durable PUT (100 B, group commit)"
STORES = ["ephemeral", "always", "interval", "postgres"]
STORE_NAMES = {
    "ephemeral": "memory, ephemeral",
    "always": "memory, fsync always",
    "interval": "memory, fsync interval",
    "postgres": "PostgreSQL",
}


def log(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def target_dir():
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return Path(json.loads(meta.stdout)["target_directory"])


def machine():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1048576),
        "kernel": platform.release(),
        "rustc": rustc,
    }


def run_script(script, env):
    """Runs one of the scripts/bench-*.sh with JSON_OUT and returns what it wrote."""
    out = target_dir() / "bench-results" / (Path(script).stem + ".json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    log(f"{script} …")
    subprocess.run(
        [str(ROOT / script)], cwd=ROOT, check=True, stdout=sys.stderr,
        env={**os.environ, **env, "JSON_OUT": str(out)},
    )
    return json.loads(out.read_text())


class Server:
    """hexkv (the `dist` build) on HTTP and GRPC, on the embedded store or PostgreSQL."""

    def __init__(self, hexkv, work, store, pg_url=None):
        self.work = work / store
        subprocess.run(["rm", "-rf", str(self.work)], check=True)
        self.work.mkdir(parents=True)
        args = [str(hexkv), "serve", "--http-listen", HTTP, "--grpc-listen", GRPC,
                "--log-level", "warn", "--ready-file", str(self.work / "ready.json")]
        env = dict(os.environ)
        if store == "postgres":
            args += ["--store", "postgres", "--postgres-url", pg_url]
            env["HEXKV_STORE__POSTGRES__MAX_CONNECTIONS"] = "64"
        elif store == "ephemeral":
            args += ["--ephemeral"]
        else:
            args += ["--data-dir", str(self.work / "data"), "--fsync", store]
        self.log = open(self.work / "hexkv.log", "w")
        self.process = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        for _ in range(300):
            if self.process.poll() is not None:
                raise SystemExit(f"hexkv exited: {(self.work / 'hexkv.log').read_text()}")
            try:
                urllib.request.urlopen(f"http://{HTTP}/readyz", timeout=1)
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("hexkv did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait()
        self.log.close()


def hexkv_bench(hexkv, protocol, workload, concurrency, duration, preload, rate=None):
    endpoint = f"http://{HTTP}" if protocol == "http" else f"http://{GRPC}"
    args = [str(hexkv), "bench", "--endpoint", endpoint, "--protocol", protocol,
            "--workload", workload, "--keys", "10000", "--key-size", "16", "--value-size", "100",
            "-c", str(concurrency), "--connections", str(min(concurrency, 8)),
            "--duration", str(duration), "--warmup", "1", "-o", "json"]
    if not preload:
        args.append("--no-preload")
    if rate:
        args += ["--rate", str(rate)]
    report = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    return {
        "rps": round(report["throughput_rps"]),
        "ok": report["ok"],
        "errors": sum(report["errors"].values()),
        "p50_ms": report["latency_us"]["p50"] / 1000,
        "p99_ms": report["latency_us"]["p99"] / 1000,
    }


HALF_RATE_REPEATS = 3


def half_rate(hexkv, protocol, workload, peak, duration):
    """`workload` at half of `peak` requests a second (open loop), HALF_RATE_REPEATS times: the
    run of median p99, with every run's p99."""
    runs = sorted((hexkv_bench(hexkv, protocol, workload, 64, duration, preload=False,
                               rate=peak // 2)
                   for _ in range(HALF_RATE_REPEATS)),
                  key=lambda r: r["p99_ms"])
    return {"peak_rps": peak, "rate": peak // 2, **runs[len(runs) // 2],
            "p99_every_ms": [r["p99_ms"] for r in runs]}


def wait_for_port(address, timeout=30):
    """Waits until something accepts TCP connections on `host:port`."""
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {address} after {timeout} s")
            time.sleep(0.1)


def ceilings(hexkv, examples, duration, work):
    """GET and PUT at 64 in flight against the bare handlers (fixed answers, no store): what
    axum over HTTP/1.1 and tonic over HTTP/2 cost before hexkv adds anything, driven by the
    same load generator, best of two runs each. Then PUT against the same handlers made durable
    (each body appended to a file and answered after a group-committed `fdatasync`,
    `hexkv_testkit::group_commit`): what each protocol reaches when a call must wait for a sync,
    the ceiling beside which to read gRPC against REST under `fsync = always`."""
    work.mkdir(parents=True, exist_ok=True)
    plain = [[examples / "bare_handler", HTTP], [examples / "bare_grpc", GRPC]]
    durable = [[examples / "bare_durable", HTTP, work / "bare-durable-http.log"],
               [examples / "bare_grpc", GRPC, work / "bare-durable-grpc.log"]]
    return (bare_runs(hexkv, plain, [("get", "get"), ("put", "put")], duration)
            + bare_runs(hexkv, durable, [("put", "put-durable")], duration, half=True))


def bare_runs(hexkv, commands, workloads, duration, half=False):
    """Starts the bare servers of `commands` and runs each (workload, row name) over both
    protocols, best of two runs; with `half`, then at half that rate as the memory stores'
    half-rate rows are run."""
    servers = [subprocess.Popen([str(a) for a in command], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for command in commands]
    try:
        for address in [HTTP, GRPC]:
            wait_for_port(address)
        rows = []
        for workload, name in workloads:
            for protocol in ["http", "grpc"]:
                log(f"ceiling: bare {protocol} {name} c=64")
                runs = [hexkv_bench(hexkv, protocol, workload, 64, duration, preload=False)
                        for _ in range(2)]
                row = {"workload": name, "protocol": protocol,
                       **max(runs, key=lambda r: r["rps"])}
                if half:
                    log(f"ceiling: bare {protocol} {name} at {row['rps'] // 2}/s "
                        f"({HALF_RATE_REPEATS} runs)")
                    row["half_rate"] = half_rate(hexkv, protocol, workload, row["rps"], duration)
                rows.append(row)
        return rows
    finally:
        for server in servers:
            server.terminate()
            server.wait()


def sweep(hexkv, work, stores, levels, duration, pg_url):
    """GET and PUT over both protocols at each concurrency level, on each store; then, on the
    memory stores, GET and PUT at half the peak rate found at 64 in flight (open loop), run
    HALF_RATE_REPEATS times, keeping the run of median p99 (one stall of a shared machine
    otherwise decides the row)."""
    results = {"levels": levels, "duration_s": duration, "runs": [], "half_rate": []}
    for store in stores:
        server = Server(hexkv, work, store, pg_url)
        try:
            preloaded = False
            for workload in ["get", "put"]:
                for protocol in ["http", "grpc"]:
                    for c in levels:
                        log(f"sweep: {store} {workload} {protocol} c={c}")
                        run = hexkv_bench(hexkv, protocol, workload, c, duration,
                                          preload=not preloaded)
                        preloaded = True
                        results["runs"].append(
                            {"store": store, "workload": workload, "protocol": protocol,
                             "concurrency": c, **run})
            if store != "postgres":
                for workload in ["get", "put"]:
                    for protocol in ["http", "grpc"]:
                        peak = next(r["rps"] for r in results["runs"]
                                    if (r["store"], r["workload"], r["protocol"],
                                        r["concurrency"]) == (store, workload, protocol, 64))
                        log(f"half rate: {store} {workload} {protocol} at {peak // 2}/s "
                            f"({HALF_RATE_REPEATS} runs)")
                        results["half_rate"].append(
                            {"store": store, "workload": workload, "protocol": protocol,
                             **half_rate(hexkv, protocol, workload, peak, duration)})
        finally:
            server.stop()
    return results


# ---------------------------------------------------------------------------------------------
# Rendering: the page and its plots, from the results alone.

COLORS = {"ephemeral": "#1f77b4", "always": "#d62728", "interval": "#2ca02c",
          "postgres": "#9467bd"}


def fmt(n):
    return f"{n:,.0f}".replace(",", " ")


def svg_plot(title, ylabel, series, levels, log_y=False):
    """A line chart: x = concurrency (log scale), one line per series (label, color, dash,
    [(x, y)])."""
    import math

    width, height, left, right, top, bottom = 640, 360, 70, 190, 36, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    ys = [y for _, _, _, points in series for _, y in points if y > 0]
    y_max = max(ys) if ys else 1
    if log_y:
        y_lo = 10 ** math.floor(math.log10(min(ys)))
        y_hi = 10 ** math.ceil(math.log10(y_max))
        ticks = []
        t = y_lo
        while t <= y_hi:
            ticks.append(t)
            t *= 10

        def y_of(v):
            v = max(v, y_lo)
            return top + plot_h * (1 - (math.log10(v) - math.log10(y_lo))
                                   / (math.log10(y_hi) - math.log10(y_lo)))
    else:
        step = 10 ** math.floor(math.log10(y_max))
        for m in (1, 2, 5, 10):
            if y_max / (step * m) <= 6:
                step *= m
                break
        y_hi = step * math.ceil(y_max / step)
        ticks = [step * i for i in range(int(y_hi / step) + 1)]

        def y_of(v):
            return top + plot_h * (1 - v / y_hi)

    x_lo, x_hi = math.log2(levels[0]), math.log2(levels[-1])

    def x_of(c):
        return left + plot_w * (math.log2(c) - x_lo) / max(x_hi - x_lo, 1)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14" font-weight="bold">{title}</text>']
    for t in ticks:
        y = y_of(t)
        label = (f"{t:g}" if t < 1000 else f"{t / 1000:g}k")
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                   f'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>')
    for c in levels:
        x = x_of(c)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" '
                   f'stroke="#eee"/>')
        out.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle">{c}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
               f'stroke="#444"/>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 8}" text-anchor="middle">'
               f'requests in flight</text>')
    out.append(f'<text transform="translate(16 {top + plot_h / 2}) rotate(-90)" '
               f'text-anchor="middle">{ylabel}</text>')
    for i, (label, color, dash, points) in enumerate(series):
        path = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in points)
        dash_attr = ' stroke-dasharray="6 4"' if dash else ""
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/>')
        for x, y in points:
            out.append(f'<circle cx="{x_of(x):.1f}" cy="{y_of(y):.1f}" r="2.5" fill="{color}"/>')
        ly = top + 10 + 18 * i
        lx = left + plot_w + 14
        out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 24}" y2="{ly}" stroke="{color}" '
                   f'stroke-width="2"{dash_attr}/>')
        out.append(f'<text x="{lx + 30}" y="{ly + 4}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def ratio(a, b):
    return 100 * a / b if b else 0


def verdict(ok):
    return "met" if ok else "**not met**"


def render(results):
    m = results["machine"]
    lines = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add("<!-- Generated by scripts/bench.py from docs/bench/results.json: do not edit by hand;")
    add("     rerun `just bench`, or `scripts/bench.py --render` after changing the script. -->")
    add("")
    add("Every figure on this page comes from one run of one script, on the machine below:")
    add("")
    add("```sh")
    add("just bench            # scripts/bench.py: about 15 minutes after the build; needs wrk and PostgreSQL's binaries")
    add("scripts/bench.py --quick               # shorter runs, 100 000 keys: to try it")
    add("scripts/bench.py --render              # the page again from docs/bench/results.json")
    add("```")
    add("")
    add("Performance goals are measured here, never asserted in tests. What the figures mean, how")
    add("they were reached and what profiling taught us is in [performance.md](performance.md).")
    add("")
    add("## Machine")
    add("")
    add(f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}, "
        f"{m['rustc']}, binaries built with the `{results.get('profile', 'release')}` profile; "
        f"run of {m['date']}"
        f"{' (quick mode: shorter runs, fewer keys)' if results.get('quick') else ''}. "
        "The load generators and the server share the cores, and so does PostgreSQL, so "
        "absolute rates are those of one small machine; ratios measured in the same run are "
        "what the goals compare.")
    add("")

    goals = []
    http = results.get("http")
    sw = results.get("sweep")
    mem = results.get("memory")
    pg = results.get("postgres")

    def best_of(name):
        """A wrk workload's best round (interference only ever slows a run down)."""
        return max((r for r in http["runs"] if r["name"] == name), key=lambda r: r["rps"])

    # Runs before 2026-11-28 have no durable ceiling; the page renders without it.
    has_durable = bool(http) and any(r["name"] == DURABLE_CEILING for r in http["runs"])
    if http:
        bare = best_of("bare axum handler (5 B)")["rps"]
        get = ratio(best_of("GET existing key (5 B)")["rps"], bare)
        put = ratio(best_of("PUT 100 B, fsync always")["rps"], bare)
        # One decimal in the goal rows: a ratio just under its goal must not print as the goal.
        goals.append(("REST GET at 64 connections (wrk), of the bare handler", "≥ 80%",
                      f"{get:.1f}%", get >= 80))
        put_text = f"{put:.1f}%"
        if has_durable:
            # What a handler doing nothing but a group-committed append reaches: the price of
            # the sync itself on this machine.
            put_text += (f"; the bare durable handler "
                         f"{ratio(best_of(DURABLE_CEILING)['rps'], bare):.1f}%")
        goals.append(("REST PUT, fsync `always` (wrk), of the bare handler", "≥ 60%",
                      put_text, put >= 60))

    def swept(store, workload, protocol, c):
        return next((r for r in sw["runs"] if (r["store"], r["workload"], r["protocol"],
                                                r["concurrency"]) == (store, workload, protocol, c)),
                    None)

    if sw:
        for workload in ["get", "put"]:
            parts, ok = [], True
            for store in ["ephemeral", "always"]:
                g, h = swept(store, workload, "grpc", 64), swept(store, workload, "http", 64)
                if g and h:
                    parts.append(f"{ratio(g['rps'], h['rps']):.1f}% ({STORE_NAMES[store]})")
                    ok = ok and g["rps"] >= h["rps"]
            ceiling = {r["protocol"]: r["rps"]
                       for r in sw.get("ceiling", []) if r["workload"] == workload}
            if len(ceiling) == 2:
                share = ratio(ceiling["grpc"], ceiling["http"])
                parts.append(f"bare tonic {share:.0f}% of bare axum")
            # Runs before 2026-11-28 have no durable ceiling.
            synced = {r["protocol"]: r["rps"]
                      for r in sw.get("ceiling", []) if r["workload"] == f"{workload}-durable"}
            if len(synced) == 2:
                share = ratio(synced["grpc"], synced["http"])
                parts.append(f"bare durable tonic {share:.0f}% of bare durable axum")
            goals.append((f"gRPC {workload.upper()} at 64 in flight, of REST (hexkv bench)",
                          "≥ 100%", ", ".join(parts), ok))
        worst = max(sw["half_rate"], key=lambda r: r["p99_ms"]) if sw["half_rate"] else None
        if worst:
            text = (f"{worst['p99_ms']:.2f} ms ({worst['workload'].upper()}, "
                    f"{worst['protocol']}, {STORE_NAMES[worst['store']]})")
            # What a PUT that waits for a sync shows at half its own peak, where measured.
            durable_half = [r for r in sw.get("ceiling", []) if "half_rate" in r]
            if durable_half:
                text += "; the bare durable handlers " + ", ".join(
                    f"{r['half_rate']['p99_ms']:.2f} ms ({r['protocol']})" for r in durable_half)
            goals.append(("p99 at half the peak rate, memory stores (worst case)", "< 5 ms",
                          text, worst["p99_ms"] < 5))
    if mem:
        goals.append((f"RSS after writing {fmt(mem['keys'])} keys, of the raw data", "≤ 2.5×",
                      f"{mem['rss_loaded_mib'] / mem['raw_mib']:.2f}×",
                      mem["rss_loaded_mib"] / mem["raw_mib"] <= 2.5))
        rate = mem["replay_records"] / max(mem["replay_ms"], 1) * 1000
        goals.append(("start-up: log replay", "≥ 1 M records/s", f"{rate / 1e6:.2f} M/s",
                      rate >= 1e6))
    if pg:
        for op, name in [("get", "GET / select"), ("put", "PUT / upsert")]:
            r = pg["runs"][op]
            v = ratio(r["rps"], r["pgbench_tps"])
            goals.append((f"PostgreSQL {name}, of pgbench", "≥ 60%", f"{v:.0f}%", v >= 60))
    add("## Goals")
    add("")
    add("| goal | target | this run | |")
    add("|---|---|---|---|")
    for name, target, value, ok in goals:
        add(f"| {name} | {target} | {value} | {verdict(ok)} |")
    add("")

    if http:
        add("## REST against a bare axum handler (wrk)")
        add("")
        add(f"`scripts/bench-http.sh`: `{http['wrk']}` against "
            "`crates/hexkv-http/examples/bare_handler.rs` (a fixed 5-byte body, same runtime and "
            "allocator) and against hexkv on a durable store in `target/` (`--log-level warn`): "
            "GET of a 5-byte value, PUT of 100-byte values under 100 000 random keys. "
            f"{http['rounds']} rounds, the ceiling measured at the start of each and once more at "
            "the end; each row is the workload's best round (interference from the rest of the "
            "machine only ever slows a run down), compared with the best ceiling run. Server "
            "CPU per request is the server process's user + system time over that run divided "
            "by the requests served."
            + (" The bare durable PUT is the ceiling of a PUT that must be on disk before it is "
               "answered: `crates/hexkv-http/examples/bare_durable.rs` appends each body to a "
               "file and answers once a group-committed `fdatasync` covers it, and does nothing "
               "else (same workload as hexkv's PUT, its file in `target/` too)."
               if has_durable else ""))
        add("")
        add("| workload | requests/s | of the bare handler | every run | p50 | p99 | non-2xx | server CPU per request |")
        add("|---|---|---|---|---|---|---|---|")
        names = list(dict.fromkeys(r["name"] for r in http["runs"]))
        for name in names:
            r = best_of(name)
            every = " · ".join(fmt(x["rps"]) for x in http["runs"] if x["name"] == name)
            share = f"{ratio(r['rps'], bare):.0f}%"
            add(f"| {name} | {fmt(r['rps'])} | {share} | {every} | {r['p50_ms']:.2f} ms | "
                f"{r['p99_ms']:.2f} ms | {r['non_2xx']} | {r['cpu_us']:.1f} µs |")
        add("")

    if sw:
        add("## Throughput and p99 against concurrency (hexkv bench)")
        add("")
        add(f"`hexkv bench` (closed loop, {sw['duration_s']} s after 1 s of warm-up, 10 000 keys "
            "of 16 bytes, 100-byte values, up to 8 connections) at each number of requests in "
            "flight, over REST and gRPC, against a fresh `hexkv` on each store. The load "
            "generator shares the cores with the server (and PostgreSQL), so its own cost per "
            "request — higher for gRPC — is part of what these rates measure.")
        add("")
        stores = [s for s in STORES if any(r["store"] == s for r in sw["runs"])]
        for workload in ["get", "put"]:
            add(f"![{workload.upper()} throughput](bench/{workload}-throughput.svg)")
            add(f"![{workload.upper()} p99](bench/{workload}-p99.svg)")
            add("")
        for store in stores:
            add(f"### {STORE_NAMES[store]}")
            add("")
            add("| in flight | GET REST req/s | p99 | GET gRPC req/s | p99 | PUT REST req/s | p99 | PUT gRPC req/s | p99 | errors |")
            add("|---|---|---|---|---|---|---|---|---|---|")
            for c in sw["levels"]:
                cells, errors = [], 0
                for workload in ["get", "put"]:
                    for protocol in ["http", "grpc"]:
                        r = swept(store, workload, protocol, c)
                        cells += [fmt(r["rps"]), f"{r['p99_ms']:.2f} ms"]
                        errors += r["errors"]
                add(f"| {c} | " + " | ".join(cells) + f" | {errors} |")
            add("")
        if sw["half_rate"]:
            add("### Latency at half the peak rate")
            add("")
            add("An open loop (`hexkv bench --rate`): requests are due at a fixed rate, half the "
                "peak measured above at 64 in flight, those due within a millisecond released "
                "together at its start (each worker waits on a kernel timer, not tokio's "
                "millisecond wheel), and each latency counts from the moment the request was "
                "due, so queueing is charged to the server (no coordinated omission).")
            add("")
            repeated = all("p99_every_ms" in r for r in sw["half_rate"])
            if repeated:
                add(f"Each row runs {len(sw['half_rate'][0]['p99_every_ms'])} times; the row "
                    "shows the run of median p99, and the last column every run's p99 (the "
                    "load generator shares two cores with the server, so a stall of the machine "
                    "can decide a single run).")
                add("")
            add("| store | workload | protocol | peak req/s | rate | p50 | p99 | errors |"
                + (" p99 of every run |" if repeated else ""))
            add("|---|---|---|---|---|---|---|---|" + ("---|" if repeated else ""))
            for r in sw["half_rate"]:
                every = (" " + " · ".join(f"{x:.2f}" for x in r["p99_every_ms"]) + " ms |"
                         if repeated else "")
                add(f"| {STORE_NAMES[r['store']]} | {r['workload'].upper()} | {r['protocol']} | "
                    f"{fmt(r['peak_rps'])} | {fmt(r['rate'])} | {r['p50_ms']:.2f} ms | "
                    f"{r['p99_ms']:.2f} ms | {r['errors']} |" + every)
            add("")
        if sw.get("ceiling"):
            durable_rows = ([("put-durable", "PUT, durable (group commit)")]
                            if any(r["workload"] == "put-durable" for r in sw["ceiling"])
                            else [])
            add("### The frameworks' ceilings")
            add("")
            add("The same load generator, 64 in flight, against the bare handlers: "
                "`crates/hexkv-http/examples/bare_handler.rs` (axum, HTTP/1.1) and "
                "`crates/hexkv-grpc/examples/bare_grpc.rs` (tonic, HTTP/2), each answering "
                "`/v1/kv/{key}` or `hexkv.v1.KeyValue` with fixed responses (no store, no "
                "layers); best of two runs. What each protocol reaches with this load generator "
                "before hexkv adds anything (the generator's own cost per request included), "
                "beside which to read the gRPC ≥ REST goal."
                + (" The durable PUT row is the same two handlers answering a PUT once a "
                   "group-committed `fdatasync` covers its body "
                   "(`crates/hexkv-http/examples/bare_durable.rs`, and `bare_grpc.rs` given a "
                   "log file; both through `hexkv_testkit::group_commit`, files in `target/`): "
                   "the ceiling beside which to read gRPC against REST under `fsync = always`."
                   if durable_rows else ""))
            add("")
            add("| workload | bare axum req/s | p99 | bare tonic req/s | p99 | tonic of axum |")
            add("|---|---|---|---|---|---|")
            for workload, label in [("get", "GET"), ("put", "PUT")] + durable_rows:
                row = {r["protocol"]: r for r in sw["ceiling"] if r["workload"] == workload}
                h, g = row["http"], row["grpc"]
                add(f"| {label} | {fmt(h['rps'])} | {h['p99_ms']:.2f} ms | "
                    f"{fmt(g['rps'])} | {g['p99_ms']:.2f} ms | {ratio(g['rps'], h['rps']):.0f}% |")
            add("")
            durable_half = [r for r in sw["ceiling"] if "half_rate" in r]
            if durable_half:
                add("The durable bare handlers at half their peak, as the memory stores' rows "
                    "of \"Latency at half the peak rate\" are run (the run of median p99 of "
                    f"{HALF_RATE_REPEATS}): what a PUT that waits for this disk's `fdatasync` "
                    "shows in its tail before hexkv adds anything.")
                add("")
                add("| handler | peak req/s | rate | p50 | p99 | errors | p99 of every run |")
                add("|---|---|---|---|---|---|---|")
                for r in durable_half:
                    h = r["half_rate"]
                    name = "bare durable axum" if r["protocol"] == "http" else "bare durable tonic"
                    add(f"| {name} | {fmt(h['peak_rps'])} | {fmt(h['rate'])} | "
                        f"{h['p50_ms']:.2f} ms | {h['p99_ms']:.2f} ms | {h['errors']} | "
                        + " · ".join(f"{x:.2f}" for x in h["p99_every_ms"]) + " ms |")
                add("")

    if mem:
        add("## Memory and start-up")
        add("")
        add(f"`scripts/bench-memory.sh`: {fmt(mem['keys'])} keys of 16 bytes with 100-byte values "
            f"({mem['raw_mib']} MiB raw) written over gRPC (64 in flight, fsync `never`), the "
            "process's `VmRSS`, a restart that replays the log, `hexkv compact` (offline), and "
            "a restart from the snapshot.")
        add("")
        raw = mem["raw_mib"]
        add("| measure | value |")
        add("|---|---|")
        add(f"| RSS at start (empty) | {mem['rss_empty_mib']} MiB |")
        add(f"| RSS after writing every key | {mem['rss_loaded_mib']} MiB "
            f"({mem['rss_loaded_mib'] / raw:.2f}× raw) |")
        add(f"| writing them | {mem['write_s']:.1f} s |")
        add(f"| start-up: replaying {fmt(mem['replay_records'])} log records | "
            f"{mem['replay_ms']} ms ({mem['replay_records'] / max(mem['replay_ms'], 1) * 1000 / 1e6:.2f} M records/s) |")
        add(f"| RSS after the replay | {mem['rss_replayed_mib']} MiB "
            f"({mem['rss_replayed_mib'] / raw:.2f}× raw) |")
        add(f"| `hexkv compact` (open, snapshot, close) | {mem['compact_s']:.1f} s |")
        add(f"| start-up: loading a snapshot of {fmt(mem['snapshot_keys'])} keys | "
            f"{mem['snapshot_ms']} ms ({mem['snapshot_keys'] / max(mem['snapshot_ms'], 1) * 1000 / 1e6:.2f} M keys/s) |")
        add(f"| RSS after loading the snapshot | {mem['rss_snapshot_mib']} MiB "
            f"({mem['rss_snapshot_mib'] / raw:.2f}× raw) |")
        add("")

    if pg:
        add("## PostgreSQL beside pgbench")
        add("")
        add(f"`scripts/bench-postgres.sh`: PostgreSQL {pg['postgres']} (`scripts/pg.sh`, default "
            "settings: `fsync` and `synchronous_commit` on), 100 000 keys of 100-byte values; "
            f"hexkv REST GET and PUT of random keys with wrk at {pg['connections']} connections "
            f"(pool of {pg['connections']}), and `pgbench -M prepared` at {pg['connections']} "
            "clients running the equivalent single-row `SELECT` and `INSERT … ON CONFLICT DO "
            "UPDATE`, against the same server, one after the other; then hexkv again with "
            "batching off (`read_batch = 0`, `write_batch = 0`; ADR "
            "[0010](adr/0010-postgres-batching.md)).")
        add("")
        add("| operation | hexkv REST req/s | p99 | non-2xx | pgbench tps | of pgbench |")
        add("|---|---|---|---|---|---|")
        names = {"get": "GET / select", "get_unbatched": "GET, batching off",
                 "put": "PUT / upsert", "put_unbatched": "PUT, batching off"}
        for key, name in names.items():
            r = pg["runs"][key]
            add(f"| {name} | {fmt(r['rps'])} | {r['p99_ms']:.2f} ms | {r['non_2xx']} | "
                f"{fmt(r['pgbench_tps'])} | {ratio(r['rps'], r['pgbench_tps']):.0f}% |")
        add("")

    add("## Micro-benchmarks")
    add("")
    add("Criterion benchmarks of the embedded store's hot paths (key parsing, the sharded map "
        "against a single `RwLock<BTreeMap>`, listing, group commit with 1–256 writers, replay "
        "and snapshot loading) are run on their own; their figures and what they taught us are "
        "in [performance.md](performance.md#micro-benchmarks):")
    add("")
    add("```sh")
    add("cargo bench -p hexkv-store-memory --bench store -- --warm-up-time 1 --measurement-time 3")
    add("```")
    return "\n".join(lines) + "\n"


def plots(results):
    sw = results.get("sweep")
    if not sw:
        return {}
    out = {}
    stores = [s for s in STORES if any(r["store"] == s for r in sw["runs"])]
    for workload in ["get", "put"]:
        for metric, label, log_y in [("rps", "requests/s", False), ("p99_ms", "p99 (ms)", True)]:
            series = []
            for store in stores:
                for protocol in ["http", "grpc"]:
                    points = [(r["concurrency"], r[metric]) for r in sw["runs"]
                              if (r["store"], r["workload"], r["protocol"])
                              == (store, workload, protocol)]
                    name = f"{STORE_NAMES[store].replace('memory, ', '')}, " \
                           f"{'REST' if protocol == 'http' else 'gRPC'}"
                    series.append((name, COLORS[store], protocol == "grpc", points))
            title = f"{workload.upper()}: {'throughput' if metric == 'rps' else 'p99 latency'}"
            suffix = "throughput" if metric == "rps" else "p99"
            out[f"{workload}-{suffix}.svg"] = svg_plot(title, label, series, sw["levels"], log_y)
    return out


def write_outputs(results):
    PLOTS.mkdir(parents=True, exist_ok=True)
    for name, svg in plots(results).items():
        (PLOTS / name).write_text(svg)
    PAGE.write_text(render(results))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs, 100 000 keys")
    parser.add_argument("--render", action="store_true",
                        help="only render the page from docs/bench/results.json")
    parser.add_argument("--check", action="store_true",
                        help="fail if the page or the plots differ from a render of the results")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to leave out: http,sweep,memory,postgres")
    args = parser.parse_args()

    if args.render or args.check:
        results = json.loads(RESULTS.read_text())
        if args.check:
            stale = [name for name, svg in plots(results).items()
                     if (PLOTS / name).read_text() != svg]
            if PAGE.read_text() != render(results):
                stale.append(str(PAGE.relative_to(ROOT)))
            if stale:
                raise SystemExit(f"not rendered from docs/bench/results.json: {stale}; "
                                 "run scripts/bench.py --render")
            return
        write_outputs(results)
        return

    skip = set(filter(None, args.skip.split(",")))
    profile = os.environ.setdefault("PROFILE", "dist")  # the scripts it runs measure it too
    subprocess.run(["cargo", "build", "--profile", profile, "--quiet", "-p", "hexkv-server",
                    "--bin", "hexkv", "-p", "hexkv-http", "--example", "bare_handler",
                    "--example", "bare_durable",
                    "-p", "hexkv-grpc", "--example", "bare_grpc"],
                   cwd=ROOT, check=True)
    target = target_dir()
    hexkv = target / profile / "hexkv"
    work = target / "bench-sweep"
    results = {"machine": machine(), "quick": args.quick, "profile": profile}
    duration = 2 if args.quick else 4
    if "http" not in skip:
        results["http"] = run_script("scripts/bench-http.sh",
                                     {"DURATION": "5s" if args.quick else "10s",
                                      "ROUNDS": "1" if args.quick else "2"})
    if "sweep" not in skip:
        pg_url = None
        stores = [s for s in STORES if s != "postgres" or "postgres" not in skip]
        if "postgres" in stores:
            pg_url = subprocess.run([str(ROOT / "scripts/pg.sh"), "start"], cwd=ROOT,
                                    check=True, capture_output=True, text=True).stdout.strip()
        levels = [1, 4, 16, 64, 256]
        results["sweep"] = sweep(hexkv, work, stores, levels, duration, pg_url)
        results["sweep"]["ceiling"] = ceilings(hexkv, target / profile / "examples", duration,
                                               target / "bench-ceiling")
    if "memory" not in skip:
        results["memory"] = run_script("scripts/bench-memory.sh",
                                       {"KEYS": "100000" if args.quick else "1000000"})
    if "postgres" not in skip:
        results["postgres"] = run_script("scripts/bench-postgres.sh",
                                         {"DURATION": "5s" if args.quick else "10s"})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    write_outputs(results)
    log(f"wrote {RESULTS.relative_to(ROOT)}, {PAGE.relative_to(ROOT)} and the plots")


if __name__ == "__main__":
    main()

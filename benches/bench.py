"""trtc-usage benchmarks (issue 6), against the bundled simulator.

1. Throughput, memory, size: one day of N rooms (default 1,000,000), served
   by the simulator, from HTTP response to finished Parquet file, against
   DuckDB converting the same CSV to zstd Parquet, in the same run.
   With --prices FILE, the FOCUS `cost` table of the same day too, computed
   from the room table by `rebuild --tables cost` (no call) in a process of
   its own: its time, rows, bytes and peak RSS beside the room table's.
2. Pacing: N app-days (default 20) at a 1 s interval with all three tables
   (both APIs): wall time against (N-1) x interval x 1.02 + one call's
   latency, and throttle errors; then the same with --tables room_usage, so
   the cost of the second API shows (`--pacing-only` runs just this).

Run with scripts/bench (it builds the release binary and the venv).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta

BIN = os.path.join(os.path.dirname(__file__), "..", "target", "release", "trtc-usage")
KEY_ID = "AKIDSIMULATOR0000000000000000000DEMO"
KEY = "simulator-demo-key-not-a-secret0"
APP = 1400000001
RAW = "on"  # --raw
PRICES = None  # --prices


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("simulator did not start")


def peak_rss_of(cmd, env=None):
    """Runs cmd under a tiny wrapper that reports its own child's peak RSS
    and CPU time (user + system, the whole process)."""
    wrapper = (
        "import os,resource,subprocess,sys,json,time;"
        "t=time.monotonic();"
        "p=subprocess.run(sys.argv[1:],capture_output=True,text=True);"
        "w=time.monotonic()-t;"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);r=u.ru_maxrss*1024;c=u.ru_utime+u.ru_stime;"
        "print(json.dumps({'code':p.returncode,'wall':w,'rss':r,'cpu':c,'out':p.stdout,'err':p.stderr}))"
    )
    res = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, env=env, check=True)
    return json.loads(res.stdout)


def export_env(port, dest, interval):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRTC_")}
    env.update({
        "TENCENTCLOUD_SECRET_ID": KEY_ID,
        "TENCENTCLOUD_SECRET_KEY": KEY,
        "TRTC_ENDPOINT": f"http://127.0.0.1:{port}",
        "TRTC_DEST": dest,
        "TRTC_MIN_INTERVAL": interval,
        "TRTC_LOG_FORMAT": "json",
        "TRTC_PROGRESS": "off",
        "TRTC_REQUEST_TIMEOUT": "300s",
        "TRTC_RAW": RAW,
    })
    return env


def raw_bytes(dest):
    """Bytes of the raw zone under a destination (its compressed answers)."""
    total = 0
    for root, _, files in os.walk(os.path.join(dest, "_raw")):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def throughput(rooms, day, work, repeat, backfill_days):
    """Runs trtc-usage and DuckDB `repeat` times each on the same day, in
    turns (ours, DuckDB, ours, ...: this machine's speed drifts by 10-15 %
    over minutes, and a drift then weighs on both sides alike); returns the
    list of runs of each and the CSV's size."""
    port = free_port()
    sim = subprocess.Popen([BIN, "simulator", "--listen", f"127.0.0.1:{port}", "--min-interval", "0s",
                            "--sim-rooms", str(rooms), "--sim-exact-rooms"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ours_runs = []
    try:
        wait_port(port)
        csv_path = os.path.join(work, "day.csv")
        subprocess.run([BIN, "simulator", "--sim-rooms", str(rooms), "--sim-exact-rooms",
                        "--dump-csv", csv_path, "--dump-partition", f"{APP}:{day}"], check=True)
        csv_bytes = os.path.getsize(csv_path)
        duck_out = os.path.join(work, "duckdb.parquet")
        script = (
            "import duckdb,time,sys;"
            "c=duckdb.connect();"
            "c.execute('SET enable_progress_bar=false');"
            "t=time.monotonic();"
            f"c.execute(\"COPY (SELECT * FROM read_csv('{csv_path}', header=true, quote='\\\"', "
            "columns={'RoomId':'VARCHAR','Audio':'BIGINT','SD':'BIGINT','hd':'BIGINT','FullHD':'BIGINT','2K':'BIGINT','4K':'BIGINT'})) "
            f"TO '{duck_out}' (FORMAT parquet, COMPRESSION zstd)\");"
            "print(time.monotonic()-t)"
        )
        duck_runs = []
        for i in range(repeat):
            dest = os.path.join(work, f"warehouse-{rooms}-{i}")
            r = peak_rss_of([BIN, "export", "--app-id", str(APP), "--date", str(day)],
                            env=export_env(port, dest, "0s"))
            if r["code"] != 0:
                raise SystemExit(f"export failed: {r['err']}")
            wrote = next(json.loads(l) for l in r["err"].splitlines()
                         if "Wrote partition." in l and json.loads(l).get("table") == "room_usage")
            run = {
                "seconds": wrote["process_ms"] / 1000.0,
                "rss": r["rss"],
                "cpu": r["cpu"],
                "bytes": wrote["bytes"],
                "rows": wrote["rows"],
                "body": wrote["body_bytes"],
                "raw": raw_bytes(dest),
            }
            if PRICES:
                # The cost table alone, from the lake: no call, its own process.
                c = peak_rss_of([BIN, "rebuild", "--tables", "cost", "--prices", PRICES,
                                 "--app-id", str(APP), "--date", str(day)],
                                env=export_env(port, dest, "0s"))
                if c["code"] != 0:
                    raise SystemExit(f"rebuild --tables cost failed: {c['err']}")
                cost = next(json.loads(l) for l in c["err"].splitlines()
                            if "Wrote partition." in l and json.loads(l).get("table") == "cost")
                run["cost"] = {"seconds": cost["process_ms"] / 1000.0, "rss": c["rss"],
                               "bytes": cost["bytes"], "rows": cost["rows"], "wall": c["wall"]}
            ours_runs.append(run)
            shutil.rmtree(dest)  # a 10M-room day's lake is ~250 MB
            d = peak_rss_of([sys.executable, "-c", script])
            if d["code"] != 0:
                raise SystemExit(f"duckdb failed: {d['err']}")
            duck_runs.append({"seconds": float(d["out"].strip().splitlines()[-1]), "rss": d["rss"],
                              "cpu": d["cpu"], "bytes": os.path.getsize(duck_out), "rows": rooms})
        # A backfill of several such days in one process: memory freed after
        # each day must be reused, not kept (glibc arenas once grew it by a
        # day per partition).
        backfill = None
        if backfill_days > 1:
            last = day - timedelta(days=1)
            first = last - timedelta(days=backfill_days - 1)
            r = peak_rss_of([BIN, "export", "--app-id", str(APP), "--start", str(first), "--end", str(last)],
                            env=export_env(port, os.path.join(work, f"backfill-{rooms}"), "0s"))
            if r["code"] != 0:
                raise SystemExit(f"backfill export failed: {r['err']}")
            backfill = {"days": backfill_days, "rss": r["rss"], "wall": r["wall"]}
    finally:
        sim.terminate()
        sim.wait()
    return ours_runs, duck_runs, csv_bytes, backfill


def median_run(runs):
    """The run with the median time (its RSS and size come with it)."""
    return sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]


def verdict(ok):
    return "met" if ok else "MISSED"


def pacing(n, interval_s, work):
    """Returns (wall of one partition's run, wall of n partitions' run, the
    latter's summary). The one-partition run is the process start plus one
    call: the "one call's latency" of the bound, measured, not assumed."""
    port = free_port()
    sim = subprocess.Popen([BIN, "simulator", "--listen", f"127.0.0.1:{port}", "--min-interval", f"{interval_s}s"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        today = date.today()
        start, end = today - timedelta(days=n + 1), today - timedelta(days=2)

        def run(dest, *days, tables=None):
            env = export_env(port, os.path.join(work, dest), f"{interval_s}s")
            if tables:
                env["TRTC_TABLES"] = tables
            t0 = time.monotonic()
            p = subprocess.run([BIN, "export", "--app-id", str(APP), *days], env=env, capture_output=True, text=True)
            wall = time.monotonic() - t0
            if p.returncode != 0:
                raise SystemExit(f"pacing export failed: {p.stderr}")
            return wall, json.loads(p.stdout)

        one, _ = run("pacing-one", "--date", str(end))
        time.sleep(interval_s)  # the simulator's interval counts from that call
        wall, summary = run("pacing", "--start", str(start), "--end", str(end))
        time.sleep(interval_s)
        room_wall, room_summary = run("pacing-room", "--start", str(start), "--end", str(end),
                                      tables="room_usage")
    finally:
        sim.terminate()
        sim.wait()
    return one, wall, summary, room_wall, room_summary


MIB = 1024 * 1024
# The targets: both days in at most 0.8x DuckDB's time (issue 24), in
# memory that does not grow with the day (issue 12).
BASE_ROOMS = 1_000_000


def report_size(rooms, runs, base_peak):
    """Prints one size's table and its targets; returns its worst peak RSS."""
    ours_runs, duck_runs, csv_bytes, backfill, repeat = runs
    ours, duck = median_run(ours_runs), median_run(duck_runs)
    peak = max(r["rss"] for r in ours_runs)
    print(f"\nThroughput: one day of {rooms:,} rooms (CSV {csv_bytes / MIB:.1f} MiB, "
          f"HTTP body {ours['body'] / MIB:.1f} MiB), raw zone {RAW}, 2 cores, median of {repeat} run(s) each")
    print(f"| {'':26} | {'seconds':>8} | {'rows/s':>12} | {'CPU s/M rooms':>13} | {'peak RSS MiB':>12} | {'Parquet bytes':>13} |")
    print(f"|{'-'*28}|{'-'*10}|{'-'*14}|{'-'*15}|{'-'*14}|{'-'*15}|")
    for name, r in (("trtc-usage (response→file)", ours), ("DuckDB (CSV file→file)", duck)):
        print(f"| {name:26} | {r['seconds']:8.3f} | {r['rows'] / r['seconds']:12,.0f} | "
              f"{r['cpu'] / (rooms / 1e6):13.2f} | {r['rss'] / MIB:12.1f} | {r['bytes']:13,} |")
    print("(CPU: user + system of the whole process, per million rooms: trtc-usage's run includes "
          "its start, the app call and the checks; DuckDB's, Python's start and the import)")
    t = ours["seconds"] / duck["seconds"]
    z = ours["bytes"] / duck["bytes"]
    secs = lambda runs: ", ".join(f"{r['seconds']:.3f}" for r in runs)
    time_target = 0.8
    print(f"time ratio trtc-usage/DuckDB: {t:.2f} (target <= {time_target:g}: {verdict(t <= time_target)}); "
          f"runs: trtc-usage {secs(ours_runs)}; DuckDB {secs(duck_runs)}")
    # The runs alternate, so each pair saw the machine in the same state.
    pairs = sorted(o["seconds"] / d["seconds"] for o, d in zip(ours_runs, duck_runs))
    print(f"ratio of each pair of runs (in turns): {', '.join(f'{p:.2f}' for p in pairs)}; "
          f"median {pairs[len(pairs) // 2]:.2f}")
    if rooms <= BASE_ROOMS:
        m = peak / ours["body"]
        print(f"peak RSS / response size, worst run: {m:.2f} (target <= 2.5: {verdict(m <= 2.5)})")
    else:
        ratio = peak / base_peak
        print(f"peak RSS, worst run: {peak / MIB:.1f} MiB (target <= 100: {verdict(peak <= 100 * MIB)}); "
              f"{ratio:.2f}x the {BASE_ROOMS:,}-room day's {base_peak / MIB:.1f} MiB "
              f"(target <= 1.25: {verdict(ratio <= 1.25)})")
    print(f"size ratio trtc-usage/DuckDB: {z:.3f} (target <= 1: {verdict(z <= 1)})")
    print(f"raw zone ({RAW}): {ours['raw']:,} bytes for a {ours['body']:,}-byte body "
          f"({ours['raw'] / ours['body']:.3f} of it)")
    if PRICES:
        costs = [r["cost"] for r in ours_runs]
        c = sorted(costs, key=lambda c: c["seconds"])[len(costs) // 2]
        cpeak = max(c["rss"] for c in costs)
        cost_secs = ", ".join(f"{c['seconds']:.3f}" for c in costs)
        print(f"cost table (rebuild --tables cost, from the room file, no call): {c['seconds']:.3f}s "
              f"({c['seconds'] / ours['seconds']:.2f}x the room table's), {c['rows']:,} rows, "
              f"{c['bytes']:,} bytes; peak RSS, worst run: {cpeak / MIB:.1f} MiB "
              f"({cpeak / peak:.2f}x the room table's run; the room table's bound, 100 MiB: "
              f"{verdict(cpeak <= 100 * MIB)}); "
              f"runs: {cost_secs}")
    if backfill:
        print(f"backfill of {backfill['days']} such days in one run: peak RSS {backfill['rss'] / MIB:.1f} MiB "
              f"({backfill['rss'] / ours['body']:.2f}x one response), {backfill['wall']:.1f}s")
    return peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", default=str(BASE_ROOMS),
                    help="rooms in the day, or sizes separated by commas (e.g. 1000000,10000000); "
                         f"a size over {BASE_ROOMS:,} also runs the {BASE_ROOMS:,}-room day once, "
                         "for its memory target")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each side; the median is reported")
    ap.add_argument("--backfill-days", type=int, default=10,
                    help="days of the same size exported in one run, for peak RSS over a backfill (0 to skip)")
    ap.add_argument("--pacing-n", type=int, default=20)
    ap.add_argument("--pacing-interval", type=float, default=1.0)
    ap.add_argument("--skip-pacing", action="store_true")
    ap.add_argument("--pacing-only", action="store_true", help="only the pacing measurement")
    ap.add_argument("--raw", choices=["on", "off"], default="on",
                    help="keep the raw zone (the default, and what users run)")
    ap.add_argument("--prices", help="a price list: also measure the FOCUS cost table of each day")
    args = ap.parse_args()
    global RAW, PRICES
    RAW = args.raw
    PRICES = os.path.abspath(args.prices) if args.prices else None
    day = date.today() - timedelta(days=5)
    if args.pacing_only:
        with tempfile.TemporaryDirectory() as work:
            report_pacing(args, work)
        return
    sizes = sorted({int(r) for r in args.rooms.split(",")})
    with tempfile.TemporaryDirectory() as work:
        base_peak = None
        if any(n > BASE_ROOMS for n in sizes) and BASE_ROOMS not in sizes:
            runs = throughput(BASE_ROOMS, day, work, 1, 0)
            base_peak = max(r["rss"] for r in runs[0])
            print(f"\n({BASE_ROOMS:,}-room day, one run, for the memory target: peak RSS {base_peak / MIB:.1f} MiB)")
        for rooms in sizes:
            # The largest days once each unless asked: a run is minutes.
            repeat = args.repeat
            backfill_days = args.backfill_days if rooms <= BASE_ROOMS else 0
            runs = throughput(rooms, day, work, repeat, backfill_days)
            peak = report_size(rooms, (*runs, repeat), base_peak)
            if rooms == BASE_ROOMS:
                base_peak = peak
        if not args.skip_pacing:
            report_pacing(args, work)


def report_pacing(args, work):
    n, iv = args.pacing_n, args.pacing_interval
    one, wall, s, room_wall, rs = pacing(n, iv, work)
    bound = (n - 1) * iv * 1.02 + one
    ok = wall <= bound and s["throttles"] == 0
    print(f"\nPacing: {n} app-days at {iv:g}s, all three tables (both APIs): wall {wall:.2f}s; "
          f"bound (N-1)*interval*1.02 + one call's latency = {(n - 1) * iv * 1.02:.2f}s + {one:.2f}s "
          f"(a whole one-day run) = {bound:.2f}s; calls {s['calls']}, throttles {s['throttles']}, "
          f"retries {s['retries']} (target: {verdict(ok)})")
    print(f"Pacing: the same with --tables room_usage (the room API alone): wall {room_wall:.2f}s, "
          f"calls {rs['calls']}, throttles {rs['throttles']}; both tables cost "
          f"{wall - room_wall:+.2f}s ({(wall / room_wall - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main()

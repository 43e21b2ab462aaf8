"""The fleet benchmark's clients and arithmetic (run by loadtests/fleet.sh).

For one configuration of replicas (their REST URLs), repeatedly: move W, let CLIENTS dashboard
clients, spread over the replicas, refresh the dashboard once (every query of the mix, one
after another), and count what the move cost the warehouse: statements summed over the
replicas' /metrics: batch statements (legs and chunks, cacheable for their W), fringe
statements (a sliding range's newest edge, computed per request) and all warehouse
statements. Prints one JSON line per configuration.

    python3 loadtests/fleet.py run LABEL URL[,URL...] --db DBURL --moves N --clients C --mix FILE --w-start T
    python3 loadtests/fleet.py steady LABEL URL[,URL...] --mix FILE --rate R --seconds S
    python3 loadtests/fleet.py model --mix FILE --replicas N [--shared]
"""

import argparse
import datetime
import json
import statistics
import subprocess
import threading
import time
import urllib.request


def post(url, sql, timeout=120):
    req = urllib.request.Request(
        url + "/v1/query",
        data=json.dumps({"sql": sql}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()


def metric(url, name, labels=""):
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + labels) and (labels or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def redis_info(port):
    """Keys, memory and bytes through the network of the configuration's Redis."""
    if not port:
        return {}
    out = subprocess.run(["redis-cli", "-p", str(port), "info"], capture_output=True, text=True).stdout
    info = dict(l.split(":", 1) for l in out.splitlines() if ":" in l)
    db0 = dict(kv.split("=", 1) for kv in info.get("db0", "keys=0").split(","))  # keys=N,expires=...
    return {
        "keys": int(db0.get("keys", 0)),
        "used_memory": int(info.get("used_memory", 0)),
        "net_bytes": int(info.get("total_net_input_bytes", 0)) + int(info.get("total_net_output_bytes", 0)),
        "commands": int(info.get("total_commands_processed", 0)),
    }


def counters(urls):
    return {
        "batch": sum(metric(u, "tidemark_warehouse_legs_total", '{layer="batch"}') for u in urls),
        "fringe": sum(metric(u, "tidemark_warehouse_legs_total", '{layer="fringe"}') for u in urls),
        "speed": sum(metric(u, "tidemark_warehouse_legs_total", '{layer="speed"}') for u in urls),
        "all": sum(metric(u, "tidemark_warehouse_statements_total") for u in urls),
        "shared_hits": sum(metric(u, "tidemark_shared_cache_total", '{result="hit"}') for u in urls),
    }


def psql(db, sql):
    subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", db, "-c", sql], check=True)


def seen_w(urls, want):
    for _ in range(400):
        ok = 0
        for u in urls:
            with urllib.request.urlopen(u + "/v1/tables", timeout=10) as r:
                if json.loads(r.read())[0]["batch_watermark"].startswith(want):
                    ok += 1
        if ok == len(urls):
            return
        time.sleep(0.02)
    raise SystemExit("the replicas did not see W move")


def refresh(url, mix, out, i):
    t0 = time.perf_counter()
    for q in mix:
        post(url, q["sql"])
    out[i] = time.perf_counter() - t0


def run(args):
    urls = args.urls.split(",")
    mix = json.load(open(args.mix))["queries"]
    for i, q in enumerate(mix):  # warm, and make the mix the replicas' frequent queries
        for u in urls:
            post(u, q["sql"])
    batch, fringe, statements, first = [], [], [], []
    redis_before = redis_info(args.redis_port)
    start = datetime.datetime.fromisoformat(args.w_start)
    for m in range(args.moves):
        before = counters(urls)
        w = (start + datetime.timedelta(minutes=(m + 1) * args.step_min)).strftime("%Y-%m-%d %H:%M:%S")
        psql(args.db, f"UPDATE tidemark_watermarks SET batch_watermark = '{w}', updated_at = now()")
        seen_w(urls, w)
        out = [0.0] * args.clients
        threads = [
            threading.Thread(target=refresh, args=(urls[i % len(urls)], mix, out, i))
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        first.extend(out)
        time.sleep(args.settle)  # the re-warm finishes
        after = counters(urls)
        batch.append(after["batch"] - before["batch"])
        fringe.append(after["fringe"] - before["fringe"])
        statements.append(after["all"] - before["all"])
    first.sort()
    p99 = first[min(len(first) - 1, int(len(first) * 0.99))]
    redis_after = redis_info(args.redis_port)
    per_move = lambda k: (redis_after.get(k, 0) - redis_before.get(k, 0)) / args.moves
    print(json.dumps({
        "label": args.label,
        "replicas": len(urls),
        "moves": args.moves,
        "batch_statements_per_move": statistics.mean(batch),
        "fringe_statements_per_move": statistics.mean(fringe),
        "warehouse_statements_per_move": statistics.mean(statements),
        "first_refresh_p50_ms": statistics.median(first) * 1000,
        "first_refresh_p99_ms": p99 * 1000,
        "shared_hits": counters(urls)["shared_hits"],
        "redis_keys": redis_after.get("keys", 0),
        "redis_used_memory": redis_after.get("used_memory", 0),
        "redis_bytes_per_move": per_move("net_bytes"),
        "redis_commands_per_move": per_move("commands"),
    }))


def steady(args):
    """RATE requests a second of the mix, each to a random replica, for SECONDS: how many speed
    legs the fleet sends the warehouse a second, against the model: per query asked at r
    requests a second, a replica computes its realtime part once per realtime epoch T in
    which it is asked at all, so the fleet sends sum over queries of N (1 - exp(-r T / N)) / T."""
    import math
    import random

    urls = args.urls.split(",")
    mix = json.load(open(args.mix))["queries"]
    before = counters(urls)["speed"]
    stop = time.time() + args.seconds
    gap = len(mix) * 1.0 / args.rate  # each worker thread asks one query per gap, on average

    def worker(q):
        rng = random.Random(hash(q["name"]))
        while time.time() < stop:
            time.sleep(rng.expovariate(1.0 / gap))
            post(rng.choice(urls), q["sql"])

    threads = [threading.Thread(target=worker, args=(q,)) for q in mix]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = counters(urls)["speed"]
    n, r, T = len(urls), args.rate / len(mix), args.ttl
    predicted = len(mix) * n * (1 - math.exp(-r * T / n)) / T
    print(json.dumps({
        "label": args.label, "replicas": n, "rate": args.rate,
        "speed_statements_per_s": (after - before) / args.seconds,
        "model_speed_statements_per_s": predicted,
    }))


def model(args):
    """What the capacity model predicts per W move (docs/scale.md)."""
    mix = json.load(open(args.mix))["queries"]
    legs = sum(q["batch_statements"] for q in mix)
    per_move = legs if args.shared else legs * args.replicas
    print(json.dumps({"replicas": args.replicas, "shared": args.shared, "batch_statements_per_move": per_move}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("label")
    r.add_argument("urls")
    r.add_argument("--db", required=True)
    r.add_argument("--mix", required=True)
    r.add_argument("--moves", type=int, default=5)
    r.add_argument("--clients", type=int, default=30)
    r.add_argument("--step-min", type=int, default=10)
    r.add_argument("--w-start", required=True, help="W before the first move (timestamp text)")
    r.add_argument("--redis-port", type=int, default=0, help="the configuration's Redis, for its stats")
    r.add_argument("--settle", type=float, default=3.0)
    st = sub.add_parser("steady")
    st.add_argument("label")
    st.add_argument("urls")
    st.add_argument("--mix", required=True)
    st.add_argument("--rate", type=float, default=60)
    st.add_argument("--seconds", type=float, default=20)
    st.add_argument("--ttl", type=float, default=1.0)
    m = sub.add_parser("model")
    m.add_argument("--mix", required=True)
    m.add_argument("--replicas", type=int, default=1)
    m.add_argument("--shared", action="store_true")
    args = p.parse_args()
    {"run": run, "steady": steady, "model": model}[args.cmd](args)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""orproxy benchmark, two instances on one PostgreSQL (`make bench-pg`, issue 14).

Starts, on 127.0.0.1 only: a throwaway PostgreSQL (tests/pg/pgserver.sh, the same
server the tests use: loopback port, scratch directory, removed at the end), the
fast fake upstream (bench/fakeup, plaintext), and four orproxy instances: two with
the SQLite ledger (each its own) and two with `ledger.backend = "postgresql"` on the
one database.  All four run the same limits: a day and a month budget for all
traffic, so the PostgreSQL pair shares them by leases (src/bshare.c) where the
SQLite pair counts them locally.

Then, round by round, SQLite and PostgreSQL interleaved (so a busy machine slows
both alike), wrk with bench/chat.lua measures:
  - c=1: one connection to the pair's first instance;
  - c=64: two wrk processes of 32 connections, one on each instance of the pair,
    after 1 s of unmeasured load on both (the steady state: an instance idle for
    3 s has given its leased headroom back, and a burst's first requests wait for
    a lease).
The table gives PostgreSQL's figures as ratios of SQLite's measured in the same
rounds (a ratio of 1.00 is no added latency), and the database's queries per
request two ways:
  - the server's count: pg_stat_database xact_commit + xact_rollback of the
    database, read once the PostgreSQL instances have stopped (their backends
    flush their statistics at exit), minus the count before they started.  Every
    statement orproxy sends is its own transaction, so this is statements; it
    includes the instances' start (migrations) and shutdown (settle, return);
  - orproxy's own: orproxy_ledger_postgresql_statements_total (/metrics) plus the
    budgets thread's "N database statements" (its log line at shutdown).

Every load has a duration and a timeout; every process started here is stopped
on exit, and the server's directory is removed.
"""
import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run import free_port, stop_procs, wait_port, wrk_result  # noqa: E402  (bench/run.py)

PGSERVER = os.path.join(HERE, "..", "tests", "pg", "pgserver.sh")
BACKENDS = ("sqlite", "postgresql")

ORPROXY_CONF = """\
listen = {{ address = "127.0.0.1"; port = {port}; }};
upstream = {{ base_url = "http://127.0.0.1:{fake}/api/v1"; api_key_env = "OPENROUTER_API_KEY"; }};
limits = {{ max_connections = 20000; budget_usd_day = "100000"; budget_usd_month = "1000000";
  unpriced_reserve_usd = "0.01"; }};
workers = {workers};
log = {{ level = "info"; }};
state_dir = "{state}";
instance = {{ name = "{name}"; }};
{ledger}
"""

PG_LEDGER = ('ledger = {{ backend = "postgresql"; postgresql_url = "{url}";\n'
             '  postgresql_password_file = "{pwfile}"; }};')


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class PgBench:
    def __init__(self, a):
        self.a = a
        self.root = os.path.abspath(tempfile.mkdtemp(prefix="orproxy-bench-pg-", dir=a.workdir))
        # The server runs as nobody when this runs as root: its directory must be
        # somewhere nobody can enter (the system's temporary directory), not under root.
        self.pgdir = os.path.join(tempfile.gettempdir(), "orp-bench-pg-%d" % os.getpid())
        self.pg = None
        self.procs, self.orp, self.ports = [], {}, {}

    # ---- processes -------------------------------------------------------
    def spawn(self, name, argv, env=None):
        logf = open(os.path.join(self.root, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                             preexec_fn=os.setsid)
        self.procs.append(p)
        return p

    def start(self):
        out = subprocess.run(["bash", PGSERVER, "start", self.pgdir], capture_output=True,
                             text=True, timeout=90)
        if out.returncode != 0:
            raise RuntimeError("PostgreSQL did not start: %s" % out.stderr.strip())
        self.pg = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        fp = free_port()
        self.fake = self.spawn("fakeup", [self.a.fakeup, str(fp)])
        wait_port(fp, self.fake)
        self.xact0 = self.pg_xacts()
        for backend in BACKENDS:
            for ab in "ab":
                self.start_orproxy("%s-%s" % (backend, ab), backend, fp)
        for name in self.orp:
            self.wait_ready(name)

    def start_orproxy(self, name, backend, fake_port):
        port = self.ports[name] = free_port()
        state = os.path.join(self.root, "state-" + name)
        os.makedirs(state)
        ledger = "" if backend == "sqlite" else PG_LEDGER.format(
            url=self.pg["ORP_PG_URL"], pwfile=self.pg["ORP_PG_PASSWORD_FILE"])
        conf = os.path.join(self.root, name + ".conf")
        with open(conf, "w") as f:
            f.write(ORPROXY_CONF.format(port=port, fake=fake_port, workers=self.a.workers,
                                        state=state, name=name, ledger=ledger))
        env = dict(os.environ, OPENROUTER_API_KEY="sk-or-v1-bench-upstream-key")
        env.pop("STATE_DIRECTORY", None)
        self.orp[name] = self.spawn(name, [self.a.orproxy, "-c", conf], env=env)
        wait_port(port, self.orp[name])

    def wait_ready(self, name, timeout=15.0):
        """/readyz 200: the price table is loaded (before it every model is unpriced)."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.ports[name],
                                            timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("%s not ready within %.0f s" % (name, timeout))

    def stop_procs(self, names):
        """SIGTERM, then wait; returns each one's exit status."""
        ps = [self.orp[n] for n in names]
        for p in ps:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        rcs = {}
        for n, p in zip(names, ps):
            try:
                rcs[n] = p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                rcs[n] = p.wait()
        return rcs

    def stop(self):
        stop_procs(self.procs)
        subprocess.run(["bash", PGSERVER, "destroy", self.pgdir], timeout=60,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # ---- counting --------------------------------------------------------
    def pg_xacts(self):
        """Transactions of the orproxy database so far, from the server's statistics
        (read over the superuser's connection to another database, so not counted)."""
        env = dict(os.environ, PGPASSFILE=self.pg["ORP_PG_PASSFILE"])
        out = subprocess.run(
            ["psql", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", self.pg["ORP_PG_ADMIN_URL"], "-c",
             "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'orp_test'"],
            capture_output=True, text=True, env=env, timeout=30)
        if out.returncode != 0:
            raise RuntimeError("psql: %s" % out.stderr.strip())
        return int(out.stdout.strip())

    def metric(self, name, metric):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.ports[name],
                                    timeout=5) as r:
            text = r.read().decode()
        m = re.search(r"^%s(?:\{[^}]*\})? (\d+)" % re.escape(metric), text, re.M)
        return int(m.group(1)) if m else None

    def budget_statements(self, name):
        """The budgets thread's statements and the requests that waited for a lease,
        from its log line at shutdown."""
        with open(os.path.join(self.root, name + ".log")) as f:
            m = re.findall(r"budgets: \d+ shared reservations, (\d+) database statements, "
                           r"(\d+) waits", f.read())
        return (int(m[-1][0]), int(m[-1][1])) if m else (None, None)

    # ---- load --------------------------------------------------------------
    def wrk_start(self, name, conns, seconds):
        argv = [self.a.wrk, "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s",
                "-s", os.path.join(HERE, "chat.lua"),
                "http://127.0.0.1:%d/v1/chat/completions" % self.ports[name]]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


    def load(self, backend, conns, seconds):
        """conns connections: all on instance a when 1, else split over a and b.
        Returns the merged figures: requests and errors summed, req/s summed,
        p50 the mean of the two (equal loads), p99 the worse."""
        names = ["%s-a" % backend] if conns == 1 else ["%s-a" % backend, "%s-b" % backend]
        ps = [self.wrk_start(n, conns // len(names), seconds) for n in names]
        rs = [wrk_result(p.communicate(timeout=seconds + 30)[0], n) for p, n in zip(ps, names)]
        return {"requests": sum(r["requests"] for r in rs), "errors": sum(r["errors"] for r in rs),
                "rps": sum(r["rps"] for r in rs),
                "p50_us": statistics.mean(r["p50_us"] for r in rs),
                "p99_us": max(r["p99_us"] for r in rs), "runs": rs}


def run(b, a):
    res = {"config": {"smoke": a.smoke, "rounds": a.rounds, "duration_s": a.duration,
                      "workers": a.workers, "cores": os.cpu_count(),
                      "loadavg_start": os.getloadavg()}}
    requests = {k: 0 for k in BACKENDS}
    if not a.smoke:  # warm both pairs (connections, leases, page cache)
        for backend in BACKENDS:
            requests[backend] += b.load(backend, 8, 1)["requests"]
    runs = {c: {k: [] for k in BACKENDS} for c in (1, 64)}
    for rnd in range(a.rounds):
        for c in (1, 64):
            for backend in BACKENDS:
                if c > 1:  # the pair's second instance idled through c=1: steady state first
                    requests[backend] += b.load(backend, 8, 1)["requests"]
                r = b.load(backend, c, a.duration)
                runs[c][backend].append(r)
                requests[backend] += r["requests"]
                log("round %d c=%-2d %-10s p50 %6.0f us  p99 %6d us  %7.0f req/s  errors %d" %
                    (rnd, c, backend, r["p50_us"], r["p99_us"], r["rps"], r["errors"]))
    for c in (1, 64):
        res["c%d" % c] = {k: {"p50_us": statistics.median(r["p50_us"] for r in runs[c][k]),
                              "p99_us": statistics.median(r["p99_us"] for r in runs[c][k]),
                              "rps": statistics.median(r["rps"] for r in runs[c][k]),
                              "errors": sum(r["errors"] for r in runs[c][k]),
                              "runs": runs[c][k]} for k in BACKENDS}
    res["requests"] = requests

    # The database's share: orproxy's own counts first (the ledger's from /metrics while
    # the instances run, the budgets thread's from its log at shutdown), then the server's.
    pgs = ["postgresql-a", "postgresql-b"]
    ledger_stmts = sum(b.metric(n, "orproxy_ledger_postgresql_statements_total") or 0 for n in pgs)
    res["exit"] = b.stop_procs(pgs)
    budget = [b.budget_statements(n) for n in pgs]
    budget_stmts, waits = [x[0] for x in budget], [x[1] for x in budget]
    time.sleep(1.0)  # the backends' statistics are flushed as they exit
    xacts = b.pg_xacts() - b.xact0
    n = requests["postgresql"]
    res["queries"] = {"requests": n, "server_xacts": xacts, "ledger_statements": ledger_stmts,
                      "budget_statements": budget_stmts, "lease_waits": waits,
                      "server_per_request": xacts / n if n else None,
                      "orproxy_per_request": (ledger_stmts + sum(x or 0 for x in budget_stmts)) / n
                      if n else None}
    res["exit"].update(b.stop_procs(["sqlite-a", "sqlite-b"]))
    res["config"]["loadavg_end"] = os.getloadavg()
    return res


def table(res):
    rows = [["figure", "sqlite", "postgresql", "postgresql / sqlite"]]
    for c in (1, 64):
        d = res["c%d" % c]
        for key, label, fmt in (("p50_us", "latency p50", "%.0f us"),
                                ("p99_us", "latency p99", "%.0f us"),
                                ("rps", "throughput", "%.0f req/s")):
            s, p = d["sqlite"][key], d["postgresql"][key]
            rows.append(["%s, c=%d" % (label, c), fmt % s, fmt % p,
                         "%.2f" % (p / s) if s else "-"])
        rows.append(["errors, c=%d" % c, str(d["sqlite"]["errors"]), str(d["postgresql"]["errors"]),
                     ""])
    q = res["queries"]
    rows.append(["database transactions per request (server)", "", "%.4f (%d / %d)" %
                 (q["server_per_request"] or 0, q["server_xacts"], q["requests"]), "target << 1"])
    rows.append(["statements per request (orproxy: ledger + budgets)", "", "%.4f (%d + %s)" %
                 (q["orproxy_per_request"] or 0, q["ledger_statements"],
                  " + ".join(str(x) for x in q["budget_statements"])), ""])
    rows.append(["requests that waited for a lease", "", " + ".join(
        str(x) for x in q["lease_waits"]), "(a burst's first)"])
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    fmt = lambda r: "| " + " | ".join(r[i].ljust(w[i]) for i in range(4)) + " |"
    return "\n".join([fmt(rows[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|"] +
                     [fmt(r) for r in rows[1:]])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orproxy", required=True)
    ap.add_argument("--fakeup", required=True)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--out", default="bench-pg-results.json")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--workers", type=int, default=1,
                    help="workers per instance (default 1: four instances share the cores)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--duration", type=int, default=None, help="seconds per wrk run")
    ap.add_argument("--smoke", action="store_true", help="1 round of 1 s: proves it works")
    a = ap.parse_args()
    a.rounds = a.rounds or (1 if a.smoke else 5)
    a.duration = a.duration or (1 if a.smoke else 5)
    for tool in (a.wrk, "psql"):
        if not shutil.which(tool):
            sys.exit("bench-pg: %s not found (make deps-bench, make deps-test)" % tool)
    b = PgBench(a)
    t0 = time.time()
    try:
        b.start()
        res = run(b, a)
    finally:
        b.stop()
    res["wall_s"] = round(time.time() - t0, 1)
    res["table"] = table(res)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print("two orproxy instances on one PostgreSQL against two on SQLite, %d round(s) of %d s, "
          "load average %.1f at the start, %.1f at the end\n\n%s\n\nraw numbers in %s; %.0f s" %
          (a.rounds, a.duration, res["config"]["loadavg_start"][0],
           res["config"]["loadavg_end"][0], res["table"], a.out, res["wall_s"]))
    bad = [n for n, rc in res["exit"].items() if rc != 0]
    errors = sum(res["c%d" % c][k]["errors"] for c in (1, 64) for k in BACKENDS)
    if bad or errors:
        print("bench-pg: %s (logs in %s)" % (
            ", ".join(["%s exit %s" % (n, res["exit"][n]) for n in bad] +
                      (["%d failed requests" % errors] if errors else [])), b.root))
        return 1
    shutil.rmtree(b.root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

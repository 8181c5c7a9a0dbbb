#!/usr/bin/env python3
"""orproxy benchmark driver (`make bench`, `make bench-smoke`).

Starts, on 127.0.0.1 only: the fast fake upstream (bench/fakeup), nginx as a
plain reverse proxy in front of it (proxy_pass, upstream keep-alive,
proxy_buffering off, access log off: nginx at its fastest), and orproxy in
front of it as users run it (ledger on, info log to a file).  Then measures
the three paths -- direct, nginx, orproxy -- in the same run, interleaved
round by round, with wrk (bench/chat.lua) for request latency and
throughput and bench/streamload for streams.

It does that twice: against a TLS upstream, as users run it (OpenRouter is
HTTPS), and against a plaintext one.  For the TLS upstream the fake serves
HTTPS with a certificate for 127.0.0.1 signed by a CA made at the start
(openssl CLI, under the work directory); nginx (proxy_ssl_verify on,
proxy_ssl_trusted_certificate, proxy_ssl_session_reuse) and orproxy
(upstream.ca_file) both verify it through that CA file, both keep upstream
connections alive; the direct path is HTTPS too (wrk over https, streamload
-s).  Clients talk plain HTTP to both proxies.  Prints one table per upstream
(TLS first: the headline) with every figure next to its target, and writes
all raw numbers to a JSON file.

Every run is bounded: each load has a duration or a count and a timeout,
and every process started here is stopped on exit.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PATHS = ("direct", "nginx", "orproxy")
ORPROXIES = ("before", "orproxy")  # "before": an earlier build, with --before
KIB = 1024


LOG_TAG = [""]  # the upstream being measured, in front of each progress line


def log(msg):
    print(LOG_TAG[0] + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (proc.args[0], proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def proc_status(pid):
    """VmRSS, RssAnon, RssFile in KiB, and the open descriptor count."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    out["fds"] = len(os.listdir("/proc/%d/fd" % pid))
    return out


def uss(pid, fields=("Private_Clean:", "Private_Dirty:")):
    """Private memory (USS) of a process in KiB: Private_Clean + Private_Dirty from
    smaps_rollup, what one more instance really costs (shared library pages excluded).
    A library page counts as private while no other process maps it, so on a machine
    where nothing else uses libcurl, OpenSSL, GnuTLS or SQLite the first instance's USS
    holds every library page it touched; fields=("Private_Dirty:",) leaves those out:
    heap, stacks and the libraries' relocated data, what a second instance costs."""
    kb = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith(fields):
                kb += int(line.split()[1])
    return kb


def group_uss(pid):
    return sum(uss(p) for p in [pid] + children(pid))


def stop_procs(procs):
    """SIGTERM every process group still running (newest first), then wait for each,
    SIGKILL after 15 s."""
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wrk_result(out, what):
    """The BENCHJSON line bench/chat.lua prints at the end of a wrk run, with req/s
    and the errors of every kind summed."""
    for line in out.splitlines():
        if line.startswith("BENCHJSON "):
            r = json.loads(line[len("BENCHJSON "):])
            r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
            r["errors"] = (r["connect_errors"] + r["read_errors"] + r["write_errors"]
                           + r["timeouts"] + r["non2xx"])
            return r
    raise RuntimeError("wrk printed no result for %s: %s" % (what, out[-500:]))


def make_ca(d):
    """A throwaway CA and a certificate for IP 127.0.0.1 it signed (EC P-256, 2 days),
    in d: ca.pem, server.pem, server.key."""
    os.makedirs(d, exist_ok=True)
    q = dict(cwd=d, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    subprocess.run(["openssl", "req", "-x509"] + ec + ["-keyout", "ca.key", "-out", "ca.pem",
                    "-days", "2", "-subj", "/CN=orproxy-bench-ca",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign"], **q)
    subprocess.run(["openssl", "req", "-new"] + ec + ["-keyout", "server.key", "-out",
                    "server.csr", "-subj", "/CN=127.0.0.1"], **q)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n")
    subprocess.run(["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey",
                    "ca.key", "-CAcreateserial", "-days", "2", "-extfile", "server.ext",
                    "-out", "server.pem"], **q)
    return {k: os.path.join(d, k + ".pem") for k in ("ca", "server")} | \
        {"key": os.path.join(d, "server.key")}


def knows_ca_file(binary):
    """Whether an orproxy build has upstream.ca_file (an earlier build may not)."""
    try:
        out = subprocess.run([binary, "--settings"], capture_output=True, text=True, timeout=10)
        return "upstream.ca_file" in out.stdout + out.stderr
    except OSError:
        return False


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def group_rss(pid):
    """RSS of a process and its children (nginx: master + workers), KiB."""
    return sum(proc_status(p)["VmRSS"] for p in [pid] + children(pid))


class Sampler(threading.Thread):
    """Samples the RSS of a process group every 100 ms; keeps the peak."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop_ev = pid, 0, threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.peak = max(self.peak, group_rss(self.pid))
            except OSError:
                pass
            self.stop_ev.wait(0.1)

    def stop(self):
        self.stop_ev.set()
        self.join()
        return self.peak


class Bench:
    def __init__(self, args, root, tls=None):
        """tls: None for the plaintext upstream, else make_ca()'s files."""
        self.a = args
        self.tls = tls
        self.dir = os.path.join(root, "tls" if tls else "plain")
        os.makedirs(self.dir)
        self.procs = []
        self.ports = {}
        # Every path is measured in each round, one after the other.  An earlier build
        # without upstream.ca_file cannot verify the TLS upstream: it sits that one out.
        before = args.before and (not tls or knows_ca_file(args.before))
        self.skipped = [] if before or not args.before else ["before"]
        self.paths = ["direct", "nginx"] + (["before"] if before else []) + ["orproxy"]
        self.orp = {}

    # ---- processes -------------------------------------------------------
    def spawn(self, name, argv, env=None, **kw):
        logf = open(os.path.join(self.dir, name + ".log"), "w")
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, env=env,
                             preexec_fn=os.setsid, **kw)
        self.procs.append(p)
        return p

    def start(self):
        fp = self.ports["direct"] = free_port()
        tls_args = ["--tls", self.tls["server"], self.tls["key"]] if self.tls else []
        self.fake = self.spawn("fakeup", [self.a.fakeup, str(fp)] + tls_args)
        wait_port(fp, self.fake)

        np_ = self.ports["nginx"] = free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=np_, fake=fp, workers=self.a.workers,
                                      scheme="https" if self.tls else "http",
                                      tls=NGINX_TLS.format(ca=self.tls["ca"]) if self.tls else ""))
        self.nginx = self.spawn("nginx", [self.a.nginx, "-p", self.dir, "-c", conf])
        wait_port(np_, self.nginx)

        for name in ORPROXIES:
            if name in self.paths:
                self.start_orproxy(name, fp)
        self.orproxy = self.orp["orproxy"]

    def start_orproxy(self, name, fake_port):
        op = self.ports[name] = free_port()
        conf = os.path.join(self.dir, name + ".conf")
        state = os.path.join(self.dir, "state-" + name)
        os.makedirs(state, exist_ok=True)
        with open(conf, "w") as f:
            f.write(ORPROXY_CONF.format(state=state, port=op, fake=fake_port,
                                        workers=self.a.workers,
                                        scheme="https" if self.tls else "http",
                                        ca='ca_file = "%s";' % self.tls["ca"] if self.tls else ""))
        env = dict(os.environ, OPENROUTER_API_KEY="sk-or-v1-bench-upstream-key")
        env.pop("STATE_DIRECTORY", None)
        binary = self.a.before if name == "before" else self.a.orproxy
        self.orp[name] = self.spawn(name, [binary, "-c", conf], env=env)
        wait_port(op, self.orp[name])

    def stop(self):
        stop_procs(self.procs)

    def url(self, path):
        port = self.ports[path]
        if path in ORPROXIES:
            return "http://127.0.0.1:%d/v1/chat/completions" % port
        if path == "direct" and self.tls:
            return "https://127.0.0.1:%d/api/v1/chat/completions" % port
        return "http://127.0.0.1:%d/api/v1/chat/completions" % port

    def stream_path(self, path):
        return "/v1/chat/completions" if path in ORPROXIES else "/api/v1/chat/completions"

    # ---- load tools ------------------------------------------------------
    def wrk(self, path, conns, seconds):
        threads = 1 if conns == 1 else 2
        argv = [self.a.wrk, "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds, "--timeout", "10s",
                "-s", os.path.join(HERE, "chat.lua"), self.url(path)]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
        return wrk_result(out, path)

    def streams(self, path, conc, chunks, interval_ms, ramp=0, timeout=None):
        if timeout is None:
            timeout = int(chunks * interval_ms / 1000 + (conc / ramp if ramp else 0) + 30)
        argv = [self.a.streamload, "-p", str(self.ports[path]), "-P", self.stream_path(path),
                "-c", str(conc), "-n", str(chunks), "-i", str(interval_ms), "-t", str(timeout)]
        if ramp:
            argv += ["-r", str(ramp)]
        if path == "direct" and self.tls:
            argv += ["-s", self.tls["ca"]]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 30)
        if out.returncode != 0:
            raise RuntimeError("streamload failed: %s" % out.stderr[-500:])
        r = json.loads(out.stdout)
        r["lost"] = r["chunks_expected"] - r["chunks_received"]
        return r

    def pid(self, path):
        return {"direct": self.fake, "nginx": self.nginx, **self.orp}[path].pid

    def settle(self, seconds=None):
        time.sleep(self.a.settle if seconds is None else seconds)


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def run(b, a):
    res = {"config": {"smoke": a.smoke, "workers": a.workers, "rounds": a.rounds,
                      "duration_s": a.duration, "cores": os.cpu_count(),
                      "upstream": "tls" if b.tls else "plain"}}
    if b.skipped:
        res["skipped"] = b.skipped
        log("%s upstream: --before has no upstream.ca_file, so it sits this one out" %
            res["config"]["upstream"])
    paths_all = list(b.paths)
    res["paths"] = paths_all

    b.settle(a.idle_settle)
    res["idle"] = {"nginx_kib": group_rss(b.nginx.pid), "nginx_uss_kib": group_uss(b.nginx.pid),
                   "fake_kib": proc_status(b.fake.pid)["VmRSS"], "fake_uss_kib": uss(b.fake.pid)}
    for name, proc in b.orp.items():
        s = res["idle"][name] = proc_status(proc.pid)
        s["USS"] = uss(proc.pid)
        s["Private_Dirty"] = uss(proc.pid, ("Private_Dirty:",))
        log("idle: %s VmRSS %d KiB (anon %d, file %d), USS %d KiB (Private_Dirty %d), %d fds" %
            (name, s["VmRSS"], s["RssAnon"], s["RssFile"], s["USS"], s["Private_Dirty"], s["fds"]))

    if a.only != "memory":
        timing(b, a, res, paths_all)
    slow_and_after(b, a, res, paths_all)
    return res


def timing(b, a, res, paths_all):
    """Latency, throughput, streams and sustained streams: the CPU-bound rounds
    (left out by --only memory)."""
    # warm every path (connections, page cache, orproxy's price table)
    if not a.smoke:
        for p in paths_all:
            b.wrk(p, 4, 1)

    # 1. latency at concurrency 1
    lat = {p: [] for p in paths_all}
    for rnd in range(a.rounds):
        for p in paths_all:
            lat[p].append(b.wrk(p, 1, a.duration))
            log("c=1 round %d %-8s p50 %5d us  p99 %5d us  %7.0f req/s" %
                (rnd, p, lat[p][-1]["p50_us"], lat[p][-1]["p99_us"], lat[p][-1]["rps"]))
    res["latency_c1"] = {p: {"runs": lat[p], "p50_us": med(lat[p], "p50_us"),
                             "p99_us": med(lat[p], "p99_us"), "rps": med(lat[p], "rps"),
                             "errors": sum(r["errors"] for r in lat[p])} for p in paths_all}

    # 2. throughput at concurrency 64, and the sweep
    thr = {p: [] for p in paths_all}
    for rnd in range(a.rounds):
        for p in paths_all:
            thr[p].append(b.wrk(p, 64, a.duration))
            log("c=64 round %d %-8s %7.0f req/s  p99 %6d us" %
                (rnd, p, thr[p][-1]["rps"], thr[p][-1]["p99_us"]))
    res["throughput_c64"] = {p: {"runs": thr[p], "rps": med(thr[p], "rps"),
                                 "p99_us": med(thr[p], "p99_us"),
                                 "errors": sum(r["errors"] for r in thr[p])} for p in paths_all}
    sweep = {}
    for c in a.sweep:
        sweep[c] = {}
        for p in paths_all:
            r = b.wrk(p, c, a.sweep_duration)
            sweep[c][p] = {"rps": r["rps"], "p99_us": r["p99_us"], "errors": r["errors"]}
            log("sweep c=%-3d %-8s %7.0f req/s  p99 %6d us" % (c, p, r["rps"], r["p99_us"]))
    res["sweep"] = sweep

    # 3. streaming: 100 streams x 64 chunks every 20 ms
    st = {p: [] for p in paths_all}
    for rnd in range(a.rounds):
        for p in paths_all:
            st[p].append(b.streams(p, a.stream_conc, a.stream_chunks, 20))
            r = st[p][-1]
            log("stream round %d %-8s ttfc p50 %6d us  gap p50 %6d p99 %6d us  transit p50 %5d "
                "p99 %5d us  lost %d" % (rnd, p, r["ttfc_us"]["p50"], r["gap_us"]["p50"],
                                         r["gap_us"]["p99"], r["transit_us"]["p50"],
                                         r["transit_us"]["p99"], r["lost"]))
    res["streaming"] = {}
    for p in paths_all:
        rs = st[p]
        res["streaming"][p] = {
            "runs": rs,
            "ttfc_p50_us": statistics.median(r["ttfc_us"]["p50"] for r in rs),
            "gap_p50_us": statistics.median(r["gap_us"]["p50"] for r in rs),
            "gap_p99_us": statistics.median(r["gap_us"]["p99"] for r in rs),
            "transit_p50_us": statistics.median(r["transit_us"]["p50"] for r in rs),
            "transit_p99_us": statistics.median(r["transit_us"]["p99"] for r in rs),
            "lost": sum(r["lost"] for r in rs),
        }

    # 4. most concurrent 20 ms streams with every chunk and no gap over 10x
    res["sustained"] = {}
    for p in paths_all:
        best, tried = 0, []
        for level in a.levels:
            r = b.streams(p, level, a.sustain_chunks, 20, ramp=a.ramp)
            ok = (r["complete"] == level and r["lost"] == 0 and r["gap_us"] is not None
                  and r["gap_us"]["max"] <= 10 * 20 * 1000)
            tried.append({"streams": level, "ok": ok, "complete": r["complete"],
                          "lost": r["lost"], "gap_max_us": (r["gap_us"] or {}).get("max"),
                          "gap_p99_us": (r["gap_us"] or {}).get("p99")})
            log("sustain %-8s %5d streams: %s (complete %d, lost %d, max gap %s us)" %
                (p, level, "ok" if ok else "FAIL", r["complete"], r["lost"],
                 tried[-1]["gap_max_us"]))
            b.settle()
            if not ok:
                break
            best = level
        res["sustained"][p] = {"best": best, "tried": tried}


def slow_and_after(b, a, res, paths_all):
    """The memory rounds: RSS per slow stream, then memory once the load stops."""
    # 5. many slow streams: RSS per stream
    res["slow"] = {}
    for p in paths_all:
        pid = b.pid(p)
        before = group_rss(pid)
        sampler = Sampler(pid)
        sampler.start()
        r = b.streams(p, a.slow_conc, a.slow_chunks, a.slow_interval, ramp=a.slow_ramp)
        peak = sampler.stop()
        per = (peak - before) * KIB / a.slow_conc
        res["slow"][p] = {"streams": a.slow_conc, "complete": r["complete"], "lost": r["lost"],
                          "rss_before_kib": before, "rss_peak_kib": peak,
                          "bytes_per_stream": per, "gap_max_us": (r["gap_us"] or {}).get("max")}
        log("slow %-8s %d streams: complete %d, RSS %d -> %d KiB, %.0f B/stream" %
            (p, a.slow_conc, r["complete"], before, peak, per))
        b.settle()

    # 6. RSS after the load stops (orproxy trims its heap after 2 s idle)
    b.settle(a.idle_settle)
    res["after"] = {"nginx_kib": group_rss(b.nginx.pid), "nginx_uss_kib": group_uss(b.nginx.pid)}
    for name, proc in b.orp.items():
        s = res["after"][name] = proc_status(proc.pid)
        s["USS"] = uss(proc.pid)
        log("after: %s VmRSS %d KiB (anon %d, file %d), USS %d KiB, %d fds" %
            (name, s["VmRSS"], s["RssAnon"], s["RssFile"], s["USS"], s["fds"]))


def timing_rows(res, a, row):
    """table()'s rows of the timing rounds."""
    L, S, T = res["latency_c1"], res["streaming"], res["throughput_c64"]
    tls = res["config"]["upstream"] == "tls"

    def added(d, p, key):
        return d[p][key] - d["direct"][key]

    us = lambda v: "%.0f us" % v
    row("added latency p50, c=1", lambda p: us(added(L, p, "p50_us")), "<= nginx",
        added(L, "orproxy", "p50_us") <= added(L, "nginx", "p50_us"),
        base=us(L["direct"]["p50_us"]) + " (base)")
    row("added latency p99, c=1", lambda p: us(added(L, p, "p99_us")), "<= 2 x nginx",
        added(L, "orproxy", "p99_us") <= 2 * added(L, "nginx", "p99_us"),
        base=us(L["direct"]["p99_us"]) + " (base)")
    ratio = lambda p: T[p]["rps"] / T["nginx"]["rps"] if T["nginx"]["rps"] else 0
    want = 1.0 if tls else 0.8
    row("throughput c=64 (req/s)",
        lambda p: "%.0f" % T[p]["rps"] + (" (x%.2f)" % ratio(p) if p in ORPROXIES else ""),
        "orproxy/nginx >= %.1f" % want, ratio("orproxy") >= want)
    row("p99 at c=64", lambda p: us(T[p]["p99_us"]))
    for c, v in res["sweep"].items():
        row("  sweep c=%s (req/s)" % c, lambda p, v=v: "%.0f" % v[p]["rps"])
    row("added time to 1st chunk p50 (%d streams)" % a.stream_conc,
        lambda p: us(added(S, p, "ttfc_p50_us")), "<= nginx",
        added(S, "orproxy", "ttfc_p50_us") <= added(S, "nginx", "ttfc_p50_us"),
        base=us(S["direct"]["ttfc_p50_us"]) + " (base)")
    row("added inter-chunk gap p50", lambda p: us(added(S, p, "gap_p50_us")),
        base=us(S["direct"]["gap_p50_us"]) + " (base)")
    row("added inter-chunk gap p99 (%d streams)" % a.stream_conc,
        lambda p: us(added(S, p, "gap_p99_us")), "<= nginx",
        added(S, "orproxy", "gap_p99_us") <= added(S, "nginx", "gap_p99_us"),
        base=us(S["direct"]["gap_p99_us"]) + " (base)")
    row("chunk transit p50 / p99",
        lambda p: "%d / %d us" % (S[p]["transit_p50_us"], S[p]["transit_p99_us"]))
    row("lost chunks (%d streams x %d, %d rounds)" % (a.stream_conc, a.stream_chunks, a.rounds),
        lambda p: str(S[p]["lost"]), "0", S["orproxy"]["lost"] == 0)
    su = res["sustained"]
    row("20 ms streams sustained, 0 lost",
        lambda p: str(su[p]["best"]) + (" (max tried)" if su[p]["best"] == a.levels[-1] else ""),
        ">= nginx", su["orproxy"]["best"] >= su["nginx"]["best"])


def table(res, a):
    """Returns (text, checks): the figures of every path side by side, and whether
    orproxy (the build under test) met each target (the targets of issue 15).  With
    --before, the earlier build's column sits next to it, measured in the same rounds."""
    SL = res["slow"]
    paths = res["paths"]
    rows, checks = [], []

    def row(fig, cell, target="", met=None, base=None):
        """cell(p) gives path p's text; base, if given, is direct's (the baseline)."""
        cells = [base if (base is not None and p == "direct") else cell(p) for p in paths]
        rows.append([fig] + cells + [target, "" if met is None else ("yes" if met else "NO")])
        if met is not None:
            checks.append(met)

    if "latency_c1" in res:  # not with --only memory
        timing_rows(res, a, row)
    row("%d streams paced %d ms complete" % (a.slow_conc, a.slow_interval),
        lambda p: str(SL[p]["complete"]), "all", SL["orproxy"]["complete"] == a.slow_conc)
    kib = lambda v: "%.1f KiB" % (v / KIB)
    row("RSS per slow stream", lambda p: kib(SL[p]["bytes_per_stream"]), "<= 16 KiB",
        SL["orproxy"]["bytes_per_stream"] <= 16 * KIB)

    def mem(when, p):
        if p in ORPROXIES:
            r = res[when][p]
            return "%d / %d KiB (%d + %d)" % (r["USS"], r["VmRSS"], r["RssAnon"], r["RssFile"])
        if p == "nginx":
            return "%d / %d KiB" % (res[when]["nginx_uss_kib"], res[when]["nginx_kib"])
        if when == "idle":
            return "%d / %d KiB" % (res[when]["fake_uss_kib"], res[when]["fake_kib"])
        return ""
    row("idle USS / RSS (orproxy RSS: anon + file)", lambda p: mem("idle", p), "USS <= 3 MiB",
        res["idle"]["orproxy"]["USS"] <= 3 * KIB)
    row("idle Private_Dirty (a 2nd instance's USS)",
        lambda p: "%d KiB" % res["idle"][p]["Private_Dirty"] if p in ORPROXIES else "")
    row("USS / RSS after load", lambda p: mem("after", p))

    head = ["figure"] + paths + ["target", "met"]
    n = len(head)
    w = [max(len(str(r[i])) for r in rows + [head]) for i in range(n)]
    fmt = lambda r: "| " + " | ".join(str(r[i]).ljust(w[i]) for i in range(n)) + " |"
    lines = [fmt(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [fmt(r) for r in rows]
    return "\n".join(lines), checks


NGINX_CONF = """\
daemon off;
worker_processes {workers};
worker_rlimit_nofile 20000;
error_log {dir}/nginx-error.log warn;
pid {dir}/nginx.pid;
events {{ worker_connections 20000; }}
http {{
    access_log off;
    client_body_temp_path {dir}/nginx-body;
    proxy_temp_path {dir}/nginx-proxy;
    fastcgi_temp_path {dir}/nginx-fastcgi;
    uwsgi_temp_path {dir}/nginx-uwsgi;
    scgi_temp_path {dir}/nginx-scgi;
    upstream fake {{ server 127.0.0.1:{fake}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        location / {{
            proxy_pass {scheme}://fake;{tls}
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer sk-or-v1-bench-upstream-key";
            proxy_buffering off;
            proxy_read_timeout 120s;
        }}
    }}
}}
"""

# The TLS upstream: verify it through the CA file (the name is the IP in its certificate),
# reuse sessions; keep-alive comes from the upstream block above.
NGINX_TLS = """
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {ca};
            proxy_ssl_name 127.0.0.1;
            proxy_ssl_session_reuse on;"""

ORPROXY_CONF = """\
listen = {{ address = "127.0.0.1"; port = {port}; }};
upstream = {{ base_url = "{scheme}://127.0.0.1:{fake}/api/v1"; api_key_env = "OPENROUTER_API_KEY";
  {ca} }};
limits = {{ max_connections = 20000; }};
workers = {workers};
log = {{ level = "info"; }};
state_dir = "{state}";
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orproxy", required=True)
    ap.add_argument("--before", default=None,
                    help="an earlier orproxy build, measured in the same rounds as --orproxy")
    ap.add_argument("--fakeup", required=True)
    ap.add_argument("--streamload", required=True)
    ap.add_argument("--wrk", default="wrk")
    ap.add_argument("--nginx", default="/usr/sbin/nginx")
    ap.add_argument("--out", default="bench-results.json")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--smoke", action="store_true", help="a ~10 s run that proves it all works")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--upstreams", default="tls,plain",
                    help="which upstreams to measure, in order: tls, plain or both (default)")
    ap.add_argument("--only", choices=("memory",), default=None,
                    help="memory: only idle memory, slow streams and memory after the load "
                         "(no latency, throughput or stream-timing rounds; fine on a busy machine)")
    a = ap.parse_args()
    a.upstreams = [u for u in a.upstreams.split(",") if u]
    if not a.upstreams or any(u not in ("tls", "plain") for u in a.upstreams):
        sys.exit("bench: --upstreams takes tls, plain or tls,plain")
    if a.smoke:
        a.rounds, a.duration, a.sweep, a.sweep_duration = 1, 1, [], 1
        a.stream_conc, a.stream_chunks = 20, 10
        a.levels, a.sustain_chunks, a.sustain_target, a.ramp = [50], 10, 50, 0
        a.slow_conc, a.slow_chunks, a.slow_ramp, a.settle = 200, 3, 0, 0.2
        a.slow_interval, a.idle_settle = 100, 0.5
    else:
        a.rounds, a.duration, a.sweep, a.sweep_duration = 3, 5, [1, 4, 16, 64, 256], 3
        a.stream_conc, a.stream_chunks = 100, 64
        a.levels = [1000, 2000, 3000, 4000, 5000, 6000]
        a.sustain_chunks, a.sustain_target, a.ramp = 64, 2000, 4000
        a.slow_conc, a.slow_chunks, a.slow_ramp, a.settle = 8000, 16, 2000, 1.0
        a.slow_interval, a.idle_settle = 1000, 3.0
    for tool in ((a.nginx,) if a.only == "memory" else (a.wrk, a.nginx)) + (("openssl",) if "tls" in a.upstreams else ()):
        if not shutil.which(tool):
            sys.exit("bench: %s not found (make bench installs wrk and nginx-light)" % tool)

    root = os.path.abspath(tempfile.mkdtemp(prefix="orproxy-bench-", dir=a.workdir))
    t0 = time.time()
    out = {"upstreams": a.upstreams}
    broken, texts, met, total = [], [], 0, 0
    tls_files = make_ca(os.path.join(root, "ca")) if "tls" in a.upstreams else None
    for up in a.upstreams:
        LOG_TAG[0] = "[%s] " % up
        b = Bench(a, root, tls_files if up == "tls" else None)
        t1 = time.time()
        try:
            b.start()
            res = run(b, a)
        finally:
            b.stop()
        res["orproxy_exit"] = b.orproxy.returncode
        if "before" in b.orp:
            res["before_exit"] = b.orp["before"].returncode
        res["wall_s"] = round(time.time() - t1, 1)
        text, checks = table(res, a)
        res["table"] = text
        res["targets_met"], res["targets"] = sum(checks), len(checks)
        out[up] = res
        met, total = met + sum(checks), total + len(checks)
        title = {"tls": "TLS upstream (HTTPS, verified through a CA file; the headline)",
                 "plain": "plaintext upstream (HTTP)"}[up]
        note = ("\n(--before has no upstream.ca_file: not measured against the TLS upstream)"
                if res.get("skipped") else "")
        texts.append("%s: %d of %d targets met, %.0f s\n\n%s%s" %
                     (title, sum(checks), len(checks), res["wall_s"], text, note))
        # A benchmark reports; it fails only when a path did not work at all.
        broken += ["%s %s" % (up, p) for p in b.paths
                   if "streaming" in res and (res["streaming"][p]["lost"]
                                              or res["latency_c1"][p]["errors"])]
        if res["orproxy_exit"] != 0:
            broken.append("%s orproxy exit %s" % (up, res["orproxy_exit"]))
    LOG_TAG[0] = ""
    out["wall_s"] = round(time.time() - t0, 1)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1)
    print("\n\n".join(texts))
    print("\n%d of %d targets met; raw numbers in %s; %.0f s in all" %
          (met, total, a.out, out["wall_s"]))
    if broken:
        print("bench: broken paths: %s (logs in %s)" % (", ".join(broken), root))
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

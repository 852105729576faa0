#!/usr/bin/env python3
"""minivmm benchmark runner (docs/benchmarking.md).

    bench.py run CONFIG [--out DIR | --resume DIR] [--repeats N] [--cells a,b]
                 [--binary LABEL=PATH ...] [--dry-run]
    bench.py boot [--runs 20] [--out DIR]
    bench.py ceiling

`run` expands the matrix, measures the physical ceilings (again before each
cell), runs every run and appends one JSON line per run to DIR/results.jsonl,
then renders DIR/index.md and DIR/plots/ (report.py, that folder only).
DIR is a new folder docs/results/NAME-YYYYmmddTHHMMSSZ/ (UTC) unless --out
names one; results already on disk never count as done, except with
--resume DIR, which runs only what DIR/results.jsonl lacks (an interrupted
matrix). Progress and ETA on stderr.

--binary LABEL=PATH (repeatable) runs every minivmm run once per binary
instead of once with this tree's ./minivmm, the binaries back to back, in the
order given on even repeats and rotated on odd ones (an A/B of two builds in
one session, with the same command lines). QEMU runs stay single.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchconf  # noqa: E402
import harness  # noqa: E402
import jsonl  # noqa: E402
import report  # noqa: E402

ROOT = harness.ROOT
CEILING = os.path.join(ROOT, "build", "bench", "ceiling")
MINIVMM = os.path.join(ROOT, "minivmm")
RESULTS_ROOT = os.path.join(ROOT, "docs", "results")
RESULTS_FILE = "results.jsonl"


class BenchError(Exception):
    """A run that cannot start; main() prints it and exits 2."""


def utc_stamp(t=None):
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def results_dir(name, out=None, resume=None, root=RESULTS_ROOT, now=None):
    """(folder, resuming) for a run of matrix NAME.

    A run measures afresh into a folder of its own, so that results already
    on disk (committed ones included) are never taken for this run's: NAME
    plus the UTC start time under ROOT, or OUT. Only RESUME (a folder or its
    results.jsonl) continues an earlier run."""
    if resume:
        d = os.path.abspath(resume)
        if os.path.basename(d) == RESULTS_FILE:
            d = os.path.dirname(d)
        if not os.path.isfile(os.path.join(d, RESULTS_FILE)):
            raise BenchError("--resume %s: no %s there" % (resume, RESULTS_FILE))
        return d, True
    d = os.path.abspath(out) if out else os.path.join(root, "%s-%s" % (name, utc_stamp(now)))
    objs, _ = jsonl.read_lines(os.path.join(d, RESULTS_FILE))
    if objs:
        raise BenchError("%s already holds results: --resume %s to continue that run, "
                         "or --out a new folder" % (d, d))
    return d, False


def parse_binaries(specs):
    """['old=/x/minivmm', ...] -> [(label, abspath)], in the order given."""
    out = []
    for spec in specs or ():
        label, sep, path = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", label) or not path:
            raise BenchError("--binary %r: want LABEL=PATH (label: letters, digits, _ . -)" % spec)
        if label in (l for l, _ in out):
            raise BenchError("--binary %s given twice" % label)
        path = os.path.abspath(path)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise BenchError("--binary %s: %s is not an executable file" % (label, path))
        out.append((label, path))
    return out


def with_binaries(runs, labels):
    """Every minivmm run once per binary label, back to back (so that the
    machine's drift hits the binaries alike), the order rotated by one each
    repeat (A B, B A, ...: neither always runs first); the label joins the
    run_id. QEMU runs are kept once. No labels: the runs unchanged."""
    if not labels:
        return runs
    out = []
    for r in runs:
        if not r["inputs"]["vmm"].startswith("minivmm"):
            out.append(r)
            continue
        k = r["repeat"] % len(labels)
        for label in list(labels[k:]) + list(labels[:k]):
            out.append(dict(r, binary=label, run_id="%s/bin=%s" % (r["run_id"], label)))
    return out


def binary_facts(label, path):
    """What the JSON line records of a --binary: its label, path, SHA-256 and
    the commit of the git tree it sits in (if any)."""
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    d = os.path.dirname(path)
    r = harness.sh(["git", "-C", d, "rev-parse", "HEAD"])
    dirty = harness.sh(["git", "-C", d, "status", "--porcelain", "--untracked-files=no"])
    return {"label": label, "path": path, "sha256": digest,
            "commit": r.stdout.strip() or None if r.returncode == 0 else None,
            "tree_dirty": bool(dirty.stdout.strip()) if r.returncode == 0 else None}


def plan(cfg, config_path, out=None, resume=None, repeats=None, cells=None,
         root=RESULTS_ROOT, now=None, binaries=None):
    """What `run` will do: {name, dir, results, runs, todo, resuming}.
    BINARIES: labels of --binary, in order (see with_binaries)."""
    runs = benchconf.expand(cfg, repeats)
    if cells:
        keep = set(cells.split(","))
        unknown = keep - {r["cell"] for r in runs}
        if unknown:
            raise BenchError("no cell %s in %s" % (", ".join(sorted(unknown)), config_path))
        runs = [r for r in runs if r["cell"] in keep]
    runs = with_binaries(runs, binaries)
    name = cfg["matrix"].get("name", os.path.splitext(os.path.basename(config_path))[0])
    d, resuming = results_dir(name, out, resume, root, now)
    results = os.path.join(d, RESULTS_FILE)
    done = set()
    if resuming:
        objs, _ = jsonl.read_lines(results)
        other = {o.get("matrix") for o in objs if o.get("kind") in ("run", "ceiling")} - {name}
        if other:
            raise BenchError("--resume %s: it holds matrix %s, not %s" % (
                d, ", ".join(sorted(map(str, other))), name))
        done = jsonl.done_run_ids(results)
    todo = [r for r in runs if r["run_id"] not in done]
    return {"name": name, "dir": d, "results": results, "runs": runs, "todo": todo,
            "resuming": resuming}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt_s(s):
    s = int(max(0, s))
    return "%dm%02ds" % (s // 60, s % 60) if s >= 60 else "%ds" % s


def build_ceiling():
    src = os.path.join(HERE, "ceiling.c")
    if not os.path.exists(CEILING) or os.path.getmtime(CEILING) < os.path.getmtime(src):
        os.makedirs(os.path.dirname(CEILING), exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", CEILING, src], check=True)


def measure_ceilings(links=()):
    """Memory bandwidth and single-stream TCP, in this run."""
    build_ceiling()
    out = {}
    for name, cmd in (("memcpy", [CEILING, "memcpy", "256", "8"]),
                      ("zeroscan", [CEILING, "zeroscan", "1024"]),
                      ("tcp_loopback", [CEILING, "tcp", "3"]),
                      ("tcp_fresh_loopback", [CEILING, "tcp-fresh", "1024"]),
                      ("tcp_mem_loopback", [CEILING, "tcp-mem", "1024"])):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        try:
            out[name] = json.loads(r.stdout)
        except ValueError:
            out[name] = {"error": r.stderr.strip()}
    for spec in links:
        key = "tcp_veth_%dmbit" % (spec["rate_bps"] // 1000000)
        link = harness.Link(spec, "c%d" % (os.getpid() % 1000))
        try:
            link.setup()
            srv = subprocess.Popen(link.prefix(1) + [CEILING, "tcp-server", link.addr[1], "5201"],
                                   stdout=subprocess.PIPE, text=True)
            srv.stdout.readline()
            subprocess.run(link.prefix(0) + [CEILING, "tcp-client", link.addr[1], "5201", "3"],
                           capture_output=True, timeout=30)
            out[key] = json.loads(srv.stdout.readline())
            srv.wait(5)
            out["rtt_veth_%dmbit" % (spec["rate_bps"] // 1000000)] = ping_rtt(link)
            out["pagereq_veth_%dmbit" % (spec["rate_bps"] // 1000000)] = page_floor(link)
        except (RuntimeError, ValueError, subprocess.SubprocessError) as e:
            out[key] = {"error": str(e)}
        finally:
            link.teardown()
    return out


def page_floor(link):
    """One 4 KiB page asked for and answered over the idle link, 500 times
    2 ms apart, between two plain processes: what a post-copy fault costs
    on this machine with no VMM, guest or push around it."""
    srv = subprocess.Popen(link.prefix(1) + [CEILING, "page-server", link.addr[1], "5202"],
                           stdout=subprocess.PIPE, text=True)
    try:
        srv.stdout.readline()
        r = subprocess.run(link.prefix(0) + [CEILING, "page-client", link.addr[1], "5202", "500",
                                             "2000"], capture_output=True, text=True, timeout=60)
        return json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr.strip()[-200:]}
    except ValueError as e:
        return {"error": str(e)}
    finally:
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()
            srv.wait()


def ping_rtt(link):
    """The idle link's round trip (ICMP, 200 pings 2 ms apart): post-copy's
    fault latency is judged against one page's transfer time plus this."""
    r = subprocess.run(link.prefix(0) + ["ping", "-q", "-c", "200", "-i", "0.002", link.addr[1]],
                       capture_output=True, text=True, timeout=30)
    m = re.search(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms", r.stdout)
    if not m:
        return {"error": (r.stderr or r.stdout).strip()[-200:]}
    return {"min_ms": float(m.group(1)), "avg_ms": float(m.group(2)), "max_ms": float(m.group(3)),
            "mdev_ms": float(m.group(4))}


def ensure_env(need_qemu):
    """Install what the runs and their report need, or stop before measuring."""
    pk = dict(report.NEEDS)
    pk.update({"ip": "iproute2", "tc": "iproute2", "/usr/bin/time": "time", "ping": "iputils-ping"})
    if need_qemu:
        pk[harness.QEMU] = "qemu-system-x86"
    harness.ensure_packages(pk, log)
    missing = sorted({p for c, p in pk.items() if not shutil.which(c)})
    if missing:
        raise BenchError("missing and not installable: %s (as root: apt-get update && "
                         "apt-get install %s)" % (" ".join(missing), " ".join(missing)))
    if not os.path.exists(MINIVMM) or not os.path.exists(harness.guest_elf("dirty")):
        log("bench: building minivmm and guests (make)")
        subprocess.run(["make", "-C", ROOT, "-s", "all"], check=True)


def cmd_run(a):
    cfg = benchconf.load(a.config)
    binaries = parse_binaries(a.binary)
    p = plan(cfg, a.config, a.out, a.resume, a.repeats, a.cells,
             binaries=[l for l, _ in binaries])
    name, results, todo, runs = p["name"], p["results"], p["todo"], p["runs"]
    log("bench: matrix %s: %d runs, %d done, %d to do -> %s%s" % (
        name, len(runs), len(runs) - len(todo), len(todo), os.path.relpath(p["dir"], ROOT),
        " (resuming)" if p["resuming"] else ""))
    if a.dry_run:
        for r in todo:
            print(r["run_id"])
        return 0
    if not todo:
        return render(p["dir"])
    need_qemu = any(not r["inputs"]["vmm"].startswith("minivmm") for r in todo)
    ensure_env(need_qemu)
    os.makedirs(p["dir"], exist_ok=True)
    if not p["resuming"]:
        # the matrix as run, beside its results
        shutil.copyfile(a.config, os.path.join(p["dir"], "matrix.conf"))
    session = uuid.uuid4().hex[:12]
    facts = harness.machine_facts()
    bins = {l: binary_facts(l, path) for l, path in binaries}
    links = []
    for r in todo:
        spec = benchconf.parse_link(r["inputs"]["link"])
        if spec["kind"] == "veth" and spec not in links:
            links.append(spec)
    log("bench: measuring ceilings (memcpy, zero scan, single-stream TCP)")
    ceil = measure_ceilings(links)
    jsonl.append_line(results, {"kind": "ceiling", "schema": jsonl.SCHEMA_CEILING, "session": session,
                                "matrix": name, "machine": facts, "ceiling": ceil,
                                "config": os.path.relpath(os.path.abspath(a.config), ROOT),
                                "repeats_override": a.repeats, "cells": a.cells,
                                "binaries": [bins[l] for l, _ in binaries] or None})
    log("bench: memcpy %.1f GB/s, loopback TCP %.1f Gbit/s" % (
        ceil.get("memcpy", {}).get("memcpy_Bps", 0) / 1e9,
        ceil.get("tcp_loopback", {}).get("tcp_Bps", 0) * 8 / 1e9))
    est_default = float(cfg["matrix"].get("est_run_s", 15))
    durations = {}
    t_begin = time.monotonic()
    stop = {"flag": False}

    def on_sigint(sig, frm):
        stop["flag"] = True
        log("\nbench: interrupted; finishing the current run (Ctrl-C again to abort)")
        signal.signal(signal.SIGINT, signal.default_int_handler)

    signal.signal(signal.SIGINT, on_sigint)
    tty = sys.stderr.isatty()
    last_cell = todo[0]["cell"] if todo else None
    for k, run in enumerate(todo):
        if stop["flag"]:
            break
        # The machine's state drifts (its host reclaims memory lazily): each
        # cell's runs carry ceilings measured right before them.
        if run["cell"] != last_cell:
            last_cell = run["cell"]
            ceil = measure_ceilings(links)
            jsonl.append_line(results, {"kind": "ceiling", "schema": jsonl.SCHEMA_CEILING,
                                        "session": session, "matrix": name, "cell": last_cell,
                                        "machine": facts, "ceiling": ceil})
            log("bench: ceilings before cell %s: loopback TCP %.1f Gbit/s" % (
                last_cell, ceil.get("tcp_loopback", {}).get("tcp_Bps", 0) * 8 / 1e9))
        inp = run["inputs"]
        vm = inp["vmm"]
        est = {}
        for r in todo[k:]:
            v = r["inputs"]["vmm"]
            d = durations.get(v)
            est[v] = statistics.mean(d) if d else est_default
        left = sum(est[r["inputs"]["vmm"]] for r in todo[k:])
        label = run.get("binary")
        msg = "[%d/%d] %s %s rep %d | elapsed %s | ETA %s" % (
            k + 1, len(todo), run["cell"], vm + ("@" + label if label else ""), run["repeat"],
            fmt_s(time.monotonic() - t_begin), fmt_s(left))
        log(("\r\033[K" + msg) if tty else msg)
        typed = benchconf.typed_inputs(inp)
        # short: unix socket paths (QMP) are limited to 107 bytes
        workdir = os.path.join(ROOT, "build", "bench", "runs", name, "%s-%s-r%d-%s" % (
            run["cell"], vm + ("-" + label if label else ""), run["repeat"],
            hashlib.sha1(run["run_id"].encode()).hexdigest()[:8]))
        link = harness.Link(typed["link_spec"], "%d" % (os.getpid() % 10000))
        line = {"kind": "run", "schema": jsonl.SCHEMA_RUN, "session": session, "matrix": name,
                "run_id": run["run_id"], "cell": run["cell"], "repeat": run["repeat"],
                "axes": run["axes"], "inputs": typed, "machine": facts, "ceiling": ceil,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if label:
            line["binary"] = bins[label]
        t0 = time.monotonic()
        try:
            link.setup()
            ctx = harness.RunContext(run, typed, workdir, link,
                                     bins[label]["path"] if label else MINIVMM)
            res = harness.run_one(ctx)
            line["result"] = res
            oc = str(res.get("outcome"))
            line["status"] = "ok" if oc == "completed" else "failed"
        except Exception as e:  # one broken run must not stop the matrix
            line["status"] = "harness-error"
            line["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            link.teardown()
        line["wall_s"] = time.monotonic() - t0
        line["workdir"] = os.path.relpath(workdir, ROOT)
        durations.setdefault(vm, []).append(line["wall_s"])
        jsonl.append_line(results, line)
        r = line.get("result", {})
        brief = "outcome=%s total=%s ms downtime=%s ms gap=%s ms rounds=%s verify=%s" % (
            r.get("outcome"), _r(r.get("total_ms")), _r(r.get("downtime_ms")), _r(r.get("gap_ms")),
            r.get("rounds"), r.get("verify_pass")) if r else line.get("error")
        log(("\r\033[K" if tty else "") + "  %s %s: %s" % (
            run["cell"], vm + ("@" + label if label else ""), brief))
    log("bench: %d runs in %s; results in %s" % (sum(len(v) for v in durations.values()),
                                                  fmt_s(time.monotonic() - t_begin),
                                                  os.path.relpath(results, ROOT)))
    rc = render(p["dir"])
    if stop["flag"]:
        rel = os.path.relpath(p["dir"], ROOT)
        log("bench: interrupted; to finish this run: make ... BENCH_RESUME=%s, or "
            "bench.py run %s --resume %s" % (rel, a.config, rel))
        return 130
    return rc


def render(d):
    """This run's report, and no other: DIR/index.md and DIR/plots/."""
    rc = report.main([d])
    if rc:
        log("bench: the report of %s failed (exit %d)" % (os.path.relpath(d, ROOT), rc))
    return rc


def _r(x):
    return "%.1f" % x if isinstance(x, (int, float)) else str(x)


def time_cmd(cmd, timeout=120):
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = []
    rc, ru = harness.wait_rusage(p, timeout)
    t = time.monotonic() - t0
    if rc is None:
        harness.kill(p, signal.SIGKILL)
    out = p.stdout.read().decode("utf-8", "replace")
    return t, rc, ru, out


def cmd_boot(a):
    ensure_env(True)
    hello = harness.guest_elf("hello")
    counter = harness.guest_elf("counter")
    d, _ = results_dir("boot", a.out)
    results = os.path.join(d, RESULTS_FILE)
    facts = harness.machine_facts()
    mv_cmd = [MINIVMM, "--kernel", hello]
    q_cmd = [harness.QEMU, "-enable-kvm", "-nodefaults", "-display", "none", "-monitor", "none", "-m", "256M",
             "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", hello]
    times = {"minivmm": [], "qemu": []}
    bad = []
    for i in range(a.runs):
        for name, cmd in (("minivmm", mv_cmd), ("qemu", q_cmd)):
            t, rc, ru, out = time_cmd(cmd)
            if rc != 1 or "hello from" not in out:
                bad.append({"vmm": name, "rc": rc, "out": out[-200:]})
            times[name].append(t * 1000.0)
        log("[%d/%d] minivmm %.1f ms, qemu %.0f ms" % (i + 1, a.runs, times["minivmm"][-1], times["qemu"][-1]))
    rss = {}
    for label, vmm_cmd in (
            ("minivmm_2g", [MINIVMM, "--kernel", counter, "--mem", "2G", "--append", "count=5"]),
            ("minivmm_256m", [MINIVMM, "--kernel", counter, "--mem", "256M", "--append", "count=5"]),
            ("qemu_2g", [harness.QEMU, "-enable-kvm", "-nodefaults", "-display", "none", "-monitor", "none",
                         "-m", "2G", "-serial", "stdio", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                         "-kernel", counter, "-append", "count=5"])):
        tf = os.path.join(ROOT, "build", "bench", "time.out")
        os.makedirs(os.path.dirname(tf), exist_ok=True)
        # GNU time forks the VMM itself, so the peak RSS is the VMM's alone
        # (wait4's ru_maxrss from here would include this Python's image)
        t, rc, ru, out = time_cmd(["/usr/bin/time", "-f", "%M", "-o", tf] + vmm_cmd)
        try:
            with open(tf) as f:
                maxrss = int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            maxrss = None
        rss[label] = {"maxrss_kib": maxrss, "exit": rc, "wall_ms": t * 1000.0,
                      "command": vmm_cmd, "lines": len(out.splitlines())}
    line = {"kind": "boot", "schema": jsonl.SCHEMA_BOOT, "machine": facts, "runs": a.runs,
            "commands": {"minivmm": mv_cmd, "qemu": q_cmd}, "boot_ms": times, "rss": rss, "bad_runs": bad}
    jsonl.append_line(results, line)
    for name in times:
        v = sorted(times[name])
        print("%-8s boot-to-exit ms: median %.2f min %.2f max %.2f" % (name, statistics.median(v), v[0], v[-1]))
    print("ratio qemu/minivmm (medians): %.0fx" % (statistics.median(times["qemu"]) /
                                                   statistics.median(times["minivmm"])))
    for k, v in rss.items():
        print("peak RSS %-13s %s KiB (exit %s)" % (k, v["maxrss_kib"], v["exit"]))
    if bad:
        print("WARNING: %d runs did not print the hello line / exit 1" % len(bad))
    print("results in %s" % os.path.relpath(results, ROOT))
    return 0


def cmd_ceiling(a):
    print(json.dumps(measure_ceilings(), indent=1))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("config")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--out", metavar="DIR", help="new results folder (default: "
                       "docs/results/NAME-UTCSTAMP/)")
    where.add_argument("--resume", metavar="DIR", help="continue the run in DIR: only the runs "
                       "its results.jsonl lacks")
    r.add_argument("--repeats", type=int)
    r.add_argument("--cells")
    r.add_argument("--binary", action="append", metavar="LABEL=PATH",
                   help="run every minivmm run with each of these binaries in turn "
                   "(repeatable; default: this tree's ./minivmm)")
    r.add_argument("--dry-run", action="store_true")
    b = sub.add_parser("boot")
    b.add_argument("--runs", type=int, default=20)
    b.add_argument("--out", metavar="DIR", help="default: docs/results/boot-UTCSTAMP/")
    sub.add_parser("ceiling")
    a = ap.parse_args()
    if os.geteuid() != 0 and a.cmd == "run":
        log("bench: note: network namespaces and apt-get need root")
    try:
        return {"run": cmd_run, "boot": cmd_boot, "ceiling": cmd_ceiling}[a.cmd](a)
    except (BenchError, benchconf.ConfigError) as e:
        log("bench: error: %s" % e)
        return 2


if __name__ == "__main__":
    sys.exit(main())

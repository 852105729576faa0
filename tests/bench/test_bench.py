#!/usr/bin/env python3
"""Unit tests of the benchmark suite (run by `make test`): config parser,
JSON-line writer, dirty-trace format (Python and C sides), replay tool,
report helpers, where a run writes its results and its report, and that
every relative link in docs/ leads to a file. Prints 'N passed, N failed'
last; exits non-zero on failure."""

import calendar
import contextlib
import glob
import io
import re

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import bench  # noqa: E402
import bench_net  # noqa: E402
import benchconf  # noqa: E402
import jsonl  # noqa: E402
import report  # noqa: E402
import replay  # noqa: E402
import tracefmt  # noqa: E402

SAMPLE_CONF = """
# a comment
name = t            # matrix name
[defaults]
repeats = 2
mem = 256M
[cell a]
vmm = minivmm, qemu
wss = 0, 64         # axis
[cell b]
link = veth:1gbit
rate = 1000
repeats = 1
"""


class ConfigTests(unittest.TestCase):
    def test_parse_and_expand(self):
        cfg = benchconf.parse(SAMPLE_CONF)
        self.assertEqual(cfg["matrix"]["name"], "t")
        runs = benchconf.expand(cfg)
        # a: 2 wss x 2 repeats x 2 vmms; b: 1 x 1 x 1 (vmm default minivmm)
        self.assertEqual(len(runs), 9)
        ids = [r["run_id"] for r in runs]
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual(runs[0]["inputs"]["vmm"], "minivmm")
        self.assertEqual(runs[1]["inputs"]["vmm"], "qemu")  # interleaved
        self.assertEqual(runs[0]["inputs"]["mem"], "256M")
        self.assertEqual(runs[-1]["inputs"]["link"], "veth:1gbit")
        self.assertEqual(runs[0]["axes"], ["wss"])
        t = benchconf.typed_inputs(runs[-1]["inputs"])
        self.assertEqual(t["mem"], 256 << 20)
        self.assertEqual(t["rate"], 1000)
        self.assertEqual(t["link_spec"], {"kind": "veth", "rate_bps": 1000000000})
        self.assertEqual(len(benchconf.expand(cfg, repeats_override=1)), 5)

    def test_ids_stable(self):
        a = [r["run_id"] for r in benchconf.expand(benchconf.parse(SAMPLE_CONF))]
        b = [r["run_id"] for r in benchconf.expand(benchconf.parse(SAMPLE_CONF))]
        self.assertEqual(a, b)

    def test_errors_name_the_line(self):
        bad = {
            "[cell a]\nwss = lots\n": ":2: wss",
            "[cell a]\nfoo = 1\n": "unknown key 'foo'",
            "[cell a]\nmem = 12Q\n": "bad size",
            "[cell a]\n[cell a]\n": "duplicate cell",
            "[cell a]\nvmm = vbox\n": "unknown 'vbox'",
            "[cell a]\nlink = veth:fast\n": "bad link rate",
            "[cell a]\nwss = 1,,2\n": "empty value",
            "[cell a]\nwss = 1\nwss = 2\n": "given twice",
            "[cell a]\njust words\n": "expected key = value",
            "[defaults]\nmem = 1G\n": "no [cell",
            "bogus = 1\n[cell a]\n": "unknown matrix key",
            "[cell a]\nrepeats = 1, 2\n": "one value",
        }
        for text, msg in bad.items():
            with self.assertRaises(benchconf.ConfigError, msg=text) as cm:
                benchconf.parse(text)
            self.assertIn(msg, str(cm.exception), text)

    def test_sizes(self):
        self.assertEqual(benchconf.parse_size("2G"), 2 << 30)
        self.assertEqual(benchconf.parse_size("512m"), 512 << 20)
        self.assertEqual(benchconf.parse_size("0"), 0)
        self.assertEqual(benchconf.parse_link("veth:10gbit:2ms")["rtt_ms"], 2.0)

    def test_shipped_configs_parse(self):
        for name in ("matrix-quick.conf", "matrix-default.conf", "matrix-migrate.conf"):
            p = os.path.join(HERE, name)
            if os.path.exists(p):
                runs = benchconf.expand(benchconf.load(p))
                self.assertTrue(runs, name)


class JsonlTests(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()
        self.p = os.path.join(self.d, "sub", "r.jsonl")

    def tearDown(self):
        shutil.rmtree(self.d)

    def test_append_and_read(self):
        jsonl.append_line(self.p, {"kind": "run", "run_id": "a", "x": float("nan"), "s": "é\n"})
        jsonl.append_line(self.p, {"kind": "run", "run_id": "b", "status": "harness-error"})
        with open(self.p) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 2)
        objs, bad = jsonl.read_lines(self.p)
        self.assertEqual(bad, 0)
        self.assertIsNone(objs[0]["x"])
        self.assertEqual(objs[0]["s"], "é\n")
        self.assertEqual(jsonl.done_run_ids(self.p), {"a"})  # harness errors are redone

    def test_torn_line(self):
        jsonl.append_line(self.p, {"kind": "run", "run_id": "a"})
        with open(self.p, "a") as f:
            f.write('{"kind":"run","run_id":"tor')
        jsonl.append_line(self.p, {"kind": "run", "run_id": "c"})
        objs, bad = jsonl.read_lines(self.p)
        self.assertEqual(bad, 1)
        self.assertEqual([o["run_id"] for o in objs], ["a", "c"])

    def test_missing_file(self):
        self.assertEqual(jsonl.read_lines(os.path.join(self.d, "none")), ([], 0))


class TraceFormatTests(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.d)

    def write_sample(self, path, npages=1000):
        rounds = [list(range(npages)), [], [0, 1, 2, 5, 999], list(range(10, 500, 3))]
        w = tracefmt.Writer(path, npages)
        for i, pages in enumerate(rounds):
            w.round(i, i * 1_000_000, pages)
        w.close()
        return rounds

    def test_python_round_trip(self):
        p = os.path.join(self.d, "t.trace")
        rounds = self.write_sample(p)
        tr = tracefmt.read(p, strict=True)
        self.assertTrue(tr["complete"])
        self.assertEqual(tr["npages"], 1000)
        self.assertEqual([tracefmt.pages_from_runs(r["runs"]) for r in tr["rounds"]], rounds)
        self.assertEqual(tr["rounds"][2]["runs"], [(0, 3), (5, 1), (999, 1)])
        self.assertEqual(tr["rounds"][3]["t_ns"], 3_000_000)

    def test_truncated_and_corrupt(self):
        p = os.path.join(self.d, "t.trace")
        self.write_sample(p)
        with open(p, "rb") as f:
            data = f.read()
        q = os.path.join(self.d, "cut.trace")
        for n in range(0, len(data), 7):
            with open(q, "wb") as f:
                f.write(data[:n])
            if n < tracefmt.HEADER.size:
                self.assertRaises(tracefmt.TraceError, tracefmt.read, q)
            else:
                self.assertFalse(tracefmt.read(q)["complete"])
                self.assertRaises(tracefmt.Truncated, tracefmt.read, q, True)
        for i in range(tracefmt.HEADER.size, len(data)):
            bad = bytearray(data)
            bad[i] ^= 0x10
            with open(q, "wb") as f:
                f.write(bad)
            self.assertRaises(tracefmt.TraceError, tracefmt.read, q)

    def test_c_writer_python_reader(self):
        """migrate/stats/trace.c writes, tracefmt reads (and the C reader reads Python's file)."""
        cc = shutil.which("cc") or shutil.which("gcc")
        src = os.path.join(ROOT, "migrate", "stats", "trace.c")
        if not cc or not os.path.exists(src):
            self.fail("no C compiler or migrate/stats/trace.c")
        prog = r'''
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "migrate/stats/trace.h"
int main(int argc, char **argv) {
    if (argc == 3) { /* read: print rounds as "round ndirty firstpage" */
        struct trace_reader r; int ret = trace_reader_open(&r, argv[2]);
        if (ret) return 2;
        uint64_t *bm = calloc(trace_bitmap_words(r.npages), 8);
        struct trace_round_info in;
        while ((ret = trace_read_round(&r, &in, bm)) == 1) {
            long first = -1;
            for (uint64_t i = 0; i < r.npages; i++) if (bm[i/64] >> (i%64) & 1) { first = (long)i; break; }
            printf("%u %lu %ld\n", in.round, (unsigned long)in.ndirty, first);
        }
        free(bm); trace_reader_close(&r); return ret == 0 ? 0 : 3;
    }
    struct trace t; uint64_t bm[3] = {0};
    if (trace_open(&t, argv[1], 130, 4096)) return 1;
    bm[0] = 0xff00000000000001ull; bm[1] = ~0ull; bm[2] = 0x3;   /* 1 + 8 + 64 + 2 pages */
    if (trace_round(&t, 0, 5, bm)) return 1;
    memset(bm, 0, sizeof bm); bm[2] = 1ull << 1;                /* page 129 */
    if (trace_round(&t, 1, 7000, bm)) return 1;
    return trace_close(&t) ? 1 : 0;
}
'''
        c = os.path.join(self.d, "w.c")
        exe = os.path.join(self.d, "w")
        with open(c, "w") as f:
            f.write(prog)
        subprocess.run([cc, "-std=gnu11", "-Wall", "-Wextra", "-Werror", "-I",
                        ROOT, "-o", exe, c, src], check=True)
        p = os.path.join(self.d, "c.trace")
        subprocess.run([exe, p], check=True)
        tr = tracefmt.read(p, strict=True)
        self.assertEqual(tr["npages"], 130)
        self.assertEqual(tr["rounds"][0]["runs"], [(0, 1), (56, 74)])
        self.assertEqual(tr["rounds"][0]["ndirty"], 75)
        self.assertEqual(tr["rounds"][1]["runs"], [(129, 1)])
        self.assertEqual(tr["rounds"][1]["t_ns"], 7000)
        # Python writes, C reads
        q = os.path.join(self.d, "py.trace")
        self.write_sample(q)
        out = subprocess.run([exe, "r", q], check=True, capture_output=True, text=True).stdout
        self.assertEqual(out.split("\n")[:4], ["0 1000 0", "1 0 -1", "2 5 0", "3 164 10"])


class ReplayTests(unittest.TestCase):
    def setUp(self):
        self.d = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.d)

    def model(self, **kw):
        p = os.path.join(self.d, "s.trace")
        replay.synth(p, **kw)
        return replay.DirtyModel(tracefmt.read(p))

    def test_never_converging(self):
        # 256 MiB; a hot set of 2000 pages rewritten every 10 ms (800 MB/s of
        # dirtying) against a 100 MB/s link: no rule can converge.
        m = self.model(npages=65536, nrounds=20, interval_ms=10, dirty=2000, pattern="seq")
        xen = replay.simulate(m, "xen", 100e6)
        self.assertEqual(xen["rounds"], 30)
        self.assertEqual(xen["reason"], "30 rounds")
        self.assertFalse(xen["converged"])
        ours = replay.simulate(m, "ours", 100e6, max_rounds=12)
        self.assertEqual(ours["reason"], "round cap")
        self.assertEqual(ours["rounds"], 12)
        self.assertGreater(ours["downtime_ms"], 30)
        q = replay.simulate(m, "qemu", 100e6, max_time_s=2)
        self.assertFalse(q["converged"])
        self.assertGreaterEqual(q["total_ms"], 2000)
        for res in (xen, ours, q):
            sent = sum(r["bytes"] for r in res["round_records"])
            self.assertEqual(res["bytes_total"], sent + res["final_pages"] * (4096 + 16))

    def test_xen_byte_cap(self):
        # whole RAM dirtied per interval: > 3x RAM sent before 30 rounds
        m = self.model(npages=1000, nrounds=10, interval_ms=1, dirty=1000, pattern="seq")
        xen = replay.simulate(m, "xen", 10e6)
        self.assertEqual(xen["reason"], "3x RAM sent")
        self.assertLessEqual(xen["rounds"], 5)

    def test_shrinking_converges(self):
        # dirty set halves every interval: our rule switches over within the limit
        m = self.model(npages=8192, nrounds=16, interval_ms=20, dirty=4000, shrink=0.5)
        bw = 300e6
        ours = replay.simulate(m, "ours", bw, downtime_ms=30, fixed_ms=1)
        self.assertTrue(ours["converged"])
        self.assertLessEqual(ours["downtime_ms"], 30)
        self.assertGreater(ours["rounds"], 1)
        pages = [r["pages"] for r in ours["round_records"]]
        self.assertEqual(pages[0], 8192)
        q = replay.simulate(m, "qemu", bw, downtime_ms=30)
        self.assertTrue(q["converged"])
        # with no dirtying after the trace, everything ends in few rounds
        m2 = self.model(npages=8192, nrounds=2, interval_ms=20, dirty=10)
        m2.extend = "none"
        self.assertTrue(replay.simulate(m2, "xen", bw)["converged"])

    def test_dirty_model_window(self):
        m = self.model(npages=1000, nrounds=3, interval_ms=100, dirty=500, pattern="seq")
        self.assertEqual(len(m.dirtied(0, 0.1)), 500)
        self.assertEqual(len(m.dirtied(0, 0.05)), 250)
        self.assertEqual(len(m.dirtied(0.2, 10)), 500)  # extended steady state
        m.extend = "none"
        self.assertEqual(len(m.dirtied(0.2, 10)), 0)

    def test_cli(self):
        p = os.path.join(self.d, "s.trace")
        replay.main(["synth", p, "--npages", "512", "--rounds", "5", "--interval-ms", "5",
                     "--dirty", "100"])
        out = subprocess.run([sys.executable, os.path.join(HERE, "replay.py"), p, "--bw", "1gbit",
                              "--json"], check=True, capture_output=True, text=True).stdout
        res = json.loads(out)
        self.assertEqual([r["rule"] for r in res["results"]], ["ours", "qemu", "xen"])
        self.assertAlmostEqual(res["results"][0]["bw_Bps"], 125e6)
        self.assertEqual(replay.parse_bw("125M"), 125 * (1 << 20))

    # Policies (issue 11, item 6): one workload no plain pre-copy can
    # finish (a 2000-page hot set rewritten every 10 ms, 800 MB/s, against
    # 100 MB/s), and what each of minivmm's policies makes of it.
    def hot_model(self):
        return self.model(npages=65536, nrounds=20, interval_ms=10, dirty=2000, pattern="seq")

    def test_policy_force_hits_the_cap(self):
        f = replay.simulate_policy(self.hot_model(), "force", 100e6)
        self.assertEqual(f["reason"], "round cap")
        self.assertFalse(f["converged"])
        self.assertGreater(f["downtime_ms"], 30)
        self.assertEqual((f["throttle_max_pct"], f["xbzrle_pages"]), (0, 0))
        self.assertEqual(f["guest_progress"], 1.0)

    def test_policy_throttle_converges_by_slowing_the_guest(self):
        m = self.hot_model()
        f = replay.simulate_policy(m, "force", 100e6)
        t = replay.simulate_policy(m, "throttle", 100e6)
        self.assertTrue(t["converged"])
        self.assertLessEqual(t["downtime_ms"], 30)
        self.assertLess(t["bytes_total"], f["bytes_total"])
        # the plan's steps: round 1 dirtied less than half of round 0's
        # bytes (no strike), rounds 2 and 3 are strikes: 20 from round 3,
        # then +10 every second round, capped at 99
        pcts = [r["throttle_pct"] for r in t["round_records"]]
        self.assertEqual(pcts[:6], [0, 0, 0, 20, 20, 30])
        self.assertEqual(pcts, sorted(pcts))
        self.assertEqual(t["throttle_max_pct"], 99)
        self.assertLess(t["guest_progress"], 1.0)
        self.assertEqual(t["guest_stall_max_ms"], 20.0)  # one hold slice
        # a lower ceiling cannot slow the guest enough: the cap again
        t50 = replay.simulate_policy(m, "throttle", 100e6, throttle=(20, 10, 50))
        self.assertEqual(t50["reason"], "round cap")
        self.assertEqual(t50["throttle_max_pct"], 50)

    def test_policy_xbzrle(self):
        m = self.hot_model()
        f = replay.simulate_policy(m, "force", 100e6)
        x = replay.simulate_policy(m, "xbzrle", 100e6, delta_bytes=24)
        self.assertTrue(x["converged"])
        self.assertLess(x["bytes_total"], f["bytes_total"] // 1.5)
        rec = x["round_records"]
        self.assertEqual(rec[1]["pages"], 2000)
        self.assertEqual(rec[1]["bytes"], 2000 * (2 + 24 + 16))  # all deltas
        self.assertEqual(x["xbzrle_pages"], 2000 + x["final_pages"])
        # every page rewritten (fresh=1): no delta is smaller, as force
        fr = replay.simulate_policy(m, "xbzrle", 100e6, delta_bytes=4096)
        self.assertEqual(fr["bytes_total"], f["bytes_total"])
        self.assertEqual(fr["xbzrle_pages"], 0)
        # a direct-mapped cache of 1000 pages: pages p and p + 1000 of the
        # hot set evict each other, every re-send misses
        sm = replay.simulate_policy(m, "xbzrle", 100e6, xbzrle_cache=1000 * 4096)
        self.assertEqual(sm["xbzrle_pages"], 0)
        self.assertEqual(sm["xbzrle_cache_misses"], 65536 + 2000 * (sm["rounds"] - 1) +
                         sm["final_pages"])

    def test_throttle_plan_matches_c(self):
        # migrate/policy/throttle_plan.c: a strike when dirty > 50 % of sent
        p = replay.ThrottlePlan(20, 10, 45)
        self.assertEqual(p.step(60, 100), 0)   # strike 1
        self.assertEqual(p.step(60, 100), 20)  # strike 2: initial
        self.assertEqual(p.step(50, 100), 20)  # not a strike
        self.assertEqual(p.step(60, 100), 20)
        self.assertEqual(p.step(60, 100), 30)
        p.step(60, 100)
        self.assertEqual(p.step(60, 100), 40)
        p.step(60, 100)
        self.assertEqual(p.step(60, 100), 45)  # the ceiling
        self.assertEqual(replay.ThrottlePlan(20, 10, 120).max, 99)

    def test_policy_cli(self):
        p = os.path.join(self.d, "s.trace")
        replay.synth(p, npages=4096, nrounds=10, interval_ms=10, dirty=500, pattern="seq")
        out = subprocess.run([sys.executable, os.path.join(HERE, "replay.py"), p, "--bw", "100M",
                              "--policy", "all", "--xbzrle-cache", "64M", "--json"],
                             check=True, capture_output=True, text=True).stdout
        res = json.loads(out)["results"]
        self.assertEqual([r["policy"] for r in res], list(replay.POLICIES))
        self.assertEqual([r["rule"] for r in res], ["ours+" + q for q in replay.POLICIES])
        table = subprocess.run([sys.executable, os.path.join(HERE, "replay.py"), p, "--bw",
                                "100M", "--policy", "throttle"], check=True,
                               capture_output=True, text=True).stdout
        self.assertIn("| ours+throttle |", table)


def load_report_tests():
    try:
        import report  # noqa: F401
    except ImportError:
        return None

    class ReportTests(unittest.TestCase):
        def test_stats(self):
            self.assertEqual(report.median([3, 1, 2]), 2)
            self.assertEqual(report.median([4, 1, 2, 3]), 2.5)
            self.assertIsNone(report.median([]))
            self.assertEqual(report.fmt_mmm([10.0, 30.0, 20.0]), "20.0 [10.0-30.0]")

        def test_gap(self):
            import harness
            lines = [(0.0, "seq=1"), (0.1, "seq=2"), (0.2, "seq=3"), (0.9, "seq=4"), (1.0, "seq=5"),
                     (1.05, "verify: pass pages=3")]
            g = harness.heartbeat_gaps(lines, 0.15, 0.9)
            self.assertAlmostEqual(g["gap_ms"], 700, places=3)

    return ReportTests


def run_line(run, status="ok", matrix="t"):
    """A result line as bench.py writes it, with made-up figures."""
    return {"kind": "run", "schema": jsonl.SCHEMA_RUN, "matrix": matrix, "run_id": run["run_id"],
            "cell": run["cell"], "repeat": run["repeat"], "axes": run["axes"],
            "inputs": benchconf.typed_inputs(run["inputs"]), "machine": {}, "ceiling": {},
            "status": status,
            "result": {"outcome": "completed", "total_ms": 10.0 + run["repeat"], "downtime_ms": 1.5,
                       "gap_ms": 101.0, "bytes_total": 1 << 20, "rounds": 2, "verify_pass": True}}


def write_run_folder(d, runs, matrix="t"):
    jsonl.append_line(os.path.join(d, bench.RESULTS_FILE),
                      {"kind": "ceiling", "matrix": matrix, "machine": {"cores": 2}, "ceiling": {}})
    for r in runs:
        jsonl.append_line(os.path.join(d, bench.RESULTS_FILE), run_line(r, matrix=matrix))


def tree(d):
    """{relative path: (size, mtime_ns)} of every file under D."""
    out = {}
    for base, _, files in os.walk(d):
        for f in files:
            p = os.path.join(base, f)
            st = os.stat(p)
            out[os.path.relpath(p, d)] = (st.st_size, st.st_mtime_ns)
    return out


class RunFolderTests(unittest.TestCase):
    """A run measures afresh into a folder of its own unless told to resume."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.conf = os.path.join(self.root, "t.conf")
        with open(self.conf, "w") as f:
            f.write(SAMPLE_CONF)
        self.cfg = benchconf.load(self.conf)
        self.runs = benchconf.expand(self.cfg)
        self.now = calendar.timegm((2026, 11, 30, 12, 0, 0, 0, 0, 0))

    def tearDown(self):
        shutil.rmtree(self.root)

    def test_folder_name(self):
        self.assertEqual(bench.utc_stamp(0), "19700101T000000Z")
        p = bench.plan(self.cfg, self.conf, root=self.root, now=self.now)
        self.assertEqual(p["dir"], os.path.join(self.root, "t-20261130T120000Z"))
        self.assertEqual(p["results"], os.path.join(p["dir"], "results.jsonl"))
        self.assertFalse(p["resuming"])
        self.assertFalse(os.path.exists(p["dir"]), "planning must not create the folder")
        out = os.path.join(self.root, "mine")
        self.assertEqual(bench.plan(self.cfg, self.conf, out=out, root=self.root)["dir"], out)
        # the name comes from the config file when the matrix has none
        cfg = benchconf.parse(SAMPLE_CONF.replace("name = t", ""))
        self.assertTrue(os.path.basename(bench.plan(cfg, "/x/matrix-foo.conf", root=self.root,
                                                    now=self.now)["dir"]).startswith("matrix-foo-2026"))

    def test_fresh_by_default(self):
        # results of every run already on disk, as committed ones are
        write_run_folder(os.path.join(self.root, "t-20200101T000000Z"), self.runs)
        write_run_folder(os.path.join(self.root, "data"), self.runs)
        os.rename(os.path.join(self.root, "data", "results.jsonl"), os.path.join(self.root, "data", "t.jsonl"))
        p = bench.plan(self.cfg, self.conf, root=self.root, now=self.now)
        self.assertEqual([r["run_id"] for r in p["todo"]], [r["run_id"] for r in self.runs])
        self.assertNotEqual(p["dir"], os.path.join(self.root, "t-20200101T000000Z"))

    def test_out_holding_results_is_refused(self):
        d = os.path.join(self.root, "old")
        write_run_folder(d, self.runs[:1])
        with self.assertRaises(bench.BenchError) as cm:
            bench.plan(self.cfg, self.conf, out=d, root=self.root)
        self.assertIn("--resume", str(cm.exception))
        os.makedirs(os.path.join(self.root, "empty"))
        self.assertEqual(len(bench.plan(self.cfg, self.conf, out=os.path.join(self.root, "empty"))["todo"]), 9)

    def test_resume(self):
        d = os.path.join(self.root, "t-20200101T000000Z")
        write_run_folder(d, self.runs[:4])
        jsonl.append_line(os.path.join(d, "results.jsonl"), run_line(self.runs[4], status="harness-error"))
        for where in (d, os.path.join(d, "results.jsonl")):
            p = bench.plan(self.cfg, self.conf, resume=where, root=self.root)
            self.assertTrue(p["resuming"])
            self.assertEqual(p["dir"], d)
            # done: the 4 ok lines; the harness error is redone
            self.assertEqual([r["run_id"] for r in p["todo"]], [r["run_id"] for r in self.runs[4:]])
        with self.assertRaises(bench.BenchError):
            bench.plan(self.cfg, self.conf, resume=os.path.join(self.root, "nothing"))
        other = os.path.join(self.root, "other")
        write_run_folder(other, self.runs[:1], matrix="quick")
        with self.assertRaises(bench.BenchError) as cm:
            bench.plan(self.cfg, self.conf, resume=other)
        self.assertIn("quick", str(cm.exception))

    def test_unknown_cell(self):
        self.assertEqual(len(bench.plan(self.cfg, self.conf, cells="b", root=self.root)["todo"]), 1)
        with self.assertRaises(bench.BenchError):
            bench.plan(self.cfg, self.conf, cells="a,zz", root=self.root)

    def test_cli_dry_run(self):
        """The shipped quick matrix: every run to do, nothing written, whatever is committed."""
        quick = os.path.join(HERE, "matrix-quick.conf")
        n = len(benchconf.expand(benchconf.load(quick)))
        before = sorted(os.listdir(bench.RESULTS_ROOT))
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "run", quick, "--dry-run"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.split()), n)
        self.assertIn("%d runs, 0 done, %d to do -> docs/results/quick-" % (n, n), r.stderr)
        self.assertEqual(sorted(os.listdir(bench.RESULTS_ROOT)), before)
        # resuming a finished run: nothing to do
        d = os.path.join(self.root, "q")
        write_run_folder(d, benchconf.expand(benchconf.load(quick)), matrix="quick")
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "run", quick, "--dry-run",
                            "--resume", d], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn("%d done, 0 to do" % n, r.stderr)
        r = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "run", quick, "--dry-run",
                            "--out", d], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 2)
        self.assertIn("already holds results", r.stderr)


FAKE_GNUPLOT = """#!/bin/sh
# writes an empty file for every 'set output' of the script on stdin
sed -n "s/^set output '\\(.*\\)'$/\\1/p" | while read -r f; do : > "$f"; done
"""


class ReportFolderTests(unittest.TestCase):
    """report.py renders the folder it is given and nothing else."""

    def setUp(self):
        self.root = tempfile.mkdtemp()
        self.runs = benchconf.expand(benchconf.parse(SAMPLE_CONF))
        self.a = os.path.join(self.root, "t-20260101T000000Z")
        self.b = os.path.join(self.root, "t-20260102T000000Z")
        write_run_folder(self.a, self.runs)
        write_run_folder(self.b, self.runs[:3])
        with open(os.path.join(self.root, "index.md"), "w") as f:
            f.write("a committed page\n")
        bindir = os.path.join(self.root, "bin")
        os.makedirs(bindir)
        with open(os.path.join(bindir, "gnuplot"), "w") as f:
            f.write(FAKE_GNUPLOT)
        os.chmod(os.path.join(bindir, "gnuplot"), 0o755)
        self.path = os.environ["PATH"]
        os.environ["PATH"] = bindir + os.pathsep + self.path
        self.cwd = os.getcwd()

    def tearDown(self):
        os.environ["PATH"] = self.path
        os.chdir(self.cwd)
        shutil.rmtree(self.root)

    def quiet(self, argv):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            rc = report.main(argv)
        return rc, err.getvalue()

    def test_renders_only_its_folder(self):
        before = tree(self.root)
        rc, err = self.quiet([self.a])
        self.assertEqual(rc, 0, err)
        self.assertEqual(os.getcwd(), self.cwd)
        after = tree(self.root)
        changed = {p for p in set(before) | set(after) if before.get(p) != after.get(p)}
        self.assertTrue(changed)
        outside = [p for p in changed if not p.startswith(os.path.basename(self.a) + os.sep)]
        self.assertEqual(outside, [])
        with open(os.path.join(self.a, "index.md")) as f:
            md = f.read()
        self.assertIn("## Matrix `t`", md)
        self.assertIn(os.path.relpath(os.path.join(self.a, "results.jsonl"), ROOT), md)
        # every plot the page shows is in the folder's plots/
        shown = re.findall(r"\]\((plots/[^)]+)\)", md)
        self.assertTrue(shown)
        for p in shown:
            self.assertTrue(os.path.exists(os.path.join(self.a, p)), p)
        # a second rendering removes what the first left and nothing else
        stale = os.path.join(self.a, "plots", "gone.dat")
        open(stale, "w").close()
        self.assertEqual(self.quiet([os.path.join(self.a, "results.jsonl")])[0], 0)
        self.assertFalse(os.path.exists(stale))
        self.assertFalse(os.path.exists(os.path.join(self.b, "index.md")))

    def test_each_input_its_own_folder(self):
        self.assertEqual(self.quiet([self.a, self.b])[0], 0)
        for d, n in ((self.a, 9), (self.b, 3)):
            with open(os.path.join(d, "index.md")) as f:
                self.assertEqual(f.read().count("| minivmm |"), 3 if n == 9 else 1, d)

    def test_no_argument_writes_nothing(self):
        before = tree(self.root)
        rc, err = self.quiet([])
        self.assertEqual(rc, 2)
        self.assertIn("BENCH_RESULTS=DIR", err)
        self.assertEqual(tree(self.root), before)

    def test_without_gnuplot_fails_and_writes_nothing(self):
        saved = report.have_gnuplot
        report.have_gnuplot = lambda install=True: False
        try:
            before = tree(self.root)
            rc, err = self.quiet([self.a])
            self.assertEqual(rc, 1)
            self.assertIn("gnuplot", err)
            self.assertEqual(tree(self.root), before)
            self.assertEqual(self.quiet([self.a, "--no-plots"])[0], 0)
            self.assertTrue(os.path.exists(os.path.join(self.a, "index.md")))
        finally:
            report.have_gnuplot = saved

    def test_gnuplot_failure_fails_the_report(self):
        with open(os.path.join(self.root, "bin", "gnuplot"), "w") as f:
            f.write("#!/bin/sh\necho 'no such terminal' >&2\nexit 1\n")
        rc, err = self.quiet([self.a])
        self.assertEqual(rc, 1)
        self.assertIn("gnuplot failed", err)


LINK_RE = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def dead_links(md_path):
    """Relative links of a Markdown file that lead to no file (code blocks skipped)."""
    with open(md_path, encoding="utf-8") as f:
        text = f.read()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    dead = []
    for target in LINK_RE.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if not os.path.exists(os.path.normpath(os.path.join(os.path.dirname(md_path), path))):
            dead.append(target)
    return dead


class DocLinkTests(unittest.TestCase):
    def test_checker_finds_dead_links(self):
        d = tempfile.mkdtemp()
        try:
            open(os.path.join(d, "there.md"), "w").close()
            p = os.path.join(d, "a.md")
            with open(p, "w") as f:
                f.write("[ok](there.md) [ok](there.md#x) [web](https://x.org/y) [anchor](#z)\n"
                        "![gone](plots/gone.svg) [gone](sub/gone.md)\n`[code](nope.md)`\n"
                        "```\n[block](nope.md)\n```\n")
            self.assertEqual(dead_links(p), ["plots/gone.svg", "sub/gone.md"])
        finally:
            shutil.rmtree(d)

    def test_docs_links_resolve(self):
        pages = glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
        pages.append(os.path.join(ROOT, "README.md"))
        self.assertGreater(len(pages), 5)
        dead = {os.path.relpath(p, ROOT): dead_links(p) for p in pages if os.path.exists(p)}
        self.assertEqual({p: d for p, d in dead.items() if d}, {})


class BinaryTests(unittest.TestCase):
    """bench.py run --binary LABEL=PATH: an A/B of two builds in one session."""

    def setUp(self):
        self.cfg = benchconf.parse(SAMPLE_CONF)
        self.root = tempfile.mkdtemp()

    def tearDown(self):
        shutil.rmtree(self.root)

    def test_parse_binaries(self):
        exe = os.path.join(self.root, "minivmm")
        with open(exe, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(exe, 0o755)
        self.assertEqual(bench.parse_binaries(["old=%s" % exe, "new=%s" % exe]),
                         [("old", exe), ("new", exe)])
        self.assertEqual(bench.parse_binaries(None), [])
        for bad in (["old"], ["=%s" % exe], ["a b=%s" % exe], ["old=%s" % exe, "old=%s" % exe],
                    ["old=%s" % os.path.join(self.root, "missing")], ["old=%s" % self.root]):
            with self.assertRaises(bench.BenchError, msg=bad):
                bench.parse_binaries(bad)

    def test_with_binaries(self):
        runs = benchconf.expand(self.cfg)
        self.assertIs(bench.with_binaries(runs, []), runs)
        ab = bench.with_binaries(runs, ["old", "new"])
        mv = [r for r in runs if r["inputs"]["vmm"] == "minivmm"]
        # every minivmm run twice, QEMU runs once
        self.assertEqual(len(ab), len(runs) + len(mv))
        self.assertEqual(len({r["run_id"] for r in ab}), len(ab))
        self.assertTrue(all("binary" not in r for r in ab if r["inputs"]["vmm"] == "qemu"))
        # back to back, old first on even repeats and new first on odd ones
        a = [r for r in ab if r["cell"] == "a" and r["inputs"]["wss"] == "0"]
        self.assertEqual([(r["repeat"], r["inputs"]["vmm"], r.get("binary")) for r in a],
                         [(0, "minivmm", "old"), (0, "minivmm", "new"), (0, "qemu", None),
                          (1, "minivmm", "new"), (1, "minivmm", "old"), (1, "qemu", None)])
        self.assertTrue(a[0]["run_id"].endswith("/r0/bin=old"))
        # the plan carries them, so --resume knows which binary a line was
        p = bench.plan(self.cfg, "t.conf", out=os.path.join(self.root, "x"), binaries=["old", "new"])
        self.assertEqual(len(p["todo"]), len(ab))

    def test_report_rows(self):
        runs = bench.with_binaries(benchconf.expand(self.cfg), ["old", "new"])
        lines = []
        for r in runs:
            line = run_line(r)
            if r.get("binary"):
                line["binary"] = {"label": r["binary"], "path": "/x/" + r["binary"]}
                if r["binary"] == "new":
                    line["result"]["total_ms"] *= 2  # made up: new twice as slow
            lines.append(line)
        by_vmm = {}
        for line in lines:
            if line["cell"] == "b":
                by_vmm.setdefault(report.vmm_of(line), []).append(line)
        self.assertEqual(sorted(by_vmm, key=report.vmm_sort), ["minivmm@old", "minivmm@new"])
        row = report.binary_rows(by_vmm)
        self.assertIn("minivmm: new / old", row)
        self.assertIn("total 2.00 (ranges apart)", row)
        self.assertIn("downtime 1.00;", row)
        md = report.tables(lines)
        self.assertIn("| minivmm@old | 1 |", md)
        self.assertIn("| minivmm@new | 1 |", md)
        self.assertIn("| qemu | 2 |", md)


PING_D = """PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.
[1000.000100] 64 bytes from 10.77.0.2: icmp_seq=1 ttl=64 time=0.900 ms
[1000.001100] 64 bytes from 10.77.0.2: icmp_seq=2 ttl=64 time=1.10 ms
[1000.001200] 64 bytes from 10.77.0.2: icmp_seq=2 ttl=64 time=1.20 ms (DUP!)
[1000.050100] 64 bytes from 10.77.0.2: icmp_seq=5 ttl=64 time=0.500 ms
[1000.051100] 64 bytes from 10.77.0.2: icmp_seq=6 ttl=64 time=0.700 ms

--- 10.77.0.2 ping statistics ---
6 packets transmitted, 4 received, +1 duplicates, 33.3333% packet loss, time 5ms
"""

FLOOD = """PING 10.77.0.2 (10.77.0.2) 56(84) bytes of data.

--- 10.77.0.2 ping statistics ---
5000 packets transmitted, 4990 received, 0.2% packet loss, time 6214ms
rtt min/avg/max/mdev = 0.677/1.203/9.399/0.657 ms, ipg/ewma 1.243/1.274 ms
"""


class NetBenchTests(unittest.TestCase):
    """bench_net.py's parsing of `ping -D` / `ping -f` and its statistics."""

    def test_ping_d(self):
        r = bench_net.parse_ping(PING_D)
        self.assertEqual((r["sent"], r["received"], r["lost"], r["dup"]), (6, 4, 2, 1))
        self.assertAlmostEqual(r["max_gap_ms"], 49.0, places=3)   # the DUP is not a reply
        self.assertAlmostEqual(r["gap_at"], 1000.0501, places=4)
        self.assertEqual(r["rtt_ms"], [0.9, 1.1, 0.5, 0.7])
        self.assertEqual(r["missing_seq"], [3, 4])
        self.assertEqual(len(r["reply_ts"]), 4)

    def test_flood_summary_only(self):
        r = bench_net.parse_ping(FLOOD)
        self.assertEqual((r["sent"], r["received"], r["lost"], r["dup"]), (5000, 4990, 10, 0))
        self.assertEqual(r["max_gap_ms"], 0.0)

    def test_gap_around_and_over(self):
        ts = [0.0, 0.001, 0.002, 0.100, 0.101, 5.0, 5.030, 5.031]
        self.assertEqual(bench_net.gap_around(ts, 5.02, 0.01, 0.02), (30.0, 5.030))   # not the 4.9 s stall
        self.assertEqual(bench_net.gap_around(ts, 9.0), (0.0, None))
        self.assertEqual(bench_net.gaps_over(ts, 10.0), 3)

    def test_gap_at_announce(self):
        ts = [0.0, 0.001, 0.002] + [round(0.050 + i / 1000.0, 3) for i in range(51)] + \
            [0.108, 0.109, 0.5, 0.501]
        boot = {"t": -1.0}
        # the RARP inside the 8 ms gap; not the 48 ms stall before, nor the 391 ms one after
        self.assertEqual(bench_net.gap_at_announce(ts, [boot, {"t": 0.105}]), (8.0, 0.105))
        # announced just after the reply that ended the gap
        self.assertEqual(bench_net.gap_at_announce(ts, [boot, {"t": 0.1085}]), (8.0, 0.1085))
        self.assertEqual(bench_net.gap_at_announce(ts, [boot]), (None, None))
        self.assertEqual(bench_net.gap_at_announce([], [{"t": 0.105}]), (None, None))

    def test_percentile_summary(self):
        self.assertEqual(bench_net.percentile([3, 1, 2, 4], 50), 2.5)
        self.assertAlmostEqual(bench_net.percentile(list(range(1, 101)), 99), 99.01)
        self.assertIsNone(bench_net.percentile([], 50))
        self.assertEqual(bench_net.summary([2, None, 1, 5]), (2, 1, 5))
        self.assertEqual(bench_net.fmt_summary((2, 1, 5), 0), "2 [1-5]")
        self.assertEqual(bench_net.fmt_summary((1.25, 1.25, 1.25)), "1.2")
        self.assertEqual(bench_net.fmt_summary(None), "-")


class _Result(unittest.TextTestResult):
    pass


def main():
    loader = unittest.TestLoader()
    suite = unittest.TestSuite()
    for cls in (ConfigTests, JsonlTests, TraceFormatTests, ReplayTests, RunFolderTests,
                ReportFolderTests, BinaryTests, DocLinkTests, NetBenchTests):
        suite.addTests(loader.loadTestsFromTestCase(cls))
    rt = load_report_tests()
    if rt:
        suite.addTests(loader.loadTestsFromTestCase(rt))
    res = unittest.TextTestRunner(verbosity=2, resultclass=_Result).run(suite)
    failed = len(res.failures) + len(res.errors)
    passed = res.testsRun - failed - len(res.skipped)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

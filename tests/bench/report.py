#!/usr/bin/env python3
"""Turn one benchmark run's JSON lines into its report: index.md (tables) and
plots/ (gnuplot, SVG + PNG), in the run's own folder.

    report.py DIR|RESULTS.jsonl ... [--out DIR] [--no-plots]

Each input is rendered into its own folder and nothing else is touched; with
--out, several inputs make one report there. gnuplot is installed from Debian
when missing; without it nothing is written (unless --no-plots).
"""

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import jsonl  # noqa: E402

CMD = "make bench-report"
RESULTS_FILE = "results.jsonl"  # in a run folder, beside its index.md and plots/
NEEDS = {"gnuplot": "gnuplot-nox"}  # command -> Debian package
GNUPLOT_FAILED = []  # plots gnuplot refused in this rendering: the report then fails
VMM_ORDER = ["minivmm", "minivmm-1stream", "minivmm-prealloc", "minivmm-nice", "minivmm-nice0",
             "minivmm-force", "minivmm-throttle", "minivmm-xbzrle", "minivmm-xbzrle-throttle", "minivmm-postcopy", "minivmm-postcopy-now", "minivmm-postcopy-after-precopy", "minivmm-postcopy-after-precopy-xbzrle",
             "qemu", "qemu-multifd", "qemu-xbzrle", "qemu-ac", "qemu-ac-50-25", "qemu-ac-99", "qemu-xbzrle-ac", "qemu-postcopy", "qemu-postcopy-xbzrle", "qemu-postcopy-now", "qemu-postcopy-preempt", "qemu-postcopy-preempt-now",
             "qemu-tuned", "qemu-prealloc", "qemu-multifd-prealloc"]
FIG = [  # (key, header, scale, fmt)
    ("total_ms", "total ms", 1, "%.0f"),
    ("downtime_ms", "downtime ms (ours)", 1, "%.1f"),
    ("qemu_downtime_ms", "QEMU downtime ms", 1, "%.1f"),
    ("gap_ms", "guest gap ms", 1, "%.0f"),
    ("bytes_total", "MiB sent", 1 / (1 << 20), "%.1f"),
    ("rounds", "rounds", 1, "%.0f"),
    ("throughput_Bps", "Gbit/s", 8 / 1e9, "%.2f"),
]

# what the migration cost the guest (issues 11 and 12): a second table, shown
# when a cell has any of these
FIG2 = [
    ("progress", "guest progress", 1, "%.2f"),
    ("vmm_console_gap_ms", "console gap ms (VMM-timed)", 1, "%.1f"),
    ("guest_stall_max_ms", "longest stall ms (reported)", 1, "%.1f"),
    ("throttle_hold_max_ms", "longest hold ms (reported)", 1, "%.1f"),
    ("guest_freeze_max_ms", "longest freeze ms (guest TSC)", 1, "%.1f"),
    ("guest_freeze_before_ms", "longest freeze before ms (guest TSC)", 1, "%.1f"),
    ("throttle_max_pct", "throttle max %", 1, "%.0f"),
    ("max_throttle_pct", "QEMU throttle max %", 1, "%.0f"),
    ("xbzrle_bytes_saved", "delta MiB saved", 1 / (1 << 20), "%.1f"),
    ("postcopy_ms", "post-copy ms", 1, "%.0f"),
    ("postcopy_pages_requested", "pages requested", 1, "%.0f"),
    ("postcopy_pages_pushed", "pages pushed", 1, "%.0f"),
    ("postcopy_fault_p50_ms", "fault p50 ms", 1, "%.2f"),
    ("postcopy_fault_p99_ms", "fault p99 ms", 1, "%.2f"),
    ("postcopy_fault_max_ms", "fault max ms", 1, "%.1f"),
    ("postcopy_blocktime_ms", "blocktime ms", 1, "%.0f"),
]


def median(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def fmt_mmm(v, fmt="%.1f"):
    v = [x for x in v if x is not None]
    if not v:
        return "-"
    if len(v) == 1:
        return fmt % v[0]
    return (fmt + " [" + fmt + "-" + fmt + "]") % (statistics.median(v), min(v), max(v))


def cell_key(line):
    inp = line["inputs"]
    keys = ["mem", "cpus", "guest", "wss", "rate", "pattern", "fill", "downtime_ms", "max_bandwidth", "link"]
    return tuple((k, inp.get(k)) for k in keys)


def human_inputs(inp):
    mem = inp["mem"]
    s = "%s RAM" % ("%dG" % (mem >> 30) if mem % (1 << 30) == 0 else "%dM" % (mem >> 20))
    if inp.get("cpus", 1) != 1:
        s += ", %d vCPUs" % inp["cpus"]
    if inp["guest"] == "dirty":
        s += ", wss %d MiB @ %s %s" % (inp["wss"], inp["rate"], inp["pattern"])
        if inp.get("fill"):
            s += ", fill %d MiB" % inp["fill"]
    else:
        s += ", %s guest" % inp["guest"]
    s += ", %s" % inp["link"]
    if inp.get("max_bandwidth"):
        s += ", max-bw %d MiB/s" % (inp["max_bandwidth"] >> 20)
    if inp.get("downtime_ms") != 30:
        s += ", limit %d ms" % inp["downtime_ms"]
    return s


def fig(line, key):
    r = line.get("result") or {}
    return r.get(key)


def load(paths):
    runs, ceilings, bad = [], [], 0
    for p in paths:
        objs, b = jsonl.read_lines(p)
        bad += b
        for o in objs:
            if o.get("kind") == "run":
                o["_file"] = p
                runs.append(o)
            elif o.get("kind") == "ceiling":
                ceilings.append(o)
    return runs, ceilings, bad


def vmm_of(line):
    """The VMM a table row stands for: the vmm input, plus '@LABEL' when the
    run named its binary (bench.py run --binary LABEL=PATH)."""
    b = line.get("binary") or {}
    return line["inputs"]["vmm"] + ("@" + b["label"] if b.get("label") else "")


def vmm_base(v):
    return v.split("@", 1)[0]


def vmm_sort(v):
    """VMM_ORDER of the base name; the binaries of one VMM keep the order
    they ran in (sorted() is stable)."""
    v = vmm_base(v)
    return VMM_ORDER.index(v) if v in VMM_ORDER else 99


def tables(runs):
    out = []
    by_matrix = {}
    for r in runs:
        by_matrix.setdefault(r["matrix"], []).append(r)
    for m, mr in by_matrix.items():
        out.append("## Matrix `%s`\n" % m)
        cells = {}
        for r in mr:
            cells.setdefault((r["cell"], cell_key(r)), []).append(r)
        for (cell, _), rs in cells.items():
            out.append("### %s: %s\n" % (cell, human_inputs(rs[0]["inputs"])))
            hdr = "| VMM | runs | outcome | " + " | ".join(h for _, h, _, _ in FIG) + " | verify |"
            out.append(hdr)
            out.append("|" + "---|" * (hdr.count("|") - 1))
            by_vmm = {}
            for r in rs:
                by_vmm.setdefault(vmm_of(r), []).append(r)
            for vmm in sorted(by_vmm, key=vmm_sort):
                vr = by_vmm[vmm]
                outcomes = {}
                for r in vr:
                    oc = r.get("error") if r.get("status") == "harness-error" else fig(r, "outcome")
                    oc = str(oc)[:40]
                    outcomes[oc] = outcomes.get(oc, 0) + 1
                cols = []
                for key, _, scale, f in FIG:
                    vals = [fig(r, key) for r in vr]
                    vals = [v * scale if isinstance(v, (int, float)) and not isinstance(v, bool) else None
                            for v in vals]
                    cols.append(fmt_mmm(vals, f))
                ver = [fig(r, "verify_pass") for r in vr]
                vtxt = "%d/%d pass" % (sum(1 for v in ver if v), sum(1 for v in ver if v is not None)) \
                    if any(v is not None for v in ver) else "-"
                oc_txt = ", ".join("%s x%d" % (k, n) if n > 1 else k for k, n in outcomes.items())
                out.append("| %s | %d | %s | %s | %s |" % (vmm, len(vr), oc_txt, " | ".join(cols), vtxt))
            extra = figure_rows(by_vmm, FIG2)
            if extra:
                out.append("\n" + extra)
            ratios = ratio_rows(by_vmm)
            if ratios:
                out.append("\n" + ratios)
            out.append("")
    return "\n".join(out)


def figure_rows(by_vmm, figs):
    """A table of the FIGS some run of the cell has; '' when none has any."""
    num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
    used = [f for f in figs if any(num(fig(r, f[0])) for vr in by_vmm.values() for r in vr)]
    if not used:
        return ""
    hdr = "| VMM | " + " | ".join(h for _, h, _, _ in used) + " |"
    rows = [hdr, "|" + "---|" * (len(used) + 1)]
    for vmm in sorted(by_vmm, key=vmm_sort):
        cols = []
        for key, _, scale, f in used:
            vals = [fig(r, key) for r in by_vmm[vmm]]
            cols.append(fmt_mmm([v * scale if num(v) else None for v in vals], f))
        rows.append("| %s | %s |" % (vmm, " | ".join(cols)))
    return "\n".join(rows)


def throughput_row(by_vmm):
    """Throughput against the ceilings measured before the cell (big transfers only)."""
    parts = []
    for vmm in sorted(by_vmm, key=vmm_sort):
        done = [r for r in by_vmm[vmm] if fig(r, "outcome") == "completed"]
        if not done or (median([fig(r, "bytes_total") for r in done]) or 0) < (512 << 20):
            continue
        tcp, mem = [], []
        for r in done:
            t, c = fig(r, "throughput_Bps"), r.get("ceiling") or {}
            if not isinstance(t, (int, float)):
                continue
            if c.get("tcp_loopback", {}).get("tcp_Bps"):
                tcp.append(t / c["tcp_loopback"]["tcp_Bps"])
            if c.get("tcp_mem_loopback", {}).get("tcp_mem_Bps"):
                mem.append(t / c["tcp_mem_loopback"]["tcp_mem_Bps"])
        if tcp:
            parts.append("%s %.2fx TCP%s" % (vmm, median(tcp),
                                             " (%.2fx memory-to-memory TCP)" % median(mem) if mem else ""))
    return ("Throughput x the ceilings measured before this cell (medians): " + "; ".join(parts) + ".") \
        if parts else ""


def fault_row(by_vmm):
    """Post-copy fault latency against issue 12's target, 2 x (one page's
    transfer + the link's ping RTT), and against the floor measured before
    the cell: a bare 4 KiB request/reply over the same link, no VMM."""
    parts, target, floor = [], [], {}
    for vmm in sorted(by_vmm, key=vmm_sort):
        p99 = []
        for r in by_vmm[vmm]:
            v = fig(r, "postcopy_fault_p99_ms")
            if not isinstance(v, (int, float)) or not fig(r, "postcopy_faults"):
                continue
            p99.append(v)
            spec, c = r["inputs"].get("link_spec") or {}, r.get("ceiling") or {}
            mbit = spec.get("rate_bps", 0) // 1000000
            rtt = (c.get("rtt_veth_%dmbit" % mbit) or {}).get("avg_ms")
            if spec.get("rate_bps") and rtt is not None:
                target.append(2 * (4096 * 8 * 1e3 / spec["rate_bps"] + rtt))
            pf = c.get("pagereq_veth_%dmbit" % mbit) or {}
            for k in ("p50_ms", "p99_ms"):
                if isinstance(pf.get(k), (int, float)):
                    floor.setdefault(k, []).append(pf[k])
        if p99:
            parts.append("%s %.3f ms" % (vmm, median(p99)))
    if not parts:
        return ""
    txt = "Fault p99 (medians of runs with a fault): " + "; ".join(parts)
    if target:
        txt += "; target 2 x (page + RTT) %.3f ms" % median(target)
    if floor.get("p99_ms"):
        txt += ("; floor, a bare 4 KiB request/reply over this link before the cell: p50 %.3f, "
                "p99 %.3f ms" % (median(floor.get("p50_ms", [])), median(floor["p99_ms"])))
    return txt + "."


AB_FIG = [("total_ms", "total"), ("downtime_ms", "downtime"), ("gap_ms", "gap"),
          ("bytes_total", "bytes"), ("rounds", "rounds"), ("throughput_Bps", "throughput")]


def binary_rows(by_vmm):
    """One line per VMM run with several binaries (--binary): every other
    binary against the first that ran, ratio of medians of the completed runs,
    and whether the two min-max ranges overlap."""
    groups = {}
    for v in sorted(by_vmm, key=vmm_sort):
        if "@" in v:
            groups.setdefault(vmm_base(v), []).append(v)
    out = []
    for base, names in groups.items():
        ref = names[0]
        for other in names[1:]:
            parts = []
            for key, label in AB_FIG:
                a = [fig(r, key) for r in by_vmm[ref] if fig(r, "outcome") == "completed"]
                b = [fig(r, key) for r in by_vmm[other] if fig(r, "outcome") == "completed"]
                a, b = [x for x in a if x is not None], [x for x in b if x is not None]
                if not a or not b or not median(a):
                    continue
                overlap = min(b) <= max(a) and min(a) <= max(b)
                parts.append("%s %.2f%s" % (label, median(b) / median(a),
                                            "" if overlap else " (ranges apart)"))
            if parts:
                out.append("Binaries, %s: %s / %s (ratio of medians, completed runs; \"ranges "
                           "apart\": the min-max ranges do not overlap): %s." % (
                               base, other.split("@", 1)[1], ref.split("@", 1)[1], "; ".join(parts)))
    return "\n\n".join(out)


def ratio_rows(by_vmm):
    """minivmm variants against QEMU's of the same class: a target that populated
    its RAM ahead (-prealloc) is compared with QEMU targets that did too."""
    out = [throughput_row(by_vmm), fault_row(by_vmm), binary_rows(by_vmm)]
    for mv_name in sorted((v for v in by_vmm if v.startswith("minivmm")), key=vmm_sort):
        pre = vmm_base(mv_name).endswith("-prealloc")
        qemus = [v for v in by_vmm if not v.startswith("minivmm") and v.endswith("-prealloc") == pre]
        if not qemus:
            continue
        parts = []
        for key, name in (("total_ms", "total time"), ("gap_ms", "guest gap"), ("bytes_total", "bytes")):
            mv = median([fig(r, key) for r in by_vmm[mv_name] if fig(r, "outcome") == "completed"])
            best, bestv, qd = None, None, None
            for q in qemus:
                med = median([fig(r, key) for r in by_vmm[q] if fig(r, "outcome") == "completed"])
                if med is None:
                    continue
                if q == ("qemu-prealloc" if pre else "qemu"):
                    qd = (q, med)
                if bestv is None or med < bestv:
                    best, bestv = q, med
            if mv is None or bestv is None or bestv == 0:
                continue
            s = "%s %s/%s (best QEMU) = %.2f" % (name, mv_name, best, mv / bestv)
            if qd and best != qd[0] and qd[1]:
                s += ", %s/%s = %.2f" % (mv_name, qd[0], mv / qd[1])
            parts.append(s)
        if parts:
            out.append("Ratios of medians (completed runs): " + "; ".join(parts) + ".")
    return "\n\n".join(x for x in out if x)


def machine_table(ceilings, runs):
    c = ceilings[-1] if ceilings else None
    facts = c["machine"] if c else (runs[-1]["machine"] if runs else {})
    ce = c["ceiling"] if c else {}
    rows = [("CPU", facts.get("cpu_model")), ("cores", facts.get("cores")), ("kernel", facts.get("kernel")),
            ("KVM", facts.get("kvm_flavour")), ("QEMU", facts.get("qemu_version")),
            ("minivmm commit", (facts.get("minivmm_commit") or "")[:12] +
             (" (+ uncommitted changes)" if facts.get("minivmm_tree_dirty") else "")),
            ("date", facts.get("date_utc"))]
    # the session's first ceiling line names the --binary builds
    for b in next((x["binaries"] for x in ceilings if x.get("binaries")), None) or []:
        rows.append(("binary `%s`" % b.get("label"), "%s (commit %s%s, sha256 %s)" % (
            b.get("path"), (b.get("commit") or "?")[:12],
            " + uncommitted changes" if b.get("tree_dirty") else "", (b.get("sha256") or "")[:12])))
    if ce.get("memcpy", {}).get("memcpy_Bps"):
        rows.append(("memcpy (same run)", "%.1f GB/s" % (ce["memcpy"]["memcpy_Bps"] / 1e9)))
    if ce.get("zeroscan", {}).get("zeroscan_Bps"):
        rows.append(("zero-page scan", "%.1f GB/s" % (ce["zeroscan"]["zeroscan_Bps"] / 1e9)))
    if ce.get("tcp_loopback", {}).get("tcp_Bps"):
        rows.append(("single-stream loopback TCP", "%.1f Gbit/s" % (ce["tcp_loopback"]["tcp_Bps"] * 8 / 1e9)))
    if ce.get("tcp_fresh_loopback", {}).get("tcp_fresh_Bps"):
        rows.append(("loopback TCP into never-touched memory (a target's round 0)",
                     "%.1f Gbit/s" % (ce["tcp_fresh_loopback"]["tcp_fresh_Bps"] * 8 / 1e9)))
    if ce.get("tcp_mem_loopback", {}).get("tcp_mem_Bps"):
        rows.append(("loopback TCP memory to populated memory (1 GiB; a target with --prealloc)",
                     "%.1f Gbit/s" % (ce["tcp_mem_loopback"]["tcp_mem_Bps"] * 8 / 1e9)))
    for k, v in ce.items():
        if k.startswith("tcp_veth") and v.get("tcp_Bps"):
            rows.append(("TCP over %s" % k[4:], "%.2f Gbit/s" % (v["tcp_Bps"] * 8 / 1e9)))
    return "| fact | value |\n|---|---|\n" + "\n".join("| %s | %s |" % r for r in rows) + "\n"


# ---------------------------------------------------------------- plots

def axis_value(axis, v):
    """Sizes in MiB in labels: mem=2048M, not mem=2147483648."""
    if axis == "mem" and isinstance(v, int):
        return "%dM" % (v >> 20)
    return v


def series_by_axis(runs, axis, xfun):
    """{series name: {x: [lines]}} for runs whose cell varies AXIS."""
    out = {}
    for r in runs:
        if axis not in r.get("axes", []) or r.get("status") == "harness-error":
            continue
        inp = r["inputs"]
        others = [a for a in r["axes"] if a != axis]
        name = vmm_of(r) + "".join(" %s=%s" % (a, axis_value(a, inp[a])) for a in others)
        x = xfun(r)
        if x is None:
            continue
        out.setdefault(name, {}).setdefault(x, []).append(r)
    return out


def write_dat(path, rows):
    with open(path, "w") as f:
        for row in rows:
            f.write(" ".join("NaN" if v is None else str(v) for v in row) + "\n")


def gnuplot(script, outbase):
    """Render SCRIPT (which plots to the current terminal) to outbase.svg and .png."""
    for term, ext in (("svg size 900,600 dynamic font 'Helvetica,12'", "svg"),
                      ("pngcairo size 900,600 font 'Helvetica,11'", "png")):
        full = "set terminal %s\nset output '%s.%s'\n%s\n" % (term, outbase, ext, script)
        r = subprocess.run(["gnuplot"], input=full, text=True, capture_output=True)
        if r.returncode:
            print("report: gnuplot failed for %s: %s" % (outbase, r.stderr.strip()[:500]), file=sys.stderr)
            GNUPLOT_FAILED.append(outbase)
            return False
    with open(outbase + ".gp", "w") as f:
        f.write("# made by: %s (tests/bench/report.py)\n%s\n" % (CMD, script))
    return True


def esc(s):
    return s.replace("_", "\\_")


def plot_vs(runs, outdir, axis, xlabel, keys, name, title, xfun, logx=False, logy=False):
    """One panel per figure in KEYS [(key, y label, scale)], one coloured line per series."""
    ser = series_by_axis(runs, axis, xfun)
    if not ser:
        return None
    names = sorted(ser, key=lambda n: (vmm_sort(n.split()[0]), n))
    panels = []
    for key, ylabel, scale in keys:
        plots = []
        for ci, sname in enumerate(names):
            pts = ser[sname]
            rows = []
            for x in sorted(pts):
                vals = [fig(r, key) for r in pts[x]]
                vals = [v * scale for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
                if vals:
                    rows.append((x, median(vals), min(vals), max(vals)))
            if not rows:
                continue
            fn = os.path.join(outdir, "%s-%s-%s.dat" % (name, sname.replace(" ", "_").replace("=", ""), key))
            write_dat(fn, rows)
            plots.append("'%s' using 1:2:3:4 with yerrorlines lw 2 lc %d pt %d title \"%s\"" % (
                fn, ci + 1, ci + 4, esc(sname)))
        if plots:
            panels.append((ylabel, plots))
    if not panels:
        return None
    lines = ["set multiplot layout %d,1 title \"%s\\n{/*0.8 made by: %s; median, bars = min-max}\"" % (
        len(panels), title, CMD), "set grid", "set key outside right top"]
    if logx:
        lines.append("set logscale x")
    if logy:
        lines.append("set logscale y")
    for i, (ylabel, plots) in enumerate(panels):
        lines.append("set ylabel '%s'" % ylabel)
        lines.append("set xlabel '%s'" % (xlabel if i == len(panels) - 1 else ""))
        lines.append("plot " + ", \\\n     ".join(plots))
    lines.append("unset multiplot")
    base = os.path.join(outdir, name)
    return base if gnuplot("\n".join(lines), base) else None


def rate_x(r):
    rate = r["inputs"]["rate"]
    if rate == "max":
        v = fig(r, "rate_before_pps")
        return round(v) if v else None
    return rate


def plot_rounds(runs, outdir):
    """Dirty pages per round over time: a converging and a non-converging case."""
    conv = nonconv = None
    for r in runs:
        res = r.get("result") or {}
        if r["inputs"]["vmm"] != "minivmm" or not res.get("round_series"):
            continue
        if len(res["round_series"]) < 2:
            continue
        if res.get("converged") and (conv is None or len(res["round_series"]) > len(conv["result"]["round_series"])):
            conv = r
        if res.get("converged") is False and nonconv is None:
            nonconv = r
    qemu_nc = None
    for r in runs:
        res = r.get("result") or {}
        if r["inputs"]["vmm"].startswith("qemu") and res.get("qmp_samples") and \
                (nonconv is not None and cell_key(r) == cell_key(nonconv)):
            qemu_nc = r
            break
    plots = []
    for r, label in ((conv, "converging"), (nonconv, "not converging")):
        if r is None:
            continue
        fn = os.path.join(outdir, "rounds-%s.dat" % label.replace(" ", "-"))
        write_dat(fn, [(s[0], s[1]) for s in r["result"]["round_series"]])
        plots.append("'%s' using 1:2 with linespoints lw 2 pt 7 title \"minivmm, %s: %s\"" % (
            fn, label, esc(human_inputs(r["inputs"]))))
    if qemu_nc:
        fn = os.path.join(outdir, "rounds-qemu.dat")
        write_dat(fn, [(s[0], (s[2] or 0) / 4096) for s in qemu_nc["result"]["qmp_samples"]])
        plots.append("'%s' using 1:2 with lines lw 1 dt 2 title \"%s: pages still to send (query-migrate, 20 ms)\"" % (
            fn, qemu_nc["inputs"]["vmm"]))
    if not plots:
        return None
    script = "\n".join([
        "set title \"Dirty pages per pre-copy round over time\\n{/*0.8 made by: %s; from --stats-json round\\\\_records}\"" % CMD,
        "set xlabel 'time since migrate command (ms)'", "set ylabel 'dirty pages at round start (4 KiB pages)'",
        "set grid", "set key below", "set logscale y",
        "plot " + ", \\\n     ".join(plots)])
    base = os.path.join(outdir, "rounds")
    return base if gnuplot(script, base) else None


def plot_honesty(runs, outdir):
    pts = {}
    for r in runs:
        res = r.get("result") or {}
        if res.get("outcome") != "completed" or res.get("gap_ms") is None:
            continue
        vmm = vmm_of(r)  # minivmm@LABEL: one series per --binary
        rep = res.get("downtime_ms") if vmm.startswith("minivmm") else res.get("qemu_downtime_ms")
        if rep is None:
            continue
        pts.setdefault(vmm, []).append((max(rep, 0.1), res["gap_ms"], r["inputs"]["period_ms"]))
    if not pts:
        return None
    plots = []
    for vmm in sorted(pts, key=vmm_sort):
        fn = os.path.join(outdir, "honesty-%s.dat" % vmm.replace("@", "-"))
        write_dat(fn, pts[vmm])
        plots.append("'%s' using 1:2 with points pt 7 ps 1.2 title \"%s (reported: %s)\"" % (
            fn, esc(vmm.replace("@", " ")),
            "downtime\\\\_ms" if vmm.startswith("minivmm") else "query-migrate downtime"))
    script = "\n".join([
        "set title \"Reported downtime vs downtime the guest saw\\n{/*0.8 made by: %s; "
        "points above the dashed line = the tool under-reports}\"" % CMD,
        "set xlabel 'downtime reported by the VMM (ms)'",
        "set ylabel 'guest-observed gap between heartbeats (ms)'",
        "set logscale xy", "set grid", "set key below",
        "plot " + ", \\\n     ".join(plots) +
        ", x with lines dt 2 lc 'black' title 'gap = reported', x+100 with lines dt 3 lc 'gray' "
        "title 'gap = reported + heartbeat period (100 ms)'"])
    base = os.path.join(outdir, "honesty")
    return base if gnuplot(script, base) else None


def results_of(arg):
    """(results file, default report folder) for a run folder or a .jsonl file."""
    p = os.path.abspath(arg)
    if os.path.isdir(p):
        return os.path.join(p, RESULTS_FILE), p
    return p, os.path.dirname(p)


def have_gnuplot(install=True):
    """gnuplot on PATH, installed from Debian if missing (as the bench runner does)."""
    if shutil.which("gnuplot") is None and install:
        import harness
        harness.ensure_packages(NEEDS, lambda m: print("report: " + m.split(": ", 1)[-1], file=sys.stderr))
    return shutil.which("gnuplot") is not None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="*", help="run folders (DIR/results.jsonl) or JSON-line files")
    ap.add_argument("--out", default=None, help="report folder; default: the folder of each "
                    "results file, each rendered on its own. With several inputs and --out, "
                    "one report of them all")
    ap.add_argument("--no-plots", action="store_true", help="tables only (no gnuplot)")
    a = ap.parse_args(argv)
    if not a.results:
        runs = sorted(os.path.relpath(os.path.dirname(p), ROOT) for p in
                      glob.glob(os.path.join(ROOT, "docs", "results", "*", RESULTS_FILE))
                      if any(o.get("kind") == "run" for o in jsonl.read_lines(p)[0]))
        print("report: which run? e.g. make bench-report BENCH_RESULTS=DIR, or report.py DIR; "
              "run folders here:\n  " + "\n  ".join(runs or ["(none)"]), file=sys.stderr)
        return 2
    if a.out is None and len(a.results) > 1:
        rc = 0
        for r in a.results:
            rc = max(rc, main([r] + (["--no-plots"] if a.no_plots else [])))
        return rc
    inputs = [results_of(r) for r in a.results]
    paths = [p for p, _ in inputs]
    out = os.path.abspath(a.out) if a.out else inputs[0][1]
    for p in paths:
        if not os.path.isfile(p):
            print("report: %s: no such results file" % p, file=sys.stderr)
            return 1
    if not a.no_plots and not have_gnuplot():
        print("report: gnuplot is missing and could not be installed (as root: apt-get update && "
              "apt-get install gnuplot-nox); nothing written. --no-plots for tables only",
              file=sys.stderr)
        return 1
    cwd = os.getcwd()
    try:
        return render(paths, out, not a.no_plots)
    finally:
        os.chdir(cwd)


def render(paths, out, with_plots):
    runs, ceilings, bad = load(paths)
    if not runs:
        print("report: no run lines in %s" % ", ".join(paths), file=sys.stderr)
        return 1
    pdir = os.path.join(out, "plots")
    # what an earlier rendering of this report left (only this folder's plots)
    for old in glob.glob(os.path.join(pdir, "*")):
        if old.endswith((".dat", ".gp", ".svg", ".png")):
            os.remove(old)
    os.makedirs(pdir, exist_ok=True)
    made = []
    del GNUPLOT_FAILED[:]
    if with_plots:
        os.chdir(out)  # keep paths inside the .gp files relative
        rel = "plots"
        made.append(("Total time and bytes vs working set", plot_vs(
            runs, rel, "wss", "working set (MiB)",
            [("total_ms", "total migration time (ms)", 1), ("bytes_total", "data sent (MiB)", 1 / (1 << 20))],
            "total-vs-wss", "Total migration time and data sent vs working set",
            lambda r: r["inputs"]["wss"], logy=True)))
        made.append(("Downtime and guest gap vs dirty rate", plot_vs(
            runs, rel, "rate", "guest dirty rate (pages/s; max placed at its measured rate)",
            [("downtime_ms", "downtime, ours (ms)", 1), ("gap_ms", "guest-observed gap (ms)", 1)],
            "downtime-vs-rate", "Downtime (source pause to guest running on target) and guest-observed gap vs dirty rate",
            rate_x, logx=True, logy=True)))
        made.append(("Dirty pages per round", plot_rounds(runs, rel)))
        made.append(("Reported downtime vs guest-observed gap", plot_honesty(runs, rel)))
    md = ["# Benchmark results", "",
          "Generated by `%s` (tests/bench/report.py) from %s%s. Every figure: median [min-max] over "
          "the repeats; definitions in docs/benchmarking.md." % (
              CMD, ", ".join("`%s`" % os.path.relpath(p, ROOT) for p in paths),
              " (the matrix as run: `matrix.conf` beside it)" if
              os.path.exists(os.path.join(os.path.dirname(paths[0]), "matrix.conf")) else ""), "",
          "## Machine (facts and ceilings measured in the same run)", "", machine_table(ceilings, runs)]
    if bad:
        md.append("(%d unreadable lines skipped)\n" % bad)
    plots = [(t, b) for t, b in made if b]
    if plots:
        md.append("## Plots\n")
        for t, b in plots:
            md.append("### %s\n\n![%s](%s.svg)\n\n([PNG](%s.png), [gnuplot script](%s.gp))\n" % (t, t, b, b, b))
    md.append(tables(runs))
    with open(os.path.join(out, "index.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print("report: %d runs -> %s (%d plots)" % (len(runs), os.path.relpath(os.path.join(out, "index.md"), ROOT),
                                                 len(plots)))
    return 1 if GNUPLOT_FAILED else 0


if __name__ == "__main__":
    sys.exit(main())

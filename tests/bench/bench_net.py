#!/usr/bin/env python3
"""Issue 9's measurement (`make bench-net`): the net guest (build/guests/net.elf)
answering pings through a live migration, on minivmm and on QEMU, in one run.

Everything runs inside one network namespace made here (bridge br0
10.77.0.1/24, the guest 10.77.0.2) and deleted at the end, also after an
error or Ctrl-C. Per repeat, VMM, guest load (idle, wss=64) and ping interval
(1 ms, 5 ms): start the target, boot the source, start
`ping -D -n -i I -c N -W 2 10.77.0.2`, migrate after ~1.5 s of pinging, and
count pings lost, duplicated, the longest interval between two replies, and
the VMM's downtime (minivmm: the source's --stats-json `downtime_ms`; QEMU:
`query-migrate` "downtime"). Then, without migration, per VMM: the round trip
of 2000 pings at 1 ms (p50/p99), `ping -f -c 5000` and `ping -i 0.0002
-c 5000` success rates.

    python3 tests/bench/bench_net.py [--repeats N] [--out DIR] [--quick]

Writes DIR/results.jsonl (one JSON line per run plus a `kind: "machine"`
line) and DIR/index.md (tables); DIR defaults to
docs/results/net-YYYYmmddTHHMMSSZ/ (UTC start). Needs root, /dev/kvm and
/dev/net/tun; installs qemu-system-x86, iproute2 and iputils-ping when
missing. `python3 tests/bench/bench_net.py report DIR` renders DIR/index.md
again from DIR/results.jsonl.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import jsonl  # noqa: E402

NET_ELF = os.path.join(ROOT, "build", "guests", "net.elf")
MINIVMM = os.path.join(ROOT, "minivmm")
GUEST_IP = "10.77.0.2"
GUEST_MAC = "52:54:00:77:00:02"
HOST_IP = "10.77.0.1/24"
MEM = "256M"
WSS = (0, 64)
INTERVALS = ("0.001", "0.005")
PING_SECONDS = 6.0       # pinging per migration run; the migration starts after MIGRATE_AFTER
MIGRATE_AFTER = 1.5
DOWNTIME_MS = 30
QEMU_UNLIMITED_BW = 1 << 40

PACKAGES = {"qemu-system-x86_64": "qemu-system-x86", "ip": "iproute2", "ping": "iputils-ping"}


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


# ---------------------------------------------------------------- parsing and statistics

TS_RE = re.compile(r"^\[(\d+\.\d+)\]")
RTT_RE = re.compile(r"\btime=([\d.]+) ms")
SEQ_RE = re.compile(r"\bicmp_seq=(\d+)")
SUMMARY_RE = re.compile(r"^(\d+) packets transmitted, (\d+) received(?:, \+(\d+) duplicates)?")


def parse_ping(text):
    """Figures of `ping -D` output (also of `ping -f`, summary only): sent,
    received (without duplicates, as ping counts), lost, dup, max_gap_ms (the
    longest interval between consecutive non-duplicate replies, from the -D
    timestamps), rtt_ms (the round trips of the replies, in order), and
    gap_at (the timestamp of the reply that ended the longest gap)."""
    sent = received_summary = dup_summary = None
    last = None
    gap, gap_at = 0.0, None
    received = dup = 0
    rtts, replies, seqs = [], [], set()
    for line in text.splitlines():
        m = SUMMARY_RE.match(line)
        if m:
            sent, received_summary = int(m.group(1)), int(m.group(2))
            dup_summary = int(m.group(3) or 0)
            continue
        if "bytes from" not in line:
            continue
        if "DUP!" in line:
            dup += 1
            continue
        received += 1
        q = SEQ_RE.search(line)
        if q:
            seqs.add(int(q.group(1)))
        r = RTT_RE.search(line)
        if r:
            rtts.append(float(r.group(1)))
        t = TS_RE.match(line)
        if not t:
            continue
        ts = float(t.group(1))
        replies.append(ts)
        if last is not None and (ts - last) * 1000.0 > gap:
            gap, gap_at = (ts - last) * 1000.0, ts
        last = ts
    if received_summary is not None and received == 0:
        received, dup = received_summary, dup_summary   # flood output: no reply lines
    missing = [q for q in range(1, sent + 1) if q not in seqs] if sent and seqs else []
    return {"sent": sent, "received": received,
            "lost": (sent - received) if sent is not None else None,
            "dup": dup, "max_gap_ms": round(gap, 3), "gap_at": gap_at, "rtt_ms": rtts,
            "reply_ts": replies, "missing_seq": missing[:50]}


def gap_around(reply_ts, t, before=0.3, after=0.3):
    """The longest interval (ms) between consecutive replies that ends within
    [t - before, t + after] (t: when the migration ended): the switchover's gap,
    apart from stalls elsewhere in the run. Also returns when that gap ended."""
    best, at = 0.0, None
    for a, b in zip(reply_ts, reply_ts[1:]):
        if t - before <= b <= t + after and (b - a) * 1000.0 > best:
            best, at = (b - a) * 1000.0, b
    return round(best, 3), at


def gap_at_announce(reply_ts, frames):
    """The switchover's gap pinned down by the first ARP/RARP frame of the
    guest's MAC once pinging has begun (minivmm's target sends its RARP as the
    state is loaded, just before the guest resumes; QEMU announces as the guest
    resumes): the longest interval between consecutive replies that spans
    that frame or ended at most 20 ms before it. Unlike gap_around, a host
    stall elsewhere in the +-0.3 s window does not count. (ms, frame time)."""
    if not reply_ts:
        return None, None
    t = next((f["t"] for f in frames if f["t"] > reply_ts[0]), None)
    if t is None:
        return None, None
    best = None
    for a, b in zip(reply_ts, reply_ts[1:]):
        if a <= t and b >= t - 0.02:
            g = (b - a) * 1000.0
            best = g if best is None or g > best else best
    return (round(best, 3) if best is not None else None), t


def gaps_over(reply_ts, ms):
    """How many intervals between consecutive replies exceed ms."""
    return sum(1 for a, b in zip(reply_ts, reply_ts[1:]) if (b - a) * 1000.0 > ms)


def percentile(values, p):
    """The p-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        return None
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(v) - 1)
    return v[f] + (v[c] - v[f]) * (k - f)


def summary(values):
    """(median, min, max) of the numbers in values, ignoring None; None if none."""
    v = [x for x in values if x is not None]
    if not v:
        return None
    return (percentile(v, 50), min(v), max(v))


def fmt_summary(s, digits=1):
    if s is None:
        return "-"
    med, lo, hi = s
    f = "%%.%df" % digits
    if lo == hi:
        return f % med
    return (f + " [" + f + "-" + f + "]") % (med, lo, hi)


# ---------------------------------------------------------------- namespace

class Netns:
    def __init__(self, name):
        self.name = name

    def up(self, taps):
        harness.sh(["ip", "netns", "del", self.name])
        for c in (["ip", "netns", "add", self.name],
                  ["ip", "-n", self.name, "link", "set", "lo", "up"],
                  ["ip", "-n", self.name, "link", "add", "br0", "type", "bridge"],
                  ["ip", "-n", self.name, "link", "set", "br0", "type", "bridge",
                   "forward_delay", "0", "stp_state", "0"],
                  # fixed: a bridge takes its ports' lowest MAC, which changes
                  # when the source's tap goes (the guest's replies to the old
                  # one are lost: runs before this measured that, not the VMM)
                  ["ip", "-n", self.name, "link", "set", "br0", "address", "02:00:00:77:00:01"],
                  ["ip", "-n", self.name, "addr", "add", HOST_IP, "dev", "br0"],
                  ["ip", "-n", self.name, "link", "set", "br0", "up"]):
            harness.sh(c, check=True)
        self.x(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1"])
        for t in taps:   # QEMU's taps (minivmm makes its own)
            harness.sh(["ip", "-n", self.name, "tuntap", "add", "dev", t, "mode", "tap"], check=True)
            harness.sh(["ip", "-n", self.name, "link", "set", t, "master", "br0"], check=True)
            harness.sh(["ip", "-n", self.name, "link", "set", t, "up"], check=True)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]   # execs (no fork): Popen's pid is the command

    def x(self, cmd, timeout=60):
        return harness.sh(self.prefix() + cmd, timeout=timeout)

    def down(self):
        harness.sh(["ip", "netns", "del", self.name])


# ---------------------------------------------------------------- processes

class Procs:
    """Every process this run started, killed by its own pid at the end."""

    def __init__(self):
        self.procs = []

    def start(self, cmd, workdir, tag, stdin=True):
        err = open(os.path.join(workdir, tag + ".stderr"), "wb")
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=err)
        p.con = harness.Console(p.stdout, tag)
        p.errpath = os.path.join(workdir, tag + ".stderr")
        self.procs.append(p)
        return p

    def kill_all(self):
        for p in self.procs:
            harness.kill(p, grace=2.0)
        self.procs = []


def send(p, data):
    try:
        p.stdin.write(data)
        p.stdin.flush()
    except (OSError, ValueError):
        pass


def stderr_has(p, text):
    try:
        with open(p.errpath, "rb") as f:
            return text.encode() in f.read()
    except OSError:
        return False


def save_console(workdir, tag, p):
    with open(os.path.join(workdir, tag + ".console"), "w") as f:
        for t, line in p.con.lines:
            f.write("%.6f %s\n" % (t, line))


def guest_append(wss):
    return "ip=%s/24%s" % (GUEST_IP, " wss=%d" % wss if wss else "")


def qemu_cmd(tap, qmp, incoming):
    c = harness.qemu_cmd(NET_ELF, None, int(MEM[:-1]) << 20, 1, qmp, incoming=incoming)
    return c + ["-device", "virtio-net-pci,netdev=n0,disable-legacy=on,mac=%s" % GUEST_MAC,
                "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % tap]


def start_ping(ns, procs, workdir, interval, count, tag="ping", extra=()):
    cmd = ns.prefix() + ["ping", "-D", "-n", "-i", interval, "-c", str(count), "-W", "2"] + \
        list(extra) + [GUEST_IP]
    return procs.start(cmd, workdir, tag, stdin=False)


def ping_result(p, timeout):
    rc, _ = harness.wait_rusage(p, timeout)
    if rc is None:
        harness.kill(p, signal.SIGINT)   # SIGINT: ping prints its summary
    time.sleep(0.1)
    p.con.join(2)
    return parse_ping("\n".join(l for _, l in p.con.lines))


class Sniffer:
    """ARP and RARP frames from the guest's MAC on br0, timestamped (realtime)."""
    CODE = r"""
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind(("br0", 0))
mac = bytes.fromhex(sys.argv[1].replace(":", ""))
while True:
    f = s.recv(2048)
    et = f[12:14]
    if f[6:12] == mac and et in (b"\x08\x06", b"\x80\x35"):
        print("%.6f %s op=%d" % (time.time(), "arp" if et == b"\x08\x06" else "rarp",
              int.from_bytes(f[20:22], "big")), flush=True)
"""

    def __init__(self, ns, procs, workdir):
        self.p = procs.start(ns.prefix() + ["python3", "-c", self.CODE, GUEST_MAC], workdir,
                             "sniff", stdin=False)

    def frames(self, t_from):
        out = []
        for _, line in list(self.p.con.lines):
            parts = line.split()
            if len(parts) == 3 and float(parts[0]) >= t_from:
                out.append({"t": float(parts[0]), "kind": parts[1], "op": parts[2]})
        return out


# ---------------------------------------------------------------- one migration run

def migrate_minivmm(ns, procs, d, wss, interval, res):
    port = 4000 + os.getpid() % 1000
    src_stats, tgt_stats = os.path.join(d, "source-stats.json"), os.path.join(d, "target-stats.json")
    name = "bnet-%d" % os.getpid()
    tgt_cmd = ns.prefix() + [MINIVMM, "--incoming", "127.0.0.1:%d" % port, "--net", "tap=mvt0",
                             "--stats-json", tgt_stats]
    src_cmd = ns.prefix() + [MINIVMM, "--kernel", NET_ELF, "--append", guest_append(wss),
                             "--mem", MEM, "--name", name,
                             "--net", "tap=mvs0,bridge=br0,mac=%s" % GUEST_MAC,
                             "--migrate", "127.0.0.1:%d" % port, "--migrate-after", "3",
                             "--downtime-ms", str(DOWNTIME_MS), "--stats-json", src_stats]
    res["commands"] = {"target": tgt_cmd, "source": src_cmd}
    tgt = procs.start(tgt_cmd, d, "target")
    end = time.monotonic() + 10
    while not stderr_has(tgt, "waiting for a migration") and time.monotonic() < end:
        time.sleep(0.02)
    src = procs.start(src_cmd, d, "source")
    if src.con.wait_for(r"^net: up", 30) is None:
        raise RuntimeError("minivmm source: no 'net: up'")
    # --migrate-after counts from the start: ~1 s of boot margin, then ~1.5 s of pings
    time.sleep(1.0)
    count = int(PING_SECONDS / float(interval))
    ping = start_ping(ns, procs, d, interval, count)
    rc, _ = harness.wait_rusage(src, 60)
    t_src_exit = time.time()
    res["source_exit"] = rc
    pr = ping_result(ping, PING_SECONDS * 3 + 10)
    stats = harness._load_json(src_stats) or {}
    res["downtime_ms"] = stats.get("downtime_ms")
    res["total_ms"] = stats.get("total_ms")
    res["outcome"] = stats.get("result") or ("completed" if rc == 0 else "failed (%s)" % rc)
    res["target_stats"] = {k: (harness._load_json(tgt_stats) or {}).get(k)
                           for k in ("downtime_ms", "total_ms", "result")}
    res["t_migration_end"] = t_src_exit
    return tgt, pr


def migrate_qemu(ns, procs, d, wss, interval, res):
    port = 5000 + os.getpid() % 1000
    sq, tq = os.path.join(d, "src.qmp"), os.path.join(d, "tgt.qmp")
    tgt_cmd = ns.prefix() + qemu_cmd("qt0", tq, True)
    src_cmd = ns.prefix() + qemu_cmd("qs0", sq, False)
    for c in (tgt_cmd, src_cmd):
        c += ["-append", guest_append(wss)]
    res["commands"] = {"target": tgt_cmd, "source": src_cmd}
    tgt = procs.start(tgt_cmd, d, "target")
    src = procs.start(src_cmd, d, "source")
    tqmp, sqmp = harness.QMP(tq), harness.QMP(sq)
    try:
        sqmp.cmd("migrate-set-parameters", {"downtime-limit": DOWNTIME_MS,
                                            "max-bandwidth": QEMU_UNLIMITED_BW})
        tqmp.cmd("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port})
        params = tqmp.cmd("query-migrate-parameters")
        res["target_announce"] = {k: v for k, v in params.items() if k.startswith("announce")}
        if src.con.wait_for(r"^net: up", 60) is None:
            raise RuntimeError("qemu source: no 'net: up'")
        count = int(PING_SECONDS / float(interval))
        ping = start_ping(ns, procs, d, interval, count)
        time.sleep(MIGRATE_AFTER)
        t_mig = time.monotonic()
        sqmp.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % port})
        info = {}
        while time.monotonic() - t_mig < 60:
            info = sqmp.cmd("query-migrate")
            if info.get("status") in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.02)
        res["t_migration_end"] = time.time()
        res["outcome"] = info.get("status")
        if info.get("status") not in ("completed", "failed", "cancelled"):
            sqmp.cmd("migrate_cancel")
            res["outcome"] = "timeout"
        res["downtime_ms"] = info.get("downtime")
        res["total_ms"] = info.get("total-time")
        pr = ping_result(ping, PING_SECONDS * 3 + 10)
    finally:
        tqmp.close()
        sqmp.close()
    return tgt, pr


def migration_run(ns, procs, out, rep, vmm, wss, interval):
    run_id = "mig/%s/wss=%d/i=%s/r%d" % (vmm, wss, interval, rep)
    d = os.path.join("/tmp", "bench-net-%d" % os.getpid(), re.sub(r"[^A-Za-z0-9.]", "_", run_id))
    os.makedirs(d, exist_ok=True)
    res = {"kind": "migration", "run_id": run_id, "vmm": vmm, "wss": wss, "interval_s": float(interval),
           "repeat": rep, "mem": MEM, "downtime_limit_ms": DOWNTIME_MS,
           "loadavg_before": os.getloadavg()[0]}
    t0 = time.time()
    sniff = Sniffer(ns, procs, d)
    harness.sh(ns.prefix() + ["ip", "neigh", "flush", "dev", "br0"])
    try:
        tgt, pr = (migrate_minivmm if vmm == "minivmm" else migrate_qemu)(ns, procs, d, wss, interval, res)
        send(tgt, b"v")
        res["verify"] = "pass" if tgt.con.wait_for(r"verify: pass", 20) is not None else "none"
        time.sleep(0.3)
        res["announce_frames"] = sniff.frames(t0)
        for tag, p in (("target", tgt),):
            save_console(d, tag, p)
        rtt = pr.pop("rtt_ms")
        rts = pr.pop("reply_ts")
        res.update(pr)
        if res.get("t_migration_end"):
            res["switch_gap_ms"], at = gap_around(rts, res["t_migration_end"])
            res["switch_gap_end_after_migration_s"] = round(at - res["t_migration_end"], 3) if at else None
        res["switch_gap_at_announce_ms"], _ = gap_at_announce(rts, res["announce_frames"])
        res["gaps_over_10ms"] = gaps_over(rts, 10.0)
        res["rtt_p50_ms"] = percentile(rtt, 50)
        dt = res.get("downtime_ms")
        res["gap_minus_downtime_ms"] = round(pr["max_gap_ms"] - dt, 3) if dt is not None else None
        if dt is not None and res.get("switch_gap_ms") is not None:
            res["switch_gap_minus_downtime_ms"] = round(res["switch_gap_ms"] - dt, 3)
        if dt is not None and res.get("switch_gap_at_announce_ms") is not None:
            res["announce_gap_minus_downtime_ms"] = round(res["switch_gap_at_announce_ms"] - dt, 3)
        if pr.get("gap_at") and res.get("t_migration_end"):
            res["gap_end_after_migration_s"] = round(pr["gap_at"] - res["t_migration_end"], 3)
        res["status"] = "ok" if res.get("outcome") == "completed" else "failed"
    except Exception as e:   # a failed run is recorded, the run goes on
        res["status"] = "harness-error"
        res["error"] = str(e)
    finally:
        procs.kill_all()
    res["loadavg_after"] = os.getloadavg()[0]
    res["wall_s"] = round(time.time() - t0, 2)
    jsonl.append_line(os.path.join(out, "results.jsonl"), res)
    log("%s: %s lost=%s dup=%s gap=%.1f ms downtime=%s ms" % (
        run_id, res["status"], res.get("lost"), res.get("dup"), res.get("max_gap_ms") or 0,
        res.get("downtime_ms")))
    return res


# ---------------------------------------------------------------- without migration

def baseline_run(ns, procs, out, vmm):
    d = os.path.join("/tmp", "bench-net-%d" % os.getpid(), "base_" + vmm)
    os.makedirs(d, exist_ok=True)
    res = {"kind": "baseline", "run_id": "base/%s" % vmm, "vmm": vmm, "wss": 0, "mem": MEM,
           "loadavg_before": os.getloadavg()[0]}
    try:
        if vmm == "minivmm":
            vm = procs.start(ns.prefix() + [MINIVMM, "--kernel", NET_ELF, "--append", guest_append(0),
                                            "--mem", MEM, "--name", "bnetb-%d" % os.getpid(),
                                            "--net", "tap=mvb0,bridge=br0,mac=%s" % GUEST_MAC], d, "vm")
        else:
            c = ns.prefix() + qemu_cmd("qs0", os.path.join(d, "vm.qmp"), False) + ["-append", guest_append(0)]
            vm = procs.start(c, d, "vm")
        if vm.con.wait_for(r"^net: up", 60) is None:
            raise RuntimeError("%s: no 'net: up'" % vmm)
        time.sleep(0.5)
        ns.x(["ping", "-n", "-q", "-c", "20", "-i", "0.01", GUEST_IP])   # warm ARP, caches
        p = start_ping(ns, procs, d, "0.001", 2000, "rtt")
        pr = ping_result(p, 60)
        rtt = pr["rtt_ms"]
        res.update({"rtt_n": len(rtt), "rtt_lost": pr["lost"], "rtt_p50_ms": percentile(rtt, 50),
                    "rtt_p90_ms": percentile(rtt, 90), "rtt_p99_ms": percentile(rtt, 99),
                    "rtt_max_ms": max(rtt) if rtt else None})
        # The migration runs' pings with nothing migrating: the longest
        # reply gap this machine gives a guest on its own, which the
        # issue's "longest gap <= downtime + 2 ms" cannot go below.
        res["nomig"] = {}
        for iv in INTERVALS:
            p = start_ping(ns, procs, d, iv, int(PING_SECONDS / float(iv)), "nomig" + iv)
            pr = ping_result(p, PING_SECONDS * 3 + 10)
            res["nomig"][iv] = {"lost": pr["lost"], "max_gap_ms": pr["max_gap_ms"],
                                "gaps_over_10ms": gaps_over(pr["reply_ts"], 10.0)}
        for tag, extra, iv in (("flood", ["-f", "-q"], None), ("i0.2ms", ["-q"], "0.0002")):
            t = time.monotonic()
            cmd = ns.prefix() + ["ping", "-n", "-c", "5000", "-W", "1"] + extra + \
                (["-i", iv] if iv else []) + [GUEST_IP]
            r = harness.sh(cmd, timeout=120)
            el = time.monotonic() - t
            fp = parse_ping(r.stdout)
            res[tag] = {"sent": fp["sent"], "received": fp["received"],
                        "success": round(fp["received"] / fp["sent"], 4) if fp["sent"] else None,
                        "wall_s": round(el, 3),
                        "replies_per_s": round(fp["received"] / el, 1) if el else None,
                        "summary": [l for l in r.stdout.splitlines() if "packets" in l or "rtt" in l]}
        res["status"] = "ok"
    except Exception as e:
        res["status"] = "harness-error"
        res["error"] = str(e)
    finally:
        procs.kill_all()
    res["loadavg_after"] = os.getloadavg()[0]
    jsonl.append_line(os.path.join(out, "results.jsonl"), res)
    log("%s: %s rtt p50=%s p99=%s flood=%s" % (res["run_id"], res["status"], res.get("rtt_p50_ms"),
                                               res.get("rtt_p99_ms"), (res.get("flood") or {}).get("success")))
    return res


# ---------------------------------------------------------------- report

def report(out):
    lines, _ = jsonl.read_lines(os.path.join(out, "results.jsonl"))
    machine = next((l for l in lines if l.get("kind") == "machine"), {})
    end = next((l for l in lines if l.get("kind") == "end"), {})
    mig = [l for l in lines if l.get("kind") == "migration"]
    base = [l for l in lines if l.get("kind") == "baseline"]
    md = ["# Network: pings through a migration (issue 9)", ""]
    f = machine.get("facts", {})
    md.append("Run %s, command `%s`; %s cores (%s), kernel %s, %s; minivmm commit %s%s; "
              "load average %s at the start, %s at the end (other users' tests ran meanwhile)." % (
                  f.get("date_utc"), machine.get("command"), f.get("cores"), f.get("cpu_model"),
                  f.get("kernel"), f.get("qemu_version"), (f.get("minivmm_commit") or "")[:8],
                  " (dirty tree)" if f.get("minivmm_tree_dirty") else "", f.get("loadavg"),
                  end.get("loadavg")))
    md.append("")
    md.append("Guest `net.elf`, %s RAM, 1 vCPU, `ip=10.77.0.2/24` (+ `wss=64`, rate max); downtime limit "
              "%d ms; QEMU: virtio-net-pci (modern) on a tap, userspace virtio (no vhost), migration "
              "`tcp:127.0.0.1`, max-bandwidth unlimited, its own announce after migration. Pinging "
              "%.0f s per run, the migration ~%.1f s in. Median [min-max] of the repeats. \"Longest reply gap\": over the "
              "whole run; \"gap at the switchover\": the longest that ended within 0.3 s of the migration's end "
              "(minivmm: the source exited; QEMU: query-migrate said completed, polled every 20 ms); "
              "\"gap at the announce\": the one spanning the first ARP/RARP of the guest's MAC after "
              "pinging began (or ending up to 20 ms before it), which host stalls near the switchover "
              "do not enter." % (
                  MEM, DOWNTIME_MS, PING_SECONDS, MIGRATE_AFTER))
    md.append("")
    md.append("| VMM | guest | interval | runs | lost | dup | longest reply gap ms | gap at the switchover ms | downtime ms | switchover gap - downtime ms | gap at the announce ms | announce gap - downtime ms | gaps > 10 ms |")
    md.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(l["vmm"], l["wss"], l["interval_s"]) for l in mig},
                  key=lambda k: (k[2], k[1], k[0] != "minivmm"))
    for vmm, wss, iv in keys:
        rs = [l for l in mig if (l["vmm"], l["wss"], l["interval_s"]) == (vmm, wss, iv)]
        ok = [l for l in rs if l.get("status") == "ok"]
        md.append("| %s | %s | %g ms | %d%s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            vmm, "wss=%d" % wss if wss else "idle", iv * 1000, len(ok),
            "" if len(ok) == len(rs) else " (+%d failed)" % (len(rs) - len(ok)),
            fmt_summary(summary(l.get("lost") for l in ok), 0),
            fmt_summary(summary(l.get("dup") for l in ok), 0),
            fmt_summary(summary(l.get("max_gap_ms") for l in ok)),
            fmt_summary(summary(l.get("switch_gap_ms") for l in ok)),
            fmt_summary(summary(l.get("downtime_ms") for l in ok)),
            fmt_summary(summary(l.get("switch_gap_minus_downtime_ms") for l in ok)),
            fmt_summary(summary(l.get("switch_gap_at_announce_ms") for l in ok)),
            fmt_summary(summary(l.get("announce_gap_minus_downtime_ms") for l in ok)),
            fmt_summary(summary(l.get("gaps_over_10ms") for l in ok), 0)))
    md.append("")
    if base:
        md.append("Without migration (idle guest): round trip of 2000 pings at 1 ms, and 5000 pings "
                  "flooded (`ping -f`) and at 0.2 ms (`-i 0.0002`).")
        md.append("")
        md.append("| VMM | rtt p50 ms | rtt p90 ms | rtt p99 ms | rtt max ms | lost of 2000 | flood answered | flood replies/s | 0.2 ms answered |")
        md.append("|---|---|---|---|---|---|---|---|---|")
        for b in base:
            if b.get("status") != "ok":
                md.append("| %s | failed: %s |||||||| " % (b["vmm"], b.get("error")))
                continue
            md.append("| %s | %.3f | %.3f | %.3f | %.3f | %d | %.2f%% | %.0f | %.2f%% |" % (
                b["vmm"], b["rtt_p50_ms"], b["rtt_p90_ms"], b["rtt_p99_ms"], b["rtt_max_ms"],
                b["rtt_lost"], 100 * b["flood"]["success"], b["flood"]["replies_per_s"],
                100 * b["i0.2ms"]["success"]))
        md.append("")
        nm = [b for b in base if b.get("status") == "ok" and b.get("nomig")]
        if nm:
            md.append("Without migration (idle guest), the migration runs' pings (%.0f s worth at each "
                      "interval): the longest reply gap the machine gives on its own." % PING_SECONDS)
            md.append("")
            md.append("| VMM | interval | lost | longest reply gap ms | gaps > 10 ms |")
            md.append("|---|---|---|---|---|")
            for b in nm:
                for iv in sorted(b["nomig"], key=float):
                    g = b["nomig"][iv]
                    md.append("| %s | %g ms | %s | %.1f | %d |" % (b["vmm"], float(iv) * 1000, g["lost"],
                                                             g["max_gap_ms"] or 0, g["gaps_over_10ms"]))
            md.append("")
    ann = [l for l in mig if l.get("vmm") == "qemu" and l.get("target_announce")]
    if ann:
        md.append("QEMU target's announce parameters (query-migrate-parameters): `%s`." %
                  json.dumps(ann[0]["target_announce"], sort_keys=True))
    fr = {}
    for l in mig:
        fr.setdefault(l["vmm"], []).append(len(l.get("announce_frames") or []))
    md.append("ARP/RARP frames from the guest's MAC seen on br0 per run (boot + after the "
              "migration): %s." % "; ".join("%s %s" % (k, fmt_summary(summary(v), 0)) for k, v in sorted(fr.items())))
    md.append("")
    with open(os.path.join(out, "index.md"), "w") as fh:
        fh.write("\n".join(md) + "\n")
    return "\n".join(md)


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", nargs="?", default="run", choices=["run", "report"])
    ap.add_argument("dir", nargs="?")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    ap.add_argument("--vmms", default="minivmm,qemu")
    a = ap.parse_args()
    if a.what == "report":
        print(report(a.dir))
        return 0
    if os.geteuid() != 0:
        log("bench-net: needs root (network namespaces, taps)")
        return 2
    if not harness.ensure_packages(PACKAGES, log=log):
        return 2
    for f in ("/dev/kvm", "/dev/net/tun", NET_ELF, MINIVMM):
        if not os.path.exists(f):
            log("bench-net: %s is missing (make -j2 minivmm guests)" % f)
            return 2
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    out = a.out or os.path.join(ROOT, "docs", "results", "net-" + stamp)
    if os.path.exists(os.path.join(out, "results.jsonl")):
        log("bench-net: %s already holds results" % out)
        return 2
    os.makedirs(out, exist_ok=True)
    log("bench-net: results in %s" % out)
    vmms = a.vmms.split(",")
    jsonl.append_line(os.path.join(out, "results.jsonl"), {
        "kind": "machine", "facts": harness.machine_facts(),
        "command": " ".join(["python3", "tests/bench/bench_net.py"] + sys.argv[1:]),
        "repeats": a.repeats, "vmms": vmms})
    ns = Netns("bnet-%d" % os.getpid())
    procs = Procs()
    stop = []
    signal.signal(signal.SIGTERM, lambda s, f: stop.append(s) or (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        ns.up(["qs0", "qt0"])
        for vmm in vmms:
            baseline_run(ns, procs, out, vmm)
        for rep in range(a.repeats):
            for wss in WSS:
                for iv in INTERVALS:
                    for vmm in (vmms if rep % 2 == 0 else vmms[::-1]):
                        migration_run(ns, procs, out, rep, vmm, wss, iv)
    except KeyboardInterrupt:
        log("bench-net: interrupted; reporting the runs that finished")
    finally:
        procs.kill_all()
        ns.down()
    # the end-of-run load, for the report's header
    jsonl.append_line(os.path.join(out, "results.jsonl"), {"kind": "end", "loadavg": os.getloadavg()[0]})
    print(report(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark harness: machine facts, console capture, QMP client, network
namespaces and one migration run per VMM (minivmm or QEMU).

Every time the harness records is time.monotonic() of this process, taken
when a console line or QMP message was read; QEMU's event timestamps
(CLOCK_REALTIME, microseconds) are kept beside them.
"""

import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
QEMU = "qemu-system-x86_64"

HB_RE = re.compile(r"\bseq=(\d+)")
RATE_RE = re.compile(r"\brate=(\d+)")
STALL_RE = re.compile(r"\bstall_us=(\d+)")
VERIFY_RE = re.compile(r"^\s*(?:\w+:\s*)?verify:\s*(pass|FAIL)\b(.*)$")


# ---------------------------------------------------------------- utilities

def sh(cmd, check=False, timeout=60):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (cmd, r.stderr.strip()))
    return r


def ensure_packages(pkgs, log=print):
    """apt-get install the Debian packages whose command is missing ({cmd: pkg})."""
    missing = sorted({pkg for cmd, pkg in pkgs.items() if not shutil.which(cmd)})
    if not missing:
        return True
    log("bench: installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = subprocess.run(["apt-get", "install", "-y"] + missing, env=env, capture_output=True, text=True)
    if r.returncode:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        r = subprocess.run(["apt-get", "install", "-y"] + missing, env=env, capture_output=True, text=True)
    if r.returncode:
        log("bench: apt-get install %s failed: %s" % (" ".join(missing), r.stderr.strip()[-300:]))
        return False
    return True


def machine_facts():
    f = {"hostname": platform.node(), "kernel": platform.release(), "arch": platform.machine(),
         "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            info = fh.read()
        m = re.search(r"^model name\s*:\s*(.*)$", info, re.M)
        f["cpu_model"] = m.group(1).strip() if m else None
        flags = re.search(r"^flags\s*:\s*(.*)$", info, re.M)
        fl = flags.group(1).split() if flags else []
        f["cpu_hypervisor_flag"] = "hypervisor" in fl
        f["cpu_vmx_svm"] = "vmx" in fl or "svm" in fl
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            f["mem_total_kib"] = int(re.search(r"MemTotal:\s*(\d+)", fh.read()).group(1))
    except (OSError, AttributeError):
        pass
    mods = sorted(m for m in os.listdir("/sys/module") if m.startswith("kvm")) if os.path.isdir("/sys/module") else []
    f["kvm_modules"] = mods
    flavour = [m for m in mods if m != "kvm"]
    f["kvm_flavour"] = flavour[0] if flavour else ("kvm" if mods else None)
    q = shutil.which(QEMU)
    if q:
        r = sh([q, "--version"])
        f["qemu_version"] = r.stdout.splitlines()[0] if r.stdout else None
    r = sh(["git", "-C", ROOT, "rev-parse", "HEAD"])
    f["minivmm_commit"] = r.stdout.strip() or None
    r = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    f["minivmm_tree_dirty"] = bool(r.stdout.strip())
    f["date_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        f["loadavg"] = os.getloadavg()[0]
    except OSError:
        pass
    return f


def wait_rusage(proc, timeout):
    """Wait for a Popen child with wait4; returns (returncode, rusage) or (None, None)."""
    end = time.monotonic() + timeout
    last_hwm = 0.0
    while True:
        now = time.monotonic()
        if now - last_hwm > 0.05:
            last_hwm = now
            h = vm_hwm_kib(proc.pid)
            if h:
                proc.hwm_kib = max(h, getattr(proc, "hwm_kib", 0))
        try:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        except ChildProcessError:
            return proc.returncode, None
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru
        if time.monotonic() >= end:
            return None, None
        time.sleep(0.005)


def vm_hwm_kib(pid):
    """Peak RSS of a live process (VmHWM). Unlike wait4's ru_maxrss, it does not
    include the Python image the child was forked from."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def kill(proc, sig=signal.SIGTERM, grace=3.0):
    if proc is None or proc.returncode is not None:
        return None
    h = vm_hwm_kib(proc.pid)
    if h:
        proc.hwm_kib = max(h, getattr(proc, "hwm_kib", 0))
    try:
        proc.send_signal(sig)
    except ProcessLookupError:
        pass
    rc, ru = wait_rusage(proc, grace)
    if rc is None:
        try:
            proc.kill()
        except ProcessLookupError:
            pass
        rc, ru = wait_rusage(proc, 5)
    return ru


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------- console

class Console(threading.Thread):
    """Reads a child's stdout line by line and timestamps each line."""

    def __init__(self, stream, tag):
        super().__init__(daemon=True)
        self.stream, self.tag = stream, tag
        self.lines = []  # (monotonic, text)
        self.cv = threading.Condition()
        self.eof = False
        self.start()

    def run(self):
        for raw in iter(self.stream.readline, b""):
            t = time.monotonic()
            with self.cv:
                self.lines.append((t, raw.decode("utf-8", "replace").rstrip("\r\n")))
                self.cv.notify_all()
        with self.cv:
            self.eof = True
            self.cv.notify_all()

    def wait_for(self, regex, timeout, start=0):
        """Index of the first line >= start matching regex, or None."""
        rx = re.compile(regex)
        end = time.monotonic() + timeout
        i = start
        with self.cv:
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i][1]):
                        return i
                    i += 1
                left = end - time.monotonic()
                if left <= 0 or self.eof:
                    return None
                self.cv.wait(left)


def heartbeat_gaps(lines, t_from, t_to, period_s=None):
    """Guest-observed gap: largest interval between consecutive heartbeat lines
    from the last one before t_from through the first one at/after t_to.
    lines: [(t, text)] of both sides, any order."""
    hb = sorted((t, txt) for t, txt in lines if HB_RE.search(txt))
    if not hb:
        return {"gap_ms": None}
    i0 = 0
    for i, (t, _) in enumerate(hb):
        if t < t_from:
            i0 = i
    i1 = len(hb) - 1
    for i, (t, _) in enumerate(hb):
        if t >= t_to:
            i1 = i
            break
    win = hb[i0:i1 + 1]
    iv = [(b[0] - a[0]) for a, b in zip(win, win[1:])]
    out = {"gap_ms": max(iv) * 1000.0 if iv else None, "heartbeats_in_window": len(win)}
    # the dirty guest's own view: stall_us= on a line is the longest freeze
    # its CPU 0 saw (TSC) since the line before
    fz = [int(m.group(1)) for _, txt in win[1:] for m in [STALL_RE.search(txt)] if m]
    if fz:
        out["guest_freeze_max_ms"] = max(fz) / 1000.0
    # the same before the migration (after the first 20 heartbeats: boot,
    # stamping): what this machine alone costs the guest
    fb = [int(m.group(1)) for t, txt in hb[20:i0] for m in [STALL_RE.search(txt)] if m]
    if fb:
        out["guest_freeze_before_ms"] = max(fb) / 1000.0
    if period_s:
        stalls = [x for x in iv if x > 2 * period_s]
        out["stalls"] = len(stalls)
        out["stall_total_ms"] = sum(stalls) * 1000.0
    return out


def guest_progress(lines, t_from, t_to):
    """Mean rate= during [t_from, t_to] / mean rate= of the 10 lines before t_from."""
    before = [(t, int(m.group(1))) for t, txt in lines for m in [RATE_RE.search(txt)] if m and t < t_from]
    during = [int(m.group(1)) for t, txt in lines for m in [RATE_RE.search(txt)] if m and t_from <= t <= t_to]
    before = [r for _, r in sorted(before)[-10:]]
    if not before or not during or sum(before) == 0:
        return {"rate_before_pps": (sum(before) / len(before)) if before else None,
                "rate_during_pps": (sum(during) / len(during)) if during else None, "progress": None}
    rb, rd = sum(before) / len(before), sum(during) / len(during)
    return {"rate_before_pps": rb, "rate_during_pps": rd, "progress": rd / rb}


def seq_of(text):
    m = HB_RE.search(text)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- QMP

class QMPError(RuntimeError):
    pass


class QMP:
    def __init__(self, path, timeout=30.0):
        end = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end:
                    raise QMPError("cannot connect to QMP socket %s" % path)
                time.sleep(0.05)
        self.f = self.sock.makefile("rwb")
        self.events = []  # (monotonic, event dict)
        self.replies = queue.Queue()
        self.lock = threading.Lock()
        self.n = 0
        greeting = json.loads(self.f.readline())
        if "QMP" not in greeting:
            raise QMPError("bad QMP greeting")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.cmd("qmp_capabilities")

    def _read(self):
        try:
            for raw in iter(self.f.readline, b""):
                t = time.monotonic()
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                if "event" in msg:
                    self.events.append((t, msg))
                else:
                    self.replies.put(msg)
        except (OSError, ValueError):
            pass
        self.replies.put(None)

    def cmd(self, name, args=None, timeout=20.0):
        with self.lock:
            self.n += 1
            msg = {"execute": name, "id": self.n}
            if args:
                msg["arguments"] = args
            try:
                self.f.write(json.dumps(msg).encode() + b"\n")
                self.f.flush()
            except OSError as e:
                raise QMPError("%s: %s" % (name, e))
            while True:
                try:
                    r = self.replies.get(timeout=timeout)
                except queue.Empty:
                    raise QMPError("%s: no reply" % name)
                if r is None:
                    raise QMPError("%s: QMP connection closed" % name)
                if r.get("id") != self.n:
                    continue
                if "error" in r:
                    raise QMPError("%s: %s" % (name, r["error"].get("desc")))
                return r.get("return")

    def event_time(self, name):
        """(monotonic, qemu realtime seconds) of the first event NAME, or (None, None)."""
        for t, e in self.events:
            if e.get("event") == name:
                ts = e.get("timestamp", {})
                return t, ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
        return None, None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------- network namespaces

class Link:
    """loopback, or two namespaces joined by a veth pair shaped with tbf (and
    netem for RTT when the kernel has sch_netem). Only traffic between the two
    namespaces crosses it."""

    def __init__(self, spec, tag):
        self.spec = spec
        self.kind = spec["kind"]
        self.ns = ("mvb%ss" % tag, "mvb%sd" % tag)
        self.dev = ("mvb%sa" % tag, "mvb%sb" % tag)
        self.addr = ("10.77.0.1", "10.77.0.2")
        self.up = False

    def prefix(self, side):
        return [] if self.kind == "loopback" else ["ip", "netns", "exec", self.ns[side]]

    def target_addr(self):
        return "127.0.0.1" if self.kind == "loopback" else self.addr[1]

    def setup(self):
        if self.kind == "loopback":
            return
        self.teardown()
        cmds = [["ip", "netns", "add", self.ns[0]], ["ip", "netns", "add", self.ns[1]],
                ["ip", "link", "add", self.dev[0], "type", "veth", "peer", "name", self.dev[1]]]
        for i in (0, 1):
            cmds += [["ip", "link", "set", self.dev[i], "netns", self.ns[i]],
                     ["ip", "-n", self.ns[i], "addr", "add", self.addr[i] + "/24", "dev", self.dev[i]],
                     ["ip", "-n", self.ns[i], "link", "set", self.dev[i], "up"],
                     ["ip", "-n", self.ns[i], "link", "set", "lo", "up"]]
        for c in cmds:
            sh(c, check=True)
        self.up = True
        rate = self.spec["rate_bps"]
        burst = max(64 * 1024, int(rate / 8 / 250))  # >= rate/HZ
        for i in (0, 1):
            ex = ["ip", "netns", "exec", self.ns[i], "tc", "qdisc", "add", "dev", self.dev[i], "root"]
            if "rtt_ms" in self.spec:
                r = sh(ex + ["handle", "1:", "netem", "delay", "%gms" % (self.spec["rtt_ms"] / 2),
                             "limit", "100000"])
                if r.returncode:
                    raise RuntimeError("RTT shaping needs sch_netem, missing here: %s" % r.stderr.strip())
                ex = ["ip", "netns", "exec", self.ns[i], "tc", "qdisc", "add", "dev", self.dev[i],
                      "parent", "1:", "handle", "2:"]
                tbf = "2:"
            else:
                ex += ["handle", "1:"]
                tbf = "1:"
            sh(ex + ["tbf", "rate", "%dbit" % rate, "burst", str(burst), "latency", "50ms"], check=True)
            if self.spec.get("queue") == "prio":
                # tbf's own queue is one FIFO; here pfifo_fast instead (a
                # host NIC's default qdisc): three bands by packet priority,
                # each of txqueuelen packets (TCP small queues keep a flow
                # to ~1 ms of its rate in it either way)
                sh(["ip", "netns", "exec", self.ns[i], "tc", "qdisc", "add", "dev", self.dev[i],
                    "parent", tbf + "1", "handle", "3:", "pfifo_fast"], check=True)

    def teardown(self):
        if self.kind == "loopback":
            return
        for n in self.ns:
            sh(["ip", "netns", "del", n])
        self.up = False


# ---------------------------------------------------------------- guests

def guest_elf(name):
    return os.path.join(ROOT, "build", "guests", "%s.elf" % name)


def guest_append(inp):
    g = inp["guest"]
    if g == "dirty":
        a = "wss=%s rate=%s pattern=%s fill=%s period_ms=%s" % (
            inp["wss"], inp["rate"], inp["pattern"], inp["fill"], inp["period_ms"])
        return a + (" fresh=1" if inp.get("fresh") else "")
    if g == "counter":
        return "period_ms=%s" % inp["period_ms"]
    return ""


# minivmm variants: (source arguments, target arguments). The policies of
# issue 11 are named explicitly, so that a change of default does not move them.
MINIVMM_VARIANTS = {
    "minivmm": ([], []),
    "minivmm-1stream": (["--migrate-channels", "0"], []),
    "minivmm-prealloc": ([], []),
    "minivmm-nice": (["--migrate-nice", "10"], ["--migrate-nice", "10"]),
    "minivmm-nice0": (["--migrate-nice", "0"], ["--migrate-nice", "0"]),
    "minivmm-force": (["--on-nonconvergence", "force"], []),
    "minivmm-throttle": (["--on-nonconvergence", "throttle"], []),
    "minivmm-xbzrle": (["--on-nonconvergence", "force", "--xbzrle-cache", "512M"], []),
    "minivmm-xbzrle-throttle": (["--on-nonconvergence", "throttle", "--xbzrle-cache", "512M"], []),
    "minivmm-postcopy": (["--postcopy"], []),
    # switched by the harness as soon as the migration runs (migrate_start_postcopy;
    # before round 0 has sent anything, so the guest starts on the target at once)
    "minivmm-postcopy-now": (["--postcopy"], []),
    # migrate_start_postcopy once round 0 (the first pass) ended, as
    # qemu-postcopy and libvirt's --postcopy-after-precopy
    "minivmm-postcopy-after-precopy": (["--postcopy"], []),
    # the same with the delta cache: the push sends rewritten pages as deltas
    # against the stale copies the target kept (docs/postcopy.md, "Deltas")
    "minivmm-postcopy-after-precopy-xbzrle": (["--postcopy", "--xbzrle-cache", "512M"], []),
}

# (capabilities, parameters); the policies of issue 11/12 as the issues name them
QEMU_VARIANTS = {
    "qemu": ({}, {}),
    "qemu-multifd": ({"multifd": True}, {"multifd-channels": 4}),
    "qemu-xbzrle": ({"xbzrle": True}, {"xbzrle-cache-size": 512 << 20}),
    "qemu-ac": ({"auto-converge": True}, {}),
    "qemu-ac-50-25": ({"auto-converge": True}, {"cpu-throttle-initial": 50, "cpu-throttle-increment": 25}),
    # QEMU at its most aggressive: the first throttle step is already its ceiling (99 %)
    "qemu-ac-99": ({"auto-converge": True}, {"cpu-throttle-initial": 99, "cpu-throttle-increment": 99}),
    "qemu-xbzrle-ac": ({"xbzrle": True, "auto-converge": True}, {"xbzrle-cache-size": 512 << 20}),
    # post-copy switched after the first pass, as libvirt's --postcopy-after-precopy
    "qemu-postcopy": ({"postcopy-ram": True}, {}),
    # QEMU encodes deltas in its pre-copy passes only, never after the switch
    "qemu-postcopy-xbzrle": ({"postcopy-ram": True, "xbzrle": True}, {"xbzrle-cache-size": 512 << 20}),
    # migrate-start-postcopy right after migrate, as minivmm-postcopy-now
    "qemu-postcopy-now": ({"postcopy-ram": True}, {}),
    # the same with postcopy-preempt (7.2): requested pages on a channel of
    # their own, so they never wait behind the background stream's socket
    "qemu-postcopy-preempt": ({"postcopy-ram": True, "postcopy-preempt": True}, {}),
    "qemu-postcopy-preempt-now": ({"postcopy-ram": True, "postcopy-preempt": True}, {}),
    "qemu-tuned": ({"multifd": True, "auto-converge": True}, {"multifd-channels": 4}),
}

QEMU_UNLIMITED_BW = 1 << 40  # bytes/s: "no limit" (QEMU's own default is 128 MiB/s)


def qemu_cmd(kernel, append, mem_bytes, cpus, qmp_path, incoming=False):
    c = [QEMU, "-enable-kvm", "-nodefaults", "-display", "none", "-monitor", "none",
         "-m", "%dM" % (mem_bytes >> 20), "-smp", str(cpus), "-serial", "stdio",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", kernel,
         "-qmp", "unix:%s,server=on,wait=off" % qmp_path]
    if append:
        c += ["-append", append]
    if incoming:
        c += ["-incoming", "defer"]
    return c


# ---------------------------------------------------------------- one run

class RunContext:
    def __init__(self, run, typed, workdir, link, minivmm):
        self.run, self.inp, self.dir, self.link, self.minivmm = run, typed, workdir, link, minivmm
        os.makedirs(workdir, exist_ok=True)


def _post_switch(ctx, tgt_con, res, t_done, period_s, tgt_proc):
    """After the switchover: wait for target heartbeats, ask the guest to
    verify ('v' on its console), collect the verify line."""
    inp = ctx.inp
    n_before = len(tgt_con.lines)
    if inp["guest"] in ("dirty", "counter"):
        i = tgt_con.wait_for(HB_RE.pattern, max(5.0, 20 * period_s), 0)
        res["target_heartbeat_seen"] = i is not None
    # two more periods so that the window after the switchover is closed
    time.sleep(2.5 * period_s)
    if inp["verify"] and inp["guest"] == "dirty" and tgt_proc.returncode is None:
        try:
            tgt_proc.stdin.write(b"v")
            tgt_proc.stdin.flush()
            t_v = time.monotonic()
            i = tgt_con.wait_for(VERIFY_RE.pattern, 120.0, n_before)
            if i is None:
                res["verify"] = "no verify line within 120 s"
            else:
                line = tgt_con.lines[i]
                res["verify"] = line[1].strip()
                res["verify_ms"] = (line[0] - t_v) * 1000.0
        except OSError as e:
            res["verify"] = "cannot write to guest console: %s" % e
    verify = res.get("verify")
    res["verify_pass"] = None if verify is None else bool(re.search(r"verify:\s*pass", verify))


def _guest_figures(res, src_lines, tgt_lines, t_from, t_to, period_s):
    lines = [(t, s) for t, s in src_lines] + [(t, s) for t, s in tgt_lines]
    res.update(heartbeat_gaps(lines, t_from, t_to, period_s))
    # post-copy: the guest runs on the target during the migration
    res.update(guest_progress(lines, t_from, t_to))
    src_hb = [(t, seq_of(s)) for t, s in src_lines if seq_of(s) is not None]
    tgt_hb = [(t, seq_of(s)) for t, s in tgt_lines if seq_of(s) is not None]
    if src_hb and tgt_hb:
        res["switchover_gap_ms"] = (tgt_hb[0][0] - src_hb[-1][0]) * 1000.0
        res["seq_last_source"] = src_hb[-1][1]
        res["seq_first_target"] = tgt_hb[0][1]
        res["seq_continuous"] = tgt_hb[0][1] == src_hb[-1][1] + 1


def _finish(ctx, res, src_con, tgt_con):
    """Keeps both consoles and the stderr tails with the run's figures."""
    _save_console(ctx, "source.console", src_con)
    _save_console(ctx, "target.console", tgt_con)
    res["source_stderr_tail"] = _tail(os.path.join(ctx.dir, "source.stderr"))
    res["target_stderr_tail"] = _tail(os.path.join(ctx.dir, "target.stderr"))
    return res


def _save_console(ctx, name, con):
    with open(os.path.join(ctx.dir, name), "w") as f:
        for t, s in con.lines:
            f.write("%.6f %s\n" % (t, s))


def _qmp_paths():
    """QEMU's two QMP sockets: short for the same reason as _mon_path (a
    matrix with a longer name put them past sun_path's 108 bytes, and every
    QEMU run of it failed); stale ones from a killed run are removed."""
    paths = ["/tmp/mvb%d.%s.qmp" % (os.getpid(), side) for side in ("src", "tgt")]
    for p in paths:
        try:
            os.unlink(p)
        except FileNotFoundError:
            pass
    return paths


def _mon_path(ctx):
    """The source's monitor socket: short (sun_path holds 108 bytes; the run
    folders are deeper than that), one per bench process (runs are serial)."""
    return "/tmp/mvb%d.mon" % os.getpid()


AFTER_PRECOPY = ("minivmm-postcopy-after-precopy", "minivmm-postcopy-after-precopy-xbzrle")


def _first_pass_done(ctx, vmm):
    """minivmm-postcopy-after-precopy switches once info migrate shows round 1."""
    if vmm not in AFTER_PRECOPY:
        return True
    info = _monitor_cmd(_mon_path(ctx), "info migrate") or ""
    m = re.search(r"^round: (\d+)", info, re.M)
    return bool(m) and int(m.group(1)) >= 1


def run_minivmm(ctx):
    inp, res = ctx.inp, {}
    period_s = inp["period_ms"] / 1000.0
    port = free_port() if ctx.link.kind == "loopback" else 4444
    addr = ctx.link.target_addr()
    src_stats = os.path.join(ctx.dir, "source-stats.json")
    tgt_stats = os.path.join(ctx.dir, "target-stats.json")
    trace = os.path.join(ctx.dir, "dirty.trace") if inp.get("trace") else None
    tgt_cmd = ctx.link.prefix(1) + [ctx.minivmm, "--incoming", "%s:%d" % (addr, port),
                                    "--stats-json", tgt_stats]
    # minivmm-prealloc: the target knows the VM's shape and populates its
    # RAM while it waits (as QEMU's -mem-prealloc); minivmm-1stream: no
    # data channels (--migrate-channels 0), the whole migration on one TCP stream.
    if inp["vmm"] == "minivmm-prealloc":
        tgt_cmd += ["--mem", "%dM" % (inp["mem"] >> 20), "--cpus", str(inp["cpus"]), "--prealloc"]
    src_cmd = ctx.link.prefix(0) + [ctx.minivmm, "--kernel", guest_elf(inp["guest"]),
                                    "--mem", "%dM" % (inp["mem"] >> 20), "--cpus", str(inp["cpus"]),
                                    "--name", "bench%d" % os.getpid(),
                                    "--monitor", _mon_path(ctx),
                                    "--migrate", "%s:%d" % (addr, port),
                                    "--migrate-after", "%g" % inp["migrate_after"],
                                    "--downtime-ms", str(inp["downtime_ms"]),
                                    "--stats-json", src_stats]
    app = guest_append(inp)
    if app:
        src_cmd[len(ctx.link.prefix(0)) + 3:len(ctx.link.prefix(0)) + 3] = ["--append", app]
    if inp["max_bandwidth"]:
        src_cmd += ["--max-bandwidth", str(inp["max_bandwidth"])]
    v_src, v_tgt = MINIVMM_VARIANTS[inp["vmm"]]
    src_cmd += v_src
    tgt_cmd += v_tgt
    if trace:
        src_cmd += ["--dirty-trace", trace]
    res["commands"] = {"target": tgt_cmd, "source": src_cmd}
    tgt = src = None
    tgt_err = open(os.path.join(ctx.dir, "target.stderr"), "wb")
    src_err = open(os.path.join(ctx.dir, "source.stderr"), "wb")
    try:
        tgt = subprocess.Popen(tgt_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=tgt_err)
        tgt_con = Console(tgt.stdout, "target")
        _wait_listen(tgt, port, 5.0)
        t_start = time.monotonic()
        src = subprocess.Popen(src_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=src_err)
        src_con = Console(src.stdout, "source")
        deadline = time.monotonic() + inp["migrate_after"] + inp["timeout_s"] + 10
        t_tgt_dead = None
        switch_asked = inp["vmm"] not in ("minivmm-postcopy-now",) + AFTER_PRECOPY
        while True:
            if not switch_asked and time.monotonic() >= t_start + inp["migrate_after"] and \
                    _first_pass_done(ctx, inp["vmm"]):
                reply = _monitor_cmd(_mon_path(ctx), "migrate_start_postcopy")
                if reply and reply.startswith("ok"):
                    switch_asked = True
                    res["postcopy_asked_ms"] = (time.monotonic() - t_start - inp["migrate_after"]) * 1000.0
                rc, ru = wait_rusage(src, 0.02)
            else:
                # a switch still to ask for is looked for as often as
                # QEMU's (every 20 ms), not at 0.5 s: that late, the first
                # pass's switch came a round later than QEMU's
                rc, ru = wait_rusage(src, 0.02 if not switch_asked else 0.5)
            if rc is not None or time.monotonic() > deadline:
                break
            # the target gave up (it exits non-zero on any failure) while the
            # source keeps the guest running, as it must: the migration failed
            if tgt.poll() is not None:
                t_tgt_dead = t_tgt_dead or time.monotonic()
                if time.monotonic() - t_tgt_dead > 3.0:
                    res["outcome"] = "failed (target exited %s, guest still on source)" % tgt.returncode
                    break
        t_done = time.monotonic()
        if rc is None and "outcome" not in res:
            res["outcome"] = "timeout"
            res["monitor_cancel_reply"] = _monitor_cmd(_mon_path(ctx), "migrate_cancel")
            time.sleep(1.0)
        if rc is None:
            ru = kill(src)
            rc = src.returncode
        res["source_exit"] = rc
        if ru:
            res["source_cpu_s"] = ru.ru_utime + ru.ru_stime
        stats = _load_json(src_stats)
        res["vmm_stats_source"] = stats
        if stats and stats.get("total_ms") is not None:
            t_mig = t_done - stats["total_ms"] / 1000.0
        else:
            t_mig = t_start + inp["migrate_after"]
        if rc == 0 and tgt.returncode is None and "outcome" not in res:
            _post_switch(ctx, tgt_con, res, t_done, period_s, tgt)
        ru = kill(tgt, signal.SIGTERM)
        if ru:
            res["target_cpu_s"] = ru.ru_utime + ru.ru_stime
        res["target_exit"] = tgt.returncode
        res["source_peak_rss_kib"] = getattr(src, "hwm_kib", None)
        res["target_peak_rss_kib"] = getattr(tgt, "hwm_kib", None)
        time.sleep(0.05)
        res["vmm_stats_target"] = _load_json(tgt_stats)
        _guest_figures(res, src_con.lines, tgt_con.lines, t_mig, t_done, period_s)
        fig = _figures_from_minivmm(stats, res.get("vmm_stats_target"))
        res.update(fig)
        if "outcome" not in res:
            res["outcome"] = (stats or {}).get("result") or ("completed" if rc == 0 else "failed (exit %s)" % rc)
        if trace and os.path.exists(trace):
            res["trace_path"] = os.path.relpath(trace, ROOT)
        return _finish(ctx, res, src_con, tgt_con)
    finally:
        for p in (src, tgt):
            kill(p, signal.SIGKILL, 1)
        tgt_err.close()
        src_err.close()


def _figures_from_minivmm(s, t):
    if not s:
        return {}
    keys = ["setup_ms", "total_ms", "downtime_ms", "bytes_total", "pages_normal", "pages_zero",
            "pages_skipped", "rounds", "converged", "throughput_Bps", "ram_bytes",
            # issue 11: what the migration cost the guest, delta encoding
            "guest_stall_max_ms", "guest_stall_total_ms", "throttle_hold_max_ms", "throttle_max_pct",
            "xbzrle_pages", "xbzrle_bytes_saved", "xbzrle_cache_misses", "xbzrle_encode_ms",
            # issue 12: post-copy (source side)
            "postcopy_ms", "postcopy_pages_missing", "postcopy_pages_requested", "postcopy_pages_pushed",
            "postcopy_pages_delta", "postcopy_delta_bytes_saved"]
    out = {k: s.get(k) for k in keys}
    if t:
        out["restore_ms"] = t.get("restore_ms")
        for k in ("postcopy_faults", "postcopy_fault_p50_ms", "postcopy_fault_p99_ms",
                  "postcopy_fault_max_ms", "postcopy_blocktime_ms"):
            out[k] = t.get(k)
    # the guest-observed gap as the VMMs timed the console lines (source: its
    # part of the migration; target: from the source's last line on)
    g = [x.get("guest_console_gap_ms") for x in (s, t) if x and x.get("guest_console_gap_ms")]
    out["vmm_console_gap_ms"] = max(g) if g else None
    rr = s.get("round_records") or []
    out["round_series"] = [[r.get("start_ms"), r.get("dirty_pages"), r.get("pages_sent")] for r in rr]
    return out


def _tail(path, n=400):
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - n))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return None


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _wait_listen(proc, port, timeout):
    """Wait until PROC listens on PORT (reads /proc/PID/net/tcp: works inside namespaces)."""
    end = time.monotonic() + timeout
    hexport = ":%04X" % port
    while time.monotonic() < end:
        for fn in ("tcp", "tcp6"):
            try:
                with open("/proc/%d/net/%s" % (proc.pid, fn)) as f:
                    for line in f.readlines()[1:]:
                        parts = line.split()
                        if parts[1].endswith(hexport) and parts[3] == "0A":
                            return True
            except OSError:
                pass
        if proc.poll() is not None:
            return False
        time.sleep(0.01)
    return False


def _monitor_cmd(path, cmd, timeout=3.0):
    try:
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        data = s.recv(4096)
        s.close()
        return data.decode("utf-8", "replace")
    except OSError:
        return None


def run_qemu(ctx):
    inp, res = ctx.inp, {}
    prealloc = inp["vmm"].endswith("-prealloc")
    caps, params = QEMU_VARIANTS[inp["vmm"][:-len("-prealloc")] if prealloc else inp["vmm"]]
    period_s = inp["period_ms"] / 1000.0
    port = free_port() if ctx.link.kind == "loopback" else 4444
    addr = ctx.link.target_addr()
    kernel, app = guest_elf(inp["guest"]), guest_append(inp)
    sq, tq = _qmp_paths()
    tgt_cmd = ctx.link.prefix(1) + qemu_cmd(kernel, app, inp["mem"], inp["cpus"], tq, incoming=True)
    if prealloc:
        tgt_cmd += ["-mem-prealloc"]
    src_cmd = ctx.link.prefix(0) + qemu_cmd(kernel, app, inp["mem"], inp["cpus"], sq)
    res["commands"] = {"target": tgt_cmd, "source": src_cmd}
    src = tgt = None
    sqmp = tqmp = None
    src_err = open(os.path.join(ctx.dir, "source.stderr"), "wb")
    tgt_err = open(os.path.join(ctx.dir, "target.stderr"), "wb")
    try:
        tgt = subprocess.Popen(tgt_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=tgt_err)
        tgt_con = Console(tgt.stdout, "target")
        src = subprocess.Popen(src_cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=src_err)
        src_con = Console(src.stdout, "source")
        t_start = time.monotonic()
        tqmp, sqmp = QMP(tq), QMP(sq)
        postcopy = bool(caps.get("postcopy-ram"))
        if postcopy:  # the target measures the vCPUs' time blocked on faults
            caps = dict(caps, **{"postcopy-blocktime": True})
        capl = [{"capability": k, "state": v} for k, v in caps.items()]
        if capl:
            sqmp.cmd("migrate-set-capabilities", {"capabilities": capl})
            tqmp.cmd("migrate-set-capabilities", {"capabilities": capl})
        if "multifd-channels" in params:
            tqmp.cmd("migrate-set-parameters", {"multifd-channels": params["multifd-channels"]})
        sp = dict(params, **{"downtime-limit": inp["downtime_ms"],
                             "max-bandwidth": inp["max_bandwidth"] or QEMU_UNLIMITED_BW})
        sqmp.cmd("migrate-set-parameters", sp)
        tqmp.cmd("migrate-incoming", {"uri": "tcp:%s:%d" % (addr, port)})
        # QEMU's firmware runs in the emulator (seconds): wait for the guest's
        # first line, then let it run migrate_after seconds like minivmm's guest
        i = src_con.wait_for(r"boot|seq=", 60.0)
        res["qemu_boot_s"] = (src_con.lines[i][0] - t_start) if i is not None else None
        time.sleep(inp["migrate_after"])
        t_mig = time.monotonic()
        sqmp.cmd("migrate", {"uri": "tcp:%s:%d" % (addr, port)})
        samples, info, status = [], {}, None
        deadline = t_mig + inp["timeout_s"]
        while True:
            info = sqmp.cmd("query-migrate")
            now = time.monotonic()
            status = info.get("status")
            ram = info.get("ram", {})
            samples.append([round((now - t_mig) * 1000.0, 1), ram.get("dirty-sync-count"),
                            ram.get("remaining"), ram.get("transferred"), ram.get("dirty-pages-rate"),
                            info.get("cpu-throttle-percentage", 0)])
            if len(samples) % 10 == 1:
                for p in (src, tgt):
                    h = vm_hwm_kib(p.pid)
                    if h:
                        p.hwm_kib = max(h, getattr(p, "hwm_kib", 0))
            if status in ("completed", "failed", "cancelled"):
                break
            # dirty-sync-count is 1 after setup and 2 once the first pass ended
            first_pass_done = ((ram.get("dirty-sync-count") or 0) >= 2 or
                               inp["vmm"] in ("qemu-postcopy-now", "qemu-postcopy-preempt-now"))
            if postcopy and status == "active" and first_pass_done and "postcopy_switch_ms" not in res:
                sqmp.cmd("migrate-start-postcopy")
                res["postcopy_switch_ms"] = (time.monotonic() - t_mig) * 1000.0
            if now > deadline:
                try:
                    sqmp.cmd("migrate_cancel")
                except QMPError:
                    pass
                time.sleep(1.0)
                info = sqmp.cmd("query-migrate")
                status = "timeout, " + str(info.get("status"))
                break
            time.sleep(0.02)
        t_done = time.monotonic()
        res["outcome"] = status
        res["qmp_samples"] = samples
        if postcopy:
            try:
                ti = tqmp.cmd("query-migrate")
                res["vmm_stats_target"] = ti
                res["postcopy_blocktime_ms"] = ti.get("postcopy-blocktime")
                res["postcopy_vcpu_blocktime_ms"] = ti.get("postcopy-vcpu-blocktime")
            except QMPError as e:
                res["postcopy_blocktime_error"] = str(e)
            if "postcopy_switch_ms" in res and info.get("total-time") is not None:
                res["postcopy_ms"] = info["total-time"] - res["postcopy_switch_ms"]
        res["vmm_stats_source"] = info
        if status == "completed":
            _post_switch(ctx, tgt_con, res, t_done, period_s, tgt)
        # our downtime for QEMU: source STOP event -> target RESUME event
        stop_m, stop_rt = sqmp.event_time("STOP")
        res_m, res_rt = tqmp.event_time("RESUME")
        if stop_rt and res_rt:
            res["downtime_ms"] = (res_rt - stop_rt) * 1000.0
            res["downtime_ms_monotonic"] = (res_m - stop_m) * 1000.0 if stop_m and res_m else None
        ram = info.get("ram", {})
        res.update({
            "setup_ms": info.get("setup-time"), "total_ms": info.get("total-time"),
            "qemu_downtime_ms": info.get("downtime"), "bytes_total": ram.get("transferred"),
            "pages_normal": ram.get("normal"), "pages_zero": ram.get("duplicate"),
            "rounds": ram.get("dirty-sync-count"),
            "throughput_Bps": (ram.get("mbps") or 0) * 1e6 / 8,
            "converged": status == "completed",
            "max_throttle_pct": max((s[5] or 0) for s in samples) if samples else None,
            "xbzrle": info.get("xbzrle-cache"),
        })
        if status != "completed":
            # QEMU's total-time keeps counting while active; use our clock
            res["total_ms"] = (t_done - t_mig) * 1000.0
        for p in (src, tgt):
            h = vm_hwm_kib(p.pid)
            if h:
                p.hwm_kib = max(h, getattr(p, "hwm_kib", 0))
        for q in (sqmp, tqmp):
            try:
                q.cmd("quit", timeout=3)
            except QMPError:
                pass
        ru_s, ru_t = kill(src, grace=5), kill(tgt, grace=5)
        if ru_s:
            res["source_cpu_s"] = ru_s.ru_utime + ru_s.ru_stime
        if ru_t:
            res["target_cpu_s"] = ru_t.ru_utime + ru_t.ru_stime
        res["source_peak_rss_kib"] = getattr(src, "hwm_kib", None)
        res["target_peak_rss_kib"] = getattr(tgt, "hwm_kib", None)
        time.sleep(0.05)
        # after the switchover the source's console is silent; use QMP time for t_to
        _guest_figures(res, src_con.lines, tgt_con.lines, t_mig, t_done, period_s)
        return _finish(ctx, res, src_con, tgt_con)
    finally:
        for q in (sqmp, tqmp):
            if q:
                q.close()
        for p in (src, tgt):
            kill(p, signal.SIGKILL, 1)
        src_err.close()
        tgt_err.close()


def run_one(ctx):
    if ctx.inp["vmm"].startswith("minivmm"):
        return run_minivmm(ctx)
    return run_qemu(ctx)

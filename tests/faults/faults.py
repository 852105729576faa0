#!/usr/bin/env python3
"""The migration fault matrix (issue 13, docs/migration.md "Fault matrix").

A source in network namespace fz-a migrates the dirty guest to a target in
fz-b over a veth pair (fza0 10.77.0.1 <-> fzb0 10.77.0.2). At each phase
boundary a test hook (MINIVMM_FAULT_DELAY_<PHASE>_MS, migrate/faulthook.h)
makes one side say "fault hook: PHASE" and wait; on that line the fault is
injected: the link set down, every packet dropped (nftables), the target
SIGKILLed or SIGSTOPped (SIGCONT once the source has decided), the source
SIGKILLed; and one case with the link slowed by tbf. Each case asserts:

  * where the guest runs: on exactly one side (a source that holds the
    guest paused after COMMIT without RUNNING is resumed with `cont`, the
    operator's move, when the target does not run it; a source killed
    before COMMIT takes its guest with it: no side, and the target must
    not start it);
  * that it verifies there (the dirty guest's `v`: "verify: pass");
  * that both sides said what happened (the line each prints), except a
    side that was SIGKILLed.

    python3 tests/faults/faults.py              # the whole matrix
    python3 tests/faults/faults.py --fast       # make test's subset
    python3 tests/faults/faults.py --cases READY:kill-target,COMMIT:link-down
    python3 tests/faults/faults.py --soak 100   # back-and-forth migrations
    python3 tests/faults/faults.py --rollbacks 20  # one VM, 20 failed migrations
Needs root (namespaces), iproute2, nftables for the drop cases
(tests/faults/install.sh), and `make` (./minivmm, build/guests/dirty.elf).
"""
import argparse, os, signal, socket, subprocess, sys, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MVMM = os.environ.get("MINIVMM", os.path.join(ROOT, "minivmm"))
GUEST = os.path.join(ROOT, "build/guests/dirty.elf")
NS_A, NS_B, IF_A, IF_B = "fz-a", "fz-b", "fza0", "fzb0"
IP_A, IP_B = "10.77.0.1", "10.77.0.2"
HOOK_MS = 1500
SRC_PHASES = ["HANDSHAKE", "ROUND0", "ROUND1", "SWITCHOVER", "READY"]
PHASES = SRC_PHASES + ["COMMIT"]
FAULTS = ["link-down", "drop", "kill-target", "stop-target"]
FAST = ["ROUND0:kill-target", "READY:kill-target", "COMMIT:kill-target",
        "COMMIT:kill-source", "ROUND0:kill-source", "COMMIT:link-down"]


def sh(*args, check=True):
    r = subprocess.run(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if check and r.returncode:
        raise RuntimeError("%s: %s" % (" ".join(args), r.stdout.strip()))
    return r


def net_up():
    net_down()
    sh("ip", "netns", "add", NS_A)
    sh("ip", "netns", "add", NS_B)
    sh("ip", "link", "add", IF_A, "netns", NS_A, "type", "veth", "peer", "name", IF_B, "netns", NS_B)
    for ns, dev, ip in ((NS_A, IF_A, IP_A), (NS_B, IF_B, IP_B)):
        sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")


def net_down():
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)


def link(up):
    sh("ip", "-n", NS_A, "link", "set", IF_A, "up" if up else "down")
    sh("ip", "-n", NS_B, "link", "set", IF_B, "up" if up else "down")


def drop(on):
    for ns in (NS_A, NS_B):
        if on:
            sh("ip", "netns", "exec", ns, "nft", "add table inet fz; add chain inet fz in "
               "{ type filter hook input priority 0; }; add rule inet fz in drop")
        else:
            sh("ip", "netns", "exec", ns, "nft", "delete table inet fz", check=False)


def tbf(on, rate="16mbit"):
    if on:
        sh("ip", "netns", "exec", NS_A, "tc", "qdisc", "replace", "dev", IF_A, "root", "tbf",
           "rate", rate, "burst", "32kbit", "latency", "400ms")
    else:
        sh("ip", "netns", "exec", NS_A, "tc", "qdisc", "del", "dev", IF_A, "root", check=False)


class Proc:
    """A minivmm in a namespace; stdout and stderr lines collected with times."""

    def __init__(self, ns, args, env=None):
        e = dict(os.environ)
        e.update(env or {})
        self.p = subprocess.Popen(["ip", "netns", "exec", ns, MVMM] + args, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=e)
        self.out, self.err, self.lock = [], [], threading.Lock()
        self.rc = None
        for f, dst in ((self.p.stdout, self.out), (self.p.stderr, self.err)):
            threading.Thread(target=self._read, args=(f, dst), daemon=True).start()

    def _read(self, f, dst):
        for line in f:
            with self.lock:
                dst.append((time.monotonic(), line.decode(errors="replace").rstrip("\n")))

    def lines(self, which):
        with self.lock:
            return list(self.out if which == "out" else self.err)

    def wait_line(self, which, needle, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for _, l in self.lines(which):
                if needle in l:
                    return l
            if self.p.poll() is not None and time.monotonic() > end - timeout + 0.2:
                time.sleep(0.2)  # let the readers drain
                for _, l in self.lines(which):
                    if needle in l:
                        return l
                return None
            time.sleep(0.01)
        return None

    def beats_since(self, t):
        return sum(1 for ts, l in self.lines("out") if ts >= t and l.startswith("seq="))

    def send(self, s):
        try:
            self.p.stdin.write(s.encode())
            self.p.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if self.alive():
            os.kill(self.pid(), sig)

    def pid(self):
        # `ip netns exec` execs minivmm in place: the Popen pid is minivmm's.
        return self.p.pid

    def stop(self):
        if self.alive():
            self.kill(signal.SIGCONT)
            self.kill(signal.SIGKILL)
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self.rc = self.p.returncode

    def stderr(self):
        return "\n".join(l for _, l in self.lines("err"))


def monitor(path, cmd, timeout=3.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall((cmd + "\n").encode())
        buf = b""
        while not (buf.endswith(b"ok\n") or b"error:" in buf):
            d = s.recv(4096)
            if not d:
                break
            buf += d
        return buf.decode(errors="replace")
    except OSError as e:
        return "monitor error: %s" % e
    finally:
        s.close()


def running(p, window=1.0):
    """Heartbeats in the next window seconds: the guest runs in p."""
    if not p.alive():
        return False
    t = time.monotonic()
    time.sleep(window)
    return p.beats_since(t) > 0


def verify(p, timeout=20):
    n0 = len(p.lines("out"))
    p.send("v")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for _, l in p.lines("out")[n0:]:
            if l.startswith("verify: pass"):
                return l
            if l.startswith("verify: FAIL"):
                return None
        time.sleep(0.05)
    return None


class Case:
    def __init__(self, work, n, phase, fault, port):
        self.work, self.n, self.phase, self.fault, self.port = work, n, phase, fault, port
        self.name = "%s:%s" % (phase, fault)
        self.notes, self.ok = [], True
        self.tmon = os.path.join(work, "t%d.sock" % n)
        self.smon = os.path.join(work, "s%d.sock" % n)

    def check(self, cond, what):
        if not cond:
            self.ok = False
            self.notes.append("FAIL: " + what)
        return cond

    def run(self):
        hook = {"MINIVMM_FAULT_DELAY_%s_MS" % self.phase: str(HOOK_MS)} if self.phase in PHASES else {}
        src_env = hook if self.phase in SRC_PHASES else {}
        tgt_env = hook if self.phase == "COMMIT" else {}
        t = Proc(NS_B, ["--incoming", "%s:%d" % (IP_B, self.port), "--monitor", self.tmon], tgt_env)
        s = None
        try:
            if not self.check(t.wait_line("err", "waiting for a migration", 10), "target listens"):
                return
            extra = []
            if self.fault == "slow":
                tbf(True)
                extra = ["--max-time-s", "30"]
            # Small RAM and a dirtying guest that needs more than one round.
            s = Proc(NS_A, ["--kernel", GUEST, "--mem", "64M", "--name", "fzvm%d" % self.n,
                            "--append", "wss=4 rate=3000 verify=1", "--monitor", self.smon,
                            "--migrate", "%s:%d" % (IP_B, self.port), "--migrate-after", "1",
                            "--downtime-ms", "1", "--max-rounds", "3", "--max-bandwidth", "20M",
                            "--on-nonconvergence", "force"] + extra, src_env)
            self.inject(s, t)
            self.judge(s, t)
        finally:
            link(True)
            drop(False)
            tbf(False)
            for p in (s, t):
                if p:
                    p.stop()

    def inject(self, s, t):
        side = t if self.phase == "COMMIT" else s
        self.hooked = None
        if self.fault == "slow":
            return
        line = side.wait_line("err", "fault hook: %s," % self.phase, 30)
        if not self.check(line, "the %s hook fired" % self.phase):
            return
        self.hooked = time.monotonic()
        f = self.fault
        if f == "link-down":
            link(False)
        elif f == "drop":
            drop(True)
        elif f == "kill-target":
            t.kill()
        elif f == "stop-target":
            t.kill(signal.SIGSTOP)
        elif f == "kill-source":
            s.kill()

    def settle(self, s, t):
        """Waits until the source has decided (completed, rolled back, held
        the guest, or died), then undoes the fault; then until the target
        has decided or is seen waiting."""
        src_end = ("completed", "the guest keeps running here", "stays paused here")
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            if not s.alive() or any(x in s.stderr() for x in src_end):
                break
            time.sleep(0.05)
        link(True)
        drop(False)
        if self.fault == "stop-target":
            t.kill(signal.SIGCONT)
        tgt_end = ("incoming migration completed", "incoming migration failed",
                   "still waiting")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and t.alive():
            if any(x in t.stderr() for x in tgt_end):
                break
            time.sleep(0.05)
        time.sleep(0.3)

    def judge(self, s, t):
        self.settle(s, t)
        serr, terr = s.stderr(), t.stderr()
        src_said = next((w for w in ("completed", "keeps running here", "stays paused here")
                         if w in serr), None)
        tgt_said = next((w for w in ("incoming migration completed", "incoming migration failed",
                                     "still waiting") if w in terr), None)
        if self.fault != "kill-source":
            self.check(src_said, "the source says what happened")
            want = expected_source(self.phase, self.fault)
            self.check(src_said == want, "the source: %r, expected %r" % (src_said, want))
        if self.fault != "kill-target":
            self.check(tgt_said, "the target says what happened")
        on_t, on_s = running(t), running(s)
        held = src_said == "stays paused here"
        if held and not on_t and s.alive():
            # The one window where the operator decides: the target does
            # not run the guest, so `cont` on the source.
            self.notes.append("source held the guest paused; target does not run it: cont")
            self.check("ok" in monitor(self.smon, "cont"), "cont on the source")
            on_s = running(s)
        if held and on_t:
            self.check("paused" in monitor(self.smon, "info status"), "held source is paused")
        where = [n for n, r in (("source", on_s), ("target", on_t)) if r]
        if self.fault == "kill-source" and self.phase != "COMMIT":
            self.check(where == [], "a killed source's guest runs nowhere (ran on %s)" % where)
            self.check(not t.alive() or tgt_said != "incoming migration completed",
                       "the target did not start a guest its source never handed over")
        else:
            self.check(len(where) == 1, "the guest runs on exactly one side (runs on %s)" % where)
        if len(where) == 1:
            v = verify(t if where == ["target"] else s)
            self.check(v, "verify on the %s" % where[0])
            self.notes.append("runs on the %s, %s" % (where[0], v))
        self.notes.append("source: %s" % (src_said or ("killed" if self.fault == "kill-source" else "-")))
        self.notes.append("target: %s" % (tgt_said or ("killed" if self.fault == "kill-target" else "-")))
        self.src_line = last_line(serr, "minivmm: migration")
        self.tgt_line = last_line(terr, "minivmm: incoming") or last_line(terr, "refused")


def expected_source(phase, fault):
    """What the source must conclude. Before READY it rolls back; after
    READY a target that hung up before COMMIT is seen and rolled back too;
    a target lost silently (cut link, stopped) after READY, or any loss
    after COMMIT, leaves the guest paused: the source cannot know whether
    the target runs it."""
    if fault == "slow":
        return "completed"
    if phase in ("HANDSHAKE", "ROUND0", "ROUND1", "SWITCHOVER"):
        return "keeps running here"
    if phase == "READY" and fault == "kill-target":
        return "keeps running here"
    return "stays paused here"


def last_line(text, needle):
    ls = [l for l in text.splitlines() if needle in l]
    return ls[-1] if ls else ""


def proc_stats(pid):
    rss = 0
    with open("/proc/%d/status" % pid) as f:
        for l in f:
            if l.startswith("VmRSS:"):
                rss = int(l.split()[1])
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def soak(work, n):
    """n migrations back and forth between the namespaces, a dirtying
    guest, verify after each; RSS and open fds of each new owner once the
    guest runs there."""
    ends = [(NS_A, IP_A), (NS_B, IP_B)]
    cur = Proc(NS_A, ["--kernel", GUEST, "--mem", "64M", "--name", "fzsoak", "--append",
                      "wss=4 rate=3000 verify=1", "--monitor", os.path.join(work, "soak0.sock")])
    rows, ok = [], True
    try:
        if not running(cur, 2.0):
            print("soak: the guest did not start", file=sys.stderr)
            return False
        for i in range(1, n + 1):
            ns, ip = ends[i % 2]
            mon = os.path.join(work, "soak%d.sock" % i)
            port = 25000 + i
            t = Proc(ns, ["--incoming", "%s:%d" % (ip, port), "--monitor", mon])
            if not t.wait_line("err", "waiting for a migration", 10):
                print("soak %d: target did not listen" % i, file=sys.stderr)
                return False
            t0 = time.monotonic()
            r = monitor(os.path.join(work, "soak%d.sock" % (i - 1)), "migrate %s:%d" % (ip, port))
            done = t.wait_line("err", "incoming migration completed", 60)
            ms = (time.monotonic() - t0) * 1000
            try:
                cur.p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
            v = verify(t) if done else None
            rss, fds = proc_stats(t.pid()) if t.alive() else (0, 0)
            rows.append((i, ms, rss, fds, bool(v), cur.p.returncode))
            print("soak %3d: %s -> %s %.0f ms, verify %s, owner RSS %d KiB, fds %d, old rc %s"
                  % (i, ends[(i - 1) % 2][0], ns, ms, "pass" if v else "FAIL", rss, fds,
                     cur.p.returncode), flush=True)
            cur.stop()
            cur = t
            if not (done and v and "ok" in r):
                print("soak %d failed: monitor %r, target: %s" % (i, r, t.stderr()[-400:]),
                      file=sys.stderr)
                ok = False
                break
    finally:
        cur.stop()
    if rows:
        rss = [r[2] for r in rows]
        fds = [r[3] for r in rows]
        half = len(rows) // 2
        print("soak: %d migrations, RSS first/last/max %d/%d/%d KiB, fds first/last/max %d/%d/%d, "
              "mean %.0f ms" % (len(rows), rss[0], rss[-1], max(rss), fds[0], fds[-1], max(fds),
                                sum(r[1] for r in rows) / len(rows)))
        # Stable: the second half grows no more than noise over the first.
        if half and (max(fds[half:]) > max(fds[:half]) or
                     sum(rss[half:]) / len(rss[half:]) > 1.1 * sum(rss[:half]) / half + 2048):
            print("soak: RSS or fds grow", file=sys.stderr)
            ok = False
    return ok


def rollbacks(work, n):
    """One VM, n migrations that fail in round 0 (the target killed): the
    same source process rolls back n times; its RSS and open fds must not
    grow, and the guest verifies after each."""
    mon = os.path.join(work, "rb.sock")
    s = Proc(NS_A, ["--kernel", GUEST, "--mem", "64M", "--name", "fzrb", "--append",
                    "wss=4 rate=3000 verify=1", "--monitor", mon],
             {"MINIVMM_FAULT_DELAY_ROUND0_MS": "300"})
    rows, ok = [], True
    try:
        if not running(s, 2.0):
            print("rollbacks: the guest did not start", file=sys.stderr)
            return False
        for i in range(1, n + 1):
            port = 26000 + i
            t = Proc(NS_B, ["--incoming", "%s:%d" % (IP_B, port), "--monitor",
                            os.path.join(work, "rbt%d.sock" % i)])
            if not t.wait_line("err", "waiting for a migration", 10):
                return False
            hooks = sum("fault hook: ROUND0" in l for _, l in s.lines("err"))
            monitor(mon, "migrate %s:%d" % (IP_B, port))
            end = time.monotonic() + 20
            while time.monotonic() < end and \
                    sum("fault hook: ROUND0" in l for _, l in s.lines("err")) == hooks:
                time.sleep(0.01)
            t.kill()
            t.stop()
            end = time.monotonic() + 20
            while time.monotonic() < end and \
                    sum("keeps running here" in l for _, l in s.lines("err")) < i:
                time.sleep(0.02)
            time.sleep(0.2)
            v = verify(s)
            rss, fds = proc_stats(s.pid())
            rows.append((rss, fds))
            print("rollback %3d: verify %s, source RSS %d KiB, fds %d" %
                  (i, "pass" if v else "FAIL", rss, fds), flush=True)
            if not v:
                ok = False
                break
    finally:
        s.stop()
    if rows:
        rss, fds = [r[0] for r in rows], [r[1] for r in rows]
        half = len(rows) // 2
        print("rollbacks: %d, source RSS first/last/max %d/%d/%d KiB, fds first/last/max %d/%d/%d"
              % (len(rows), rss[0], rss[-1], max(rss), fds[0], fds[-1], max(fds)))
        if half and (max(fds[half:]) > max(fds[:half]) or
                     sum(rss[half:]) / len(rss[half:]) > 1.1 * sum(rss[:half]) / half + 2048):
            print("rollbacks: RSS or fds grow", file=sys.stderr)
            ok = False
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--cases")
    ap.add_argument("--soak", type=int, default=0)
    ap.add_argument("--rollbacks", type=int, default=0)
    ap.add_argument("--cmocka", action="store_true", help="summary lines tests/run.sh counts")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("faults: needs root (network namespaces)", file=sys.stderr)
        return 1
    for f in (MVMM, GUEST):
        if not os.path.exists(f):
            print("faults: %s is missing (make)" % f, file=sys.stderr)
            return 1
    work = "/tmp/fzfaults-%d" % os.getpid()
    os.makedirs(work, exist_ok=True)
    net_up()
    try:
        if a.soak or a.rollbacks:
            ok = soak(work, a.soak) if a.soak else True
            ok = (rollbacks(work, a.rollbacks) if a.rollbacks else True) and ok
            return 0 if ok else 1
        if a.cases:
            names = a.cases.split(",")
        elif a.fast:
            names = FAST
        else:
            names = ["%s:%s" % (p, f) for p in PHASES for f in FAULTS]
            names += ["ROUND0:kill-source", "COMMIT:kill-source", "-:slow"]
        passed = failed = 0
        for i, name in enumerate(names):
            phase, fault = name.split(":")
            c = Case(work, i, phase, fault, 24600 + i)
            t0 = time.monotonic()
            try:
                c.run()
            except Exception as e:  # a broken case fails, the matrix goes on
                c.ok = False
                c.notes.append("FAIL: %r" % e)
            print("[ %s ] %-22s %5.1f s  %s" % ("  OK  " if c.ok else " FAIL ", name,
                                                time.monotonic() - t0, "; ".join(c.notes)),
                  flush=True)
            for l in (getattr(c, "src_line", ""), getattr(c, "tgt_line", "")):
                if l:
                    print("           %s" % l)
            passed += c.ok
            failed += not c.ok
        print("faults: %d passed, %d failed" % (passed, failed))
        if a.cmocka:
            print("[  PASSED  ] %d test(s)." % passed)
            if failed:
                print("[  FAILED  ] %d test(s)." % failed)
        return 0 if failed == 0 else 1
    finally:
        net_down()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    sys.exit(main())

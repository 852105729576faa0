#!/usr/bin/env python3
"""Issue 10's measurement (`make bench-disk`): the disk guest
(build/guests/disk.elf) writing random 4 KiB blocks while its VM migrates with
the disk streamed (no shared storage), on minivmm and on QEMU 7.2 in one run:

  minivmm      --migrate-disk; the target's --disk is created by the migration
  qemu-blk     QEMU's block migration (`migrate` with "blk": true; removed in 9.1)
  qemu-mirror  QEMU's recommended way (iotest 194): the target exports its
               drive over NBD (nbd-server-start + block-export-add writable),
               the source runs drive-mirror sync=full to it, waits for
               BLOCK_JOB_READY, migrates RAM, cancels the job

Per repeat, VMM and load (dwrite=1000 and dwrite=max, dpattern=random, the
guest's blocks in the first dblocks of a 1 GiB image whose rest is data that
must be copied): total time (migrate command -> done), downtime (minivmm: its
stats; QEMU: STOP -> RESUME events, and its own `downtime`), bytes, the
guest-observed gap (largest interval between heartbeat lines across the
switchover), the disk copy rate (image bytes / total time) and the guest's
verify on the target. Ceilings in the same run: sequential O_DIRECT read of the
image, a buffered sequential read from a cold page cache (how both VMMs read it),
writing it with fdatasync, and single-stream loopback TCP.

--cache cold (the default) drops the page cache (sync; drop_caches) after each
run's copy of the image, so the source reads its disk as a host that did not
just write the image would; --cache warm leaves the copy cached (the source then
reads memory, and no read ceiling bounds it). The copy rate is reported against
the lower of the cold read and the link ("vs ceiling").

    python3 tests/bench/bench_disk.py [--repeats N] [--size-mib M] [--out DIR]
    python3 tests/bench/bench_disk.py report DIR     (DIR/index.md again)

Writes DIR/results.jsonl and DIR/index.md; DIR defaults to
docs/results/disk-YYYYmmddTHHMMSSZ/ (UTC start). Needs /dev/kvm; installs
qemu-system-x86 when missing. Images live in a temporary folder under /tmp.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

import harness  # noqa: E402
import jsonl  # noqa: E402

DISK_ELF = os.path.join(ROOT, "build", "guests", "disk.elf")
MINIVMM = os.path.join(ROOT, "minivmm")
CEILING = os.path.join(ROOT, "build", "bench", "ceiling")
QEMU = "qemu-system-x86_64"
MEM_MIB = 64
DBLOCKS = 4096           # the guest's blocks: the first 16 MiB (verify reads them all)
PERIOD_MS = 20
DOWNTIME_MS = 300
MIGRATE_AFTER = 1.0
TIMEOUT_S = 180
LOADS = (("1000", "1000"), ("max", "max"))
VMMS = ("minivmm", "qemu-blk", "qemu-mirror")


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def append(load):
    return "dwrite=%s dpattern=random dblocks=%d period_ms=%d" % (load, DBLOCKS, PERIOD_MS)


def make_base(path, size):
    """A 1 GiB image full of data (so the copy has something to move), once."""
    block = bytes((i * 131 + 7) & 0xff for i in range(1 << 20))
    with open(path, "wb") as f:
        for i in range(size >> 20):
            f.write(block[i % 251:] + block[:i % 251])


def rest_matches(src_img, tgt_img):
    """Whether the target's image holds the source's beyond the guest's own
    blocks (which it rewrites on the target after the switch): the guest's
    verify reads only its blocks, so a copy that skipped the rest would pass
    it."""
    skip = DBLOCKS * 4096
    r = subprocess.run(["cmp", "-s", "-i", str(skip), src_img, tgt_img])
    return r.returncode == 0


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def ceilings(img, size):
    out = {}
    drop_caches()
    t = time.monotonic()
    subprocess.run(["dd", "if=" + img, "of=/dev/null", "bs=1M"], capture_output=True, check=True)
    out["seq_read_cold_MBps"] = size / (time.monotonic() - t) / 1e6
    t = time.monotonic()
    subprocess.run(["dd", "if=" + img, "of=/dev/null", "bs=1M", "iflag=direct"],
                   capture_output=True, check=True)
    out["seq_read_MBps"] = size / (time.monotonic() - t) / 1e6
    # what a target that flushes before READY cannot beat: writing the
    # image and fdatasync
    w = img + ".w"
    t = time.monotonic()
    subprocess.run(["dd", "if=" + img, "of=" + w, "bs=1M", "conv=fdatasync"],
                   capture_output=True, check=True)
    out["write_sync_MBps"] = size / (time.monotonic() - t) / 1e6
    os.unlink(w)
    # what both ends do to this machine's one disk at once: read the image
    # from a cold cache and write a copy that is flushed
    drop_caches()
    t = time.monotonic()
    subprocess.run(["dd", "if=" + img, "of=" + w, "bs=1M", "conv=fdatasync"],
                   capture_output=True, check=True)
    out["copy_cold_MBps"] = size / (time.monotonic() - t) / 1e6
    os.unlink(w)
    if not os.path.exists(CEILING):
        os.makedirs(os.path.dirname(CEILING), exist_ok=True)
        subprocess.run(["cc", "-O2", "-o", CEILING, os.path.join(HERE, "ceiling.c")], check=True)
    r = subprocess.run([CEILING, "tcp", "2"], capture_output=True, text=True, timeout=60)
    try:
        c = json.loads(r.stdout)
        out["tcp_loopback_MBps"] = c.get("tcp_Bps", 0) / 1e6
        out["tcp_raw"] = c
    except ValueError:
        out["tcp_loopback_MBps"] = None
    return out


def monitor(path, cmd, timeout=5.0):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(cmd.encode() + b"\n")
    data = s.recv(65536)
    s.close()
    return data.decode("utf-8", "replace")


def verify(con, proc, timeout=60.0):
    start = len(con.lines)
    proc.stdin.write(b"v")
    proc.stdin.flush()
    i = con.wait_for(r"^disk verify:", timeout, start)
    return con.lines[i][1] if i is not None else None


def figures(res, src_con, tgt_con, t_mig, t_done):
    res.update(harness.heartbeat_gaps(src_con.lines + tgt_con.lines, t_mig, t_done,
                                      PERIOD_MS / 1000.0))


def run_minivmm(d, load, size, src_img, tgt_img):
    res = {}
    port = harness.free_port()
    mon = os.path.join(d, "src.sock")
    sj, tj = os.path.join(d, "src.json"), os.path.join(d, "tgt.json")
    tgt = subprocess.Popen([MINIVMM, "--incoming", "127.0.0.1:%d" % port, "--disk", tgt_img,
                            "--stats-json", tj], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=open(os.path.join(d, "target.stderr"), "wb"))
    tgt_con = harness.Console(tgt.stdout, "target")
    src = subprocess.Popen([MINIVMM, "--kernel", DISK_ELF, "--mem", "%dM" % MEM_MIB, "--name",
                            "bench-disk-%d" % os.getpid(), "--monitor", mon, "--disk", src_img,
                            "--append", append(load), "--migrate-disk", "--downtime-ms",
                            str(DOWNTIME_MS), "--stats-json", sj],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=open(os.path.join(d, "source.stderr"), "wb"))
    src_con = harness.Console(src.stdout, "source")
    try:
        if src_con.wait_for(r"^seq=", 30) is None:
            res["outcome"] = "source did not boot"
            return res
        time.sleep(MIGRATE_AFTER)
        t_mig = time.monotonic()
        monitor(mon, "migrate 127.0.0.1:%d" % port)
        rc = None
        while rc is None and time.monotonic() < t_mig + TIMEOUT_S:
            try:
                rc = src.wait(0.2)
            except subprocess.TimeoutExpired:
                try:
                    info = monitor(mon, "info migrate")
                except OSError:
                    continue  # it exited just now: its socket is gone
                if "status: failed" in info or "status: cancelled" in info:
                    res["error"] = info
                    break
        t_done = time.monotonic()
        st = json.load(open(sj)) if os.path.exists(sj) else {}
        res["outcome"] = "completed" if rc == 0 and st.get("result") == "completed" else "failed"
        res.update({k: st.get(k) for k in ("total_ms", "downtime_ms", "bytes_total", "rounds",
                                           "disk_bulk_ms", "disk_bulk_Bps", "disk_dirty_blocks",
                                           "disk_rounds")})
        if res["outcome"] == "completed":
            tgt_con.wait_for(r"^seq=", 10)
            time.sleep(0.3)
            figures(res, src_con, tgt_con, t_mig, t_done)
            res["verify"] = verify(tgt_con, tgt)
        return res
    finally:
        harness.kill(src, grace=2)
        harness.kill(tgt, grace=2)


def qemu_cmd(img, qmp, load, incoming=False):
    c = [QEMU, "-enable-kvm", "-nodefaults", "-display", "none", "-monitor", "none",
         "-m", "%dM" % MEM_MIB, "-serial", "stdio", "-no-reboot",
         "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
         # a named drive: block migration finds drives by their BlockBackend name
         "-drive", "file=%s,format=raw,if=none,id=d0,node-name=n0" % img,
         "-device", "virtio-blk-pci,drive=d0,id=vd0",
         "-kernel", DISK_ELF, "-append", append(load),
         "-qmp", "unix:%s,server=on,wait=off" % qmp]
    if incoming:
        c += ["-incoming", "defer"]
    return c


def wait_event(q, name, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        t, _ = q.event_time(name)
        if t:
            return t
        time.sleep(0.01)
    return None


def run_qemu(d, load, size, src_img, tgt_img, mirror):
    res = {}
    port, nbd = harness.free_port(), harness.free_port()
    sq, tq = os.path.join(d, "src.qmp"), os.path.join(d, "tgt.qmp")
    with open(tgt_img, "wb") as f:
        f.truncate(size)
    tgt = subprocess.Popen(qemu_cmd(tgt_img, tq, load, True), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=open(os.path.join(d, "target.stderr"), "wb"))
    tgt_con = harness.Console(tgt.stdout, "target")
    src = subprocess.Popen(qemu_cmd(src_img, sq, load), stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=open(os.path.join(d, "source.stderr"), "wb"))
    src_con = harness.Console(src.stdout, "source")
    sqmp = tqmp = None
    try:
        tqmp, sqmp = harness.QMP(tq), harness.QMP(sq)
        sqmp.cmd("migrate-set-parameters", {"downtime-limit": DOWNTIME_MS,
                                            "max-bandwidth": 1 << 40})
        tqmp.cmd("migrate-incoming", {"uri": "tcp:127.0.0.1:%d" % port})
        if src_con.wait_for(r"^seq=", 60) is None:
            res["outcome"] = "source did not boot"
            return res
        time.sleep(MIGRATE_AFTER)
        t_mig = time.monotonic()
        if mirror:
            tqmp.cmd("nbd-server-start", {"addr": {"type": "inet", "data": {
                "host": "127.0.0.1", "port": str(nbd)}}})
            tqmp.cmd("block-export-add", {"type": "nbd", "id": "e0", "node-name": "n0",
                                          "writable": True})
            sqmp.cmd("drive-mirror", {"device": "d0", "job-id": "m0", "sync": "full",
                                      "mode": "existing", "format": "raw",
                                      "target": "nbd://127.0.0.1:%d/n0" % nbd})
            if not wait_event(sqmp, "BLOCK_JOB_READY", TIMEOUT_S):
                res["outcome"] = "mirror never ready"
                return res
            res["mirror_ready_ms"] = (time.monotonic() - t_mig) * 1000.0
            sqmp.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % port})
        else:
            sqmp.cmd("migrate", {"uri": "tcp:127.0.0.1:%d" % port, "blk": True})
        deadline = t_mig + TIMEOUT_S
        last_disk = {}
        while True:
            info = sqmp.cmd("query-migrate")
            # QEMU 7.2 drops block migration's "disk" figures once done
            last_disk = info.get("disk") or last_disk
            if info.get("status") in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        t_done = time.monotonic()
        if mirror and info.get("status") == "completed":
            jobs = sqmp.cmd("query-block-jobs")
            res["mirror_bytes"] = sum(j.get("offset", 0) for j in jobs)
            sqmp.cmd("block-job-cancel", {"device": "m0"})
            wait_event(sqmp, "BLOCK_JOB_COMPLETED", 30)
            tqmp.cmd("nbd-server-stop")
        res["outcome"] = info.get("status")
        ram = info.get("ram", {})
        disk = info.get("disk") or last_disk
        res["total_ms"] = (t_done - t_mig) * 1000.0
        res["qemu_total_ms"] = info.get("total-time")
        res["qemu_downtime_ms"] = info.get("downtime")
        res["bytes_total"] = ((ram.get("transferred") or 0) + (disk.get("transferred") or 0) +
                              res.get("mirror_bytes", 0))
        res["rounds"] = ram.get("dirty-sync-count")
        stop_m, stop_rt = sqmp.event_time("STOP")
        res_m, res_rt = tqmp.event_time("RESUME")
        if stop_rt and res_rt:
            res["downtime_ms"] = (res_rt - stop_rt) * 1000.0
        if res["outcome"] == "completed":
            tgt_con.wait_for(r"^seq=", 10, len(tgt_con.lines))
            time.sleep(0.3)
            figures(res, src_con, tgt_con, t_mig, t_done)
            res["verify"] = verify(tgt_con, tgt)
        return res
    finally:
        for q in (sqmp, tqmp):
            if q:
                try:
                    q.cmd("quit", timeout=3)
                except harness.QMPError:
                    pass
                q.close()
        harness.kill(src, grace=3)
        harness.kill(tgt, grace=3)


def downtime(r):
    """STOP -> RESUME; QEMU's own figure when an event was missed."""
    if r.get("downtime_ms") is None and r.get("qemu_downtime_ms") is not None:
        r["downtime_ms"] = r["qemu_downtime_ms"]
        r["downtime_from_qemu"] = True
    return r


def summarise(rows, key, fmt="%.0f"):
    v = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
    if not v:
        return "-"
    return ("%s (%s-%s)" % (fmt, fmt, fmt)) % (statistics.median(v), min(v), max(v))


def lower_ceiling(ceil):
    c = [v for v in (ceil.get("seq_read_cold_MBps"), ceil.get("tcp_loopback_MBps")) if v]
    return min(c) if c else None


def report(out, rows, ceil, facts, size, cache="warm"):
    low = lower_ceiling(ceil)
    lines = ["# Disk streamed through a live migration (issue 10)", "",
             "`make bench-disk` (`tests/bench/bench_disk.py`): a %d MiB image, the disk guest "
             "writing random 4 KiB blocks in its first %d MiB, %d MiB guest RAM, downtime limit "
             "%d ms, loopback. Median (min-max) over the repeats; total = migrate command to "
             "done; downtime = source paused to target running (QEMU: STOP -> RESUME, its own "
             "`downtime` where an event was missed); gap = "
             "longest interval between guest heartbeats (every %d ms) across the switchover; "
             "rate = image bytes / total; MB sent for qemu-blk is RAM plus the last "
             "`disk.transferred` seen while active (QEMU drops it once done), for qemu-mirror "
             "RAM plus the mirror job's bytes; image copied = runs whose target image equals "
             "the source's beyond the guest's own blocks (`cmp`; the guest's verify reads only "
             "those)." % (size >> 20, DBLOCKS * 4 >> 10, MEM_MIB, DOWNTIME_MS,
                                             PERIOD_MS), "",
             "Page cache: %s (cold: dropped after each run's copy of the image)." % cache, "",
             "Ceilings: sequential O_DIRECT read of the image %.0f MB/s; buffered sequential "
             "read from a cold cache %s MB/s; writing it with "
             "fdatasync %.0f MB/s; copying it on this disk from a cold cache with fdatasync "
             "(`dd`; both ends of a one-machine migration share the disk) %s MB/s; "
             "single-stream loopback TCP %s MB/s. vs ceiling = copy rate / "
             "the lower of the cold read and the link (%s MB/s, the issue's ceiling); "
             "vs disk copy = copy rate / the disk copy." % (
                 ceil.get("seq_read_MBps") or 0,
                 "%.0f" % ceil["seq_read_cold_MBps"] if ceil.get("seq_read_cold_MBps") else "?",
                 ceil.get("write_sync_MBps") or 0,
                 "%.0f" % ceil["copy_cold_MBps"] if ceil.get("copy_cold_MBps") else "?",
                 "%.0f" % ceil["tcp_loopback_MBps"] if ceil.get("tcp_loopback_MBps") else "?",
                 "%.0f" % low if low else "?"),
             "", "Machine: %s, %s cores, kernel %s, %s, %s." % (
                 facts.get("cpu_model"), facts.get("cores"), facts.get("kernel"),
                 facts.get("kvm_flavour"), facts.get("qemu_version")), "",
             "| VMM | dwrite | runs ok | verify pass | image copied | total ms | downtime ms | gap ms | MB sent | copy MB/s | vs ceiling | vs disk copy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for vmm in VMMS:
        for load, _ in LOADS:
            rs = [r for r in rows if r["vmm"] == vmm and r["load"] == load]
            ok = [downtime(r) for r in rs if r.get("outcome") == "completed"]
            vp = [r for r in ok if (r.get("verify") or "").startswith("disk verify: pass")]
            for r in ok:
                r["MB_sent"] = (r.get("bytes_total") or 0) / 1e6
                r["copy_MBps"] = size / 1e6 / (r["total_ms"] / 1000.0) if r.get("total_ms") else None
                r["vs_ceiling"] = r["copy_MBps"] / low if r["copy_MBps"] and low else None
                dc = ceil.get("copy_cold_MBps")
                r["vs_disk_copy"] = r["copy_MBps"] / dc if r["copy_MBps"] and dc else None
            same = [r for r in ok if r.get("rest_matches")]
            lines.append("| %s | %s | %d/%d | %d | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                vmm, load, len(ok), len(rs), len(vp),
                "%d/%d" % (len(same), len(ok)) if any("rest_matches" in r for r in ok) else "-",
                summarise(ok, "total_ms"),
                summarise(ok, "downtime_ms"), summarise(ok, "gap_ms"), summarise(ok, "MB_sent"),
                summarise(ok, "copy_MBps"), summarise(ok, "vs_ceiling", "%.2f"),
                summarise(ok, "vs_disk_copy", "%.2f")))
    with open(os.path.join(out, "index.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def cmd_report(d, size_mib):
    rows, ceil, facts, cache = [], {}, {}, "warm"
    with open(os.path.join(d, "results.jsonl")) as f:
        for line in f:
            o = json.loads(line)
            if o.get("kind") == "machine":
                ceil, facts = o.get("ceiling", {}), o.get("machine", {})
                size_mib = o.get("size_mib", size_mib)
                cache = o.get("cache", "warm")
            elif o.get("kind") == "run":
                rows.append(o)
    report(d, rows, ceil, facts, size_mib << 20, cache)
    return 0


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "report":
        return cmd_report(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 1024)
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--out")
    ap.add_argument("--vmms", default=",".join(VMMS))
    ap.add_argument("--cache", choices=("cold", "warm"), default="cold")
    a = ap.parse_args()
    if not os.path.exists("/dev/kvm"):
        log("bench-disk: /dev/kvm is missing")
        return 2
    harness.ensure_packages({QEMU: "qemu-system-x86"}, log=log)
    for p in (MINIVMM, DISK_ELF):
        if not os.path.exists(p):
            log("bench-disk: %s missing (make)" % p)
            return 2
    out = a.out or os.path.join(ROOT, "docs", "results",
                                "disk-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    os.makedirs(out, exist_ok=True)
    size = a.size_mib << 20
    tmp = tempfile.mkdtemp(prefix="bench-disk-", dir="/tmp")
    fstype = subprocess.run(["stat", "-f", "-c", "%T", tmp], capture_output=True,
                            text=True).stdout.strip()
    if a.cache == "cold" and fstype in ("tmpfs", "ramfs"):
        # drop_caches cannot evict tmpfs: "cold" would read memory
        log("bench-disk: /tmp is %s: a cold cache cannot be had there (--cache warm, or "
            "mount /tmp on a disk)" % fstype)
        shutil.rmtree(tmp, ignore_errors=True)
        return 2
    results = os.path.join(out, "results.jsonl")
    rows = []
    try:
        base = os.path.join(tmp, "base.img")
        log("bench-disk: writing a %d MiB base image" % a.size_mib)
        make_base(base, size)
        ceil = ceilings(base, size)
        facts = harness.machine_facts()
        jsonl.append_line(results, {"kind": "machine", "machine": facts, "ceiling": ceil,
                                    "size_mib": a.size_mib, "cache": a.cache,
                                    "image_fs": fstype})
        for rep in range(a.repeats):
            for vmm in a.vmms.split(","):
                for load, _ in LOADS:
                    d = os.path.join(tmp, "%s-%s-%d" % (vmm, load, rep))
                    os.makedirs(d)
                    src_img, tgt_img = os.path.join(d, "src.img"), os.path.join(d, "tgt.img")
                    shutil.copyfile(base, src_img)
                    if a.cache == "cold":
                        drop_caches()
                    if vmm == "minivmm":
                        r = run_minivmm(d, load, size, src_img, tgt_img)
                    else:
                        r = run_qemu(d, load, size, src_img, tgt_img, vmm == "qemu-mirror")
                    if r.get("outcome") == "completed":
                        r["rest_matches"] = rest_matches(src_img, tgt_img)
                    r.update({"kind": "run", "vmm": vmm, "load": load, "repeat": rep})
                    log("bench-disk: %s dwrite=%s #%d: %s total %s ms downtime %s ms gap %s ms %s" % (
                        vmm, load, rep, r.get("outcome"), r.get("total_ms"), r.get("downtime_ms"),
                        r.get("gap_ms"), r.get("verify")) +
                        " rest of the image copied: %s" % r.get("rest_matches"))
                    jsonl.append_line(results, r)
                    rows.append(r)
                    if r.get("outcome") != "completed":
                        for n in ("source.stderr", "target.stderr"):
                            if os.path.exists(os.path.join(d, n)):
                                shutil.copyfile(os.path.join(d, n), os.path.join(
                                    out, "%s-%s-%d-%s" % (vmm, load, rep, n)))
                    shutil.rmtree(d, ignore_errors=True)
        report(out, rows, ceil, facts, size, a.cache)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/).

The migration seeds come from real streams: a small live migration of the
dirty guest (8 MiB, one vCPU: the fake VM's shape, tests/fuzz/fakevm.h)
through a proxy that records what the source sends, and a snapshot
(--migrate file:). Both are split into frames; each target gets the part
it parses; a state with a virtio-net comes from the fake VM itself
(fuzz_vmstate's FUZZ_MKSEED, so `make fuzz` first). The others (ELF guests, monitor lines, virtqueues, virtio-net
programs) are built here. Run from the repository root after `make` and
`make fuzz`:
    python3 tests/fuzz/seeds.py
"""
import os, socket, struct, subprocess, sys, threading, time, tempfile

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "tests/fuzz/corpus")
MVMM = os.path.join(ROOT, "minivmm")
G = os.path.join(ROOT, "build/guests")

def frames(b, off):
    out = []
    while off + 8 <= len(b):
        t, n = struct.unpack_from("<II", b, off)
        if off + 8 + n > len(b):
            break
        out.append((t, b[off + 8:off + 8 + n]))
        off += 8 + n
    return out

def enc(fr):
    return b"".join(struct.pack("<II", t, len(p)) + p for t, p in fr)

def put(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def capture_live(tmp):
    """Source -> proxy -> target over unix sockets; returns what the source sent."""
    tsock, psock = os.path.join(tmp, "t.sock"), os.path.join(tmp, "p.sock")
    tgt = subprocess.Popen([MVMM, "--incoming", "unix:" + tsock, "--name", "fzseed-t",
                            "--monitor", os.path.join(tmp, "t.mon")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):
        if os.path.exists(tsock):
            break
        time.sleep(0.05)
    ls = socket.socket(socket.AF_UNIX); ls.bind(psock); ls.listen(1)
    sent = bytearray()
    def pump(a, b, rec):
        while True:
            try:
                d = a.recv(65536)
            except OSError:
                d = b""
            if not d:
                try: b.shutdown(socket.SHUT_WR)
                except OSError: pass
                return
            if rec is not None:
                rec.extend(d)
            b.sendall(d)
    src = subprocess.Popen([MVMM, "--kernel", os.path.join(G, "dirty.elf"), "--mem", "8M",
                            "--append", "wss=1 rate=200 verify=1", "--name", "fzseed-s",
                            "--monitor", os.path.join(tmp, "s.mon"), "--migrate", "unix:" + psock,
                            "--migrate-after", "1", "--migrate-channels", "0", "--verify-ram",
                            "--downtime-ms", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    c, _ = ls.accept()
    u = socket.socket(socket.AF_UNIX); u.connect(tsock)
    th = [threading.Thread(target=pump, args=(c, u, sent)), threading.Thread(target=pump, args=(u, c, None))]
    for t in th: t.start()
    src.wait(timeout=60)
    for t in th: t.join(timeout=10)
    tgt.kill(); tgt.wait()
    return bytes(sent)

def capture_file(tmp):
    path = os.path.join(tmp, "s.snap")
    subprocess.run([MVMM, "--kernel", os.path.join(G, "counter.elf"), "--mem", "8M",
                    "--name", "fzseed-f", "--monitor", os.path.join(tmp, "f.mon"),
                    "--migrate", "file:" + path, "--migrate-after", "0.3"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    return open(path, "rb").read()

def nic_state(tmp):
    """The fake VM's own state with its virtio-net (fuzz_vmstate writes it:
    FUZZ_MKSEED), for the NIC paths: our real streams have no NIC."""
    exe = os.path.join(ROOT, "build/fuzz/fuzz_vmstate")
    path = os.path.join(tmp, "nic.seed")
    if not os.path.exists(exe):
        print("seeds: %s missing (make fuzz): no NIC seeds" % exe, file=sys.stderr)
        return None
    subprocess.run([exe], env=dict(os.environ, FUZZ_MKSEED=path), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return open(path, "rb").read()[1:]

def after_handshake(fr):
    i = 0
    while i < len(fr) and fr[i][0] in (1, 17):  # HELLO, DEVICES
        i += 1
    return fr[i:]

def small(fr, limit=60000):
    """The frames without the big PAGES frames, END without its digest (the
    RAM no longer matches it): a small seed that still reaches COMMIT."""
    out = []
    for t, p in fr:
        if t == 7 and len(p) > limit:
            continue
        if t == 9:
            p = struct.pack("<IQ", 0, 0)
        out.append((t, p))
    return out

def migration_seeds(tmp):
    live = capture_live(tmp)
    snap = capture_file(tmp)
    lf = frames(live, 16)
    sf = frames(snap, 16)
    lt = [t for t, _ in lf]
    print("live stream: %d bytes, frames %s" % (len(live), sorted(set(lt))), file=sys.stderr)
    body = after_handshake(lf)
    put("fuzz_receive", "live-small", b"\0" + enc(small(body)) + struct.pack("<II", 11, 0))
    put("fuzz_receive", "snap-full", b"\1" + enc(after_handshake(sf)))
    put("fuzz_receive", "rounds-only", b"\0" + enc([f for f in body if f[0] in (4, 6)]))
    nic = nic_state(tmp)
    if nic:
        withnic = [(t, nic if t == 8 else p) for t, p in small(body)]
        put("fuzz_receive", "live-nic", b"\2" + enc(withnic) + struct.pack("<II", 11, 0))
        put("fuzz_vmstate", "state-nic", b"\2" + nic)
    hello = [p for t, p in lf if t == 1][0]
    state = [p for t, p in lf if t == 8][0]
    put("fuzz_vmstate", "state-live", b"\0" + state)
    put("fuzz_vmstate", "state-snap", b"\0" + [p for t, p in sf if t == 8][0])
    # LATE: a virtio-net entry with two frames (u16 count, u16 len + bytes).
    nf = struct.pack("<H", 2) + struct.pack("<H", 60) + b"\xff" * 60 + struct.pack("<H", 14) + b"\x52" * 14
    put("fuzz_vmstate", "late-net", b"\1" + struct.pack("<II", 0x10, len(nf)) + nf)
    put("fuzz_frames", "preamble", b"\0" + live[:16])
    put("fuzz_frames", "hdr", b"\1" + live[16:24])
    put("fuzz_frames", "hello", b"\2" + hello)
    pages = sorted((p for t, p in lf if t == 7), key=len)
    put("fuzz_frames", "pages-small", b"\3" + pages[0])
    put("fuzz_frames", "cpu", b"\4" + hello[96:])
    chan_seeds(live[:16], pages[0])
    dev = struct.pack("<III", 1, 1, 22) + b"\x52\x54\x00\x12\x34\x56" + b"br0".ljust(16, b"\0")
    put("fuzz_frames", "devices", b"\5" + dev)
    put("fuzz_frames", "delta", b"\6" + bytes([8, 2, 0xaa, 0xbb, 0xf5, 0x1f, 1, 0xcc]))
    # post-copy's delta area: a 3-byte entry, an empty one, one cut short
    put("fuzz_frames", "pcdelta", b"\7" + bytes([3, 0, 0, 1, 0x33, 0, 0, 2, 0, 0x10, 1]))

def other_seeds():
    for g in ("hello", "counter", "dirty"):
        put("fuzz_multiboot", g, bytes([0x01 | (4 << 2)]) + b"x=1" + b"\0" + open(os.path.join(G, g + ".elf"), "rb").read())
    lines = [b"help\n", b"info status\n", b"info migrate\n", b"stop\ncont\n",
             b"migrate 127.0.0.1:4444\n", b"migrate unix:/tmp/x.sock\n", b"migrate [::1]:5\n",
             b"migrate file:/tmp/s.snap\n", b"migrate_cancel\n",
             b"migrate_set_parameter downtime-ms 30\n", b"migrate_set_parameter max-bandwidth 10M\n",
             b"migrate_set_parameter on-nonconvergence force\n", b"migrate_set_parameter verify-ram on\n",
             b"migrate_set_parameter xbzrle-cache 64M\n", b"quit\n"]
    for i, l in enumerate(lines):
        data = bytearray()
        for j in range(0, len(l), 64):
            ch = l[j:j + 64]
            data += bytes([len(ch) - 1]) + ch
        put("fuzz_monitor", "line%02d" % i, bytes(data))
    # A queue of 8 at 0x1000/0x2000/0x3000: a 2-descriptor chain (readable
    # then writable) and a single one, both available.
    ram = bytearray(0x3100)
    struct.pack_into("<QIHH", ram, 0x1000, 0x4000 - 0x800, 64, 1, 1)
    struct.pack_into("<QIHH", ram, 0x1010, 0x5000 - 0x800, 128, 2, 0)
    struct.pack_into("<QIHH", ram, 0x1020, 0x6000 - 0x800, 32, 0, 0)
    struct.pack_into("<HHHH", ram, 0x2000, 0, 2, 0, 2)
    hdr = struct.pack("<HQQQHH", 8, 0x1000, 0x2000, 0x3000, 0, 0) + b"\0\0"
    put("fuzz_virtqueue", "two-chains", hdr + bytes(ram))
    # virtio-net: a driver bringing up TX (queue 1) with one frame and RX
    # (queue 0) with one buffer, then notifying and running the device.
    ops = []
    def op(kind, size, off, val): ops.append(struct.pack("<BBHI", kind, size, off, val))
    W, R = 2, 3
    op(W, 0, 0x14, 0); op(W, 0, 0x14, 1); op(W, 0, 0x14, 3)
    op(W, 2, 0x08, 0); op(R, 2, 0x04, 0); op(W, 2, 0x0c, (1 << 5) | (1 << 16))
    op(W, 2, 0x08, 1); op(W, 2, 0x0c, 1)  # VERSION_1
    op(W, 0, 0x14, 11)
    for q, base in ((0, 0x10000), (1, 0x20000)):
        op(W, 1, 0x16, q); op(W, 1, 0x18, 8)
        op(W, 2, 0x20, base); op(W, 2, 0x24, 0)
        op(W, 2, 0x28, base + 0x1000); op(W, 2, 0x2c, 0)
        op(W, 2, 0x30, base + 0x2000); op(W, 2, 0x34, 0)
        op(W, 1, 0x1c, 1)
    op(W, 0, 0x14, 15)
    op(5, 0, 0, 60); op(W, 1, 0x300, 0); op(W, 1, 0x304, 1); op(4, 0, 0, 0); op(R, 0, 0x100, 0)
    op(R, 2, 0x200, 0); op(4, 0, 0, 0)
    ram = bytearray(0x23000)
    struct.pack_into("<QIHH", ram, 0x10000, 0x30000 & 0x1ffff, 1526, 2, 0)  # RX buffer (writable)
    struct.pack_into("<HHHH", ram, 0x11000, 0, 1, 0, 0)
    struct.pack_into("<QIHH", ram, 0x20000, 0x8000, 12 + 60, 0, 0)  # TX header + frame
    struct.pack_into("<HHHH", ram, 0x21000, 0, 1, 0, 0)
    put("fuzz_virtio_net", "tx-rx", struct.pack("<H", len(ops)) + b"".join(ops) + bytes(ram))

def chan_seeds(pre, pages):
    """fuzz_chan: a data channel's connection (preamble, CHANNEL(0, the
    fuzz target's token), pages and SYNCs of rounds 0..3)."""
    ch = enc([(15, struct.pack("<IQ", 0, 0x1122334455667788))])
    sync = lambda r: enc([(16, struct.pack("<I", r))])
    put("fuzz_chan", "rounds", b"\0" + pre + ch + enc([(7, pages)]) + sync(0) + enc([(7, pages)]) + sync(1)
        + sync(2) + sync(3))
    put("fuzz_chan", "wrong-token", b"\0" + pre + enc([(15, struct.pack("<IQ", 0, 1))]))
    put("fuzz_chan", "gave-up", b"\0" + pre + ch + sync(0) + enc([(13, b"source gave up")]))
    put("fuzz_chan", "frames-only", b"\1" + enc([(7, pages)]) + sync(0) + sync(1))

def handshake_seeds():
    """fuzz_handshake: the peer's side of a keyed handshake (its proofs
    cannot be right: the fuzzer has no key)."""
    def pre(flags):
        return b"MVMMIGR\n" + struct.pack("<II", 1, flags)
    nonce, mac = bytes(range(32)), bytes(range(32, 64))
    hello = enc([(21, struct.pack("<II", 1, 0) + nonce)])
    put("fuzz_handshake", "target-keyed", b"\0" + pre(1) + hello + enc([(23, mac)]))
    put("fuzz_handshake", "target-integrity",
        b"\0" + pre(1) + enc([(21, struct.pack("<II", 1, 1) + nonce), (23, mac)]))
    put("fuzz_handshake", "target-keyless-peer", b"\0" + pre(0) + enc([(1, bytes(64))]))
    put("fuzz_handshake", "target-we-keyless", b"\2" + pre(1) + hello)
    put("fuzz_handshake", "source-challenge", b"\1" + enc([(22, struct.pack("<II", 1, 0) + nonce + mac)]))
    put("fuzz_handshake", "source-integrity", b"\5" + enc([(22, struct.pack("<II", 1, 1) + nonce + mac)]))
    put("fuzz_handshake", "source-reject", b"\1" + enc([(3, b"no key here")]))

if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="fzseed") as tmp:
        migration_seeds(tmp)
    other_seeds()
    handshake_seeds()
    tot = 0
    for dp, _, fs in os.walk(OUT):
        tot += sum(os.path.getsize(os.path.join(dp, f)) for f in fs)
    print("seeds: %d bytes under %s" % (tot, OUT), file=sys.stderr)

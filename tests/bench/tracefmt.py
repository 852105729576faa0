"""Reader and writer of the minivmm dirty-page trace (docs/dirty-trace.md).

Same format as migrate/stats/trace.c. Rounds are returned as lists of runs
(start_page, length); helpers turn them into page lists.
"""

import struct
import time
import zlib

MAGIC = b"MVDTRACE"
VERSION = 1
HEADER = struct.Struct("<8sIIIIQQ")        # 40 bytes
REC = struct.Struct("<IIQQII")             # 32 bytes
REC_ROUND = 0x31444E52                     # "RND1"
REC_END = 0x31444E45                       # "END1"
MAX_NPAGES = 1 << 40


class TraceError(ValueError):
    pass


class Truncated(TraceError):
    pass


def _uleb(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return out


def _read_uleb(buf, pos, end):
    v, shift = 0, 0
    for i in range(10):
        if pos + i >= end:
            raise TraceError("truncated varint")
        b = buf[pos + i]
        v |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return v, pos + i + 1
    raise TraceError("varint too long")


def runs_from_pages(pages):
    """Sorted unique page numbers -> maximal runs."""
    runs = []
    for p in pages:
        if runs and runs[-1][0] + runs[-1][1] == p:
            runs[-1][1] += 1
        else:
            runs.append([p, 1])
    return [tuple(r) for r in runs]


def pages_from_runs(runs):
    out = []
    for s, n in runs:
        out.extend(range(s, s + n))
    return out


class Writer:
    def __init__(self, path, npages, page_size=4096, start_unix_ns=None):
        if not 0 < npages <= MAX_NPAGES or page_size < 512 or page_size & (page_size - 1):
            raise ValueError("bad npages/page_size")
        self.f = open(path, "wb")
        self.npages, self.page_size, self.nrounds = npages, page_size, 0
        self.f.write(HEADER.pack(MAGIC, VERSION, HEADER.size, page_size, 0, npages,
                                 start_unix_ns if start_unix_ns is not None else time.time_ns()))

    def _rec(self, typ, rnd, t_ns, ndirty, nruns, payload):
        rec = REC.pack(typ, rnd, t_ns, ndirty, nruns, len(payload)) + bytes(payload)
        self.f.write(rec + struct.pack("<I", zlib.crc32(rec) & 0xFFFFFFFF))

    def round(self, rnd, t_ns, pages):
        pages = sorted(set(pages))
        if pages and (pages[0] < 0 or pages[-1] >= self.npages):
            raise ValueError("page out of range")
        runs = runs_from_pages(pages)
        payload, prev_end = bytearray(), 0
        for s, n in runs:
            payload += _uleb(s - prev_end) + _uleb(n)
            prev_end = s + n
        self._rec(REC_ROUND, rnd, t_ns, len(pages), len(runs), payload)
        self.nrounds += 1

    def close(self):
        if self.f:
            self._rec(REC_END, self.nrounds, 0, 0, 0, b"")
            self.f.close()
            self.f = None


def read(path, strict=False):
    """Return dict(npages, page_size, start_unix_ns, rounds=[{round, t_ns, ndirty, runs}],
    complete=bool). Corrupt data raises TraceError; a file truncated before END
    returns the complete rounds with complete=False (or raises Truncated if strict)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < HEADER.size:
        raise TraceError("file shorter than the header")
    magic, ver, hsize, ps, _flags, npages, start = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise TraceError("not a minivmm dirty trace (bad magic)")
    if ver != VERSION or hsize != HEADER.size:
        raise TraceError("unsupported trace version %d" % ver)
    if ps < 512 or ps & (ps - 1) or not 0 < npages <= MAX_NPAGES:
        raise TraceError("bad page size or page count")
    out = {"npages": npages, "page_size": ps, "start_unix_ns": start, "rounds": [], "complete": False}
    pos = HEADER.size
    while True:
        if pos + REC.size > len(data):
            if strict:
                raise Truncated("truncated before END")
            return out
        typ, rnd, t_ns, ndirty, nruns, plen = REC.unpack_from(data, pos)
        if typ not in (REC_ROUND, REC_END):
            raise TraceError("bad record type at offset %d" % pos)
        if ndirty > npages or nruns > (npages + 1) // 2 or plen < 2 * nruns or plen > 20 * nruns:
            raise TraceError("bad record header at offset %d" % pos)
        end = pos + REC.size + plen
        if end + 4 > len(data):
            if strict:
                raise Truncated("truncated record")
            return out
        (crc,) = struct.unpack_from("<I", data, end)
        if zlib.crc32(data[pos:end]) & 0xFFFFFFFF != crc:
            raise TraceError("CRC mismatch at offset %d" % pos)
        if typ == REC_END:
            if rnd != len(out["rounds"]) or ndirty or nruns or plen:
                raise TraceError("bad END record")
            out["complete"] = True
            return out
        runs, p, prev_end, total = [], pos + REC.size, 0, 0
        for k in range(nruns):
            gap, p = _read_uleb(data, p, end)
            n, p = _read_uleb(data, p, end)
            if (k and gap == 0) or n == 0 or prev_end + gap + n > npages:
                raise TraceError("bad run in round %d" % rnd)
            runs.append((prev_end + gap, n))
            prev_end += gap + n
            total += n
        if p != end or total != ndirty:
            raise TraceError("run data does not match header in round %d" % rnd)
        out["rounds"].append({"round": rnd, "t_ns": t_ns, "ndirty": ndirty, "runs": runs})
        pos = end + 4

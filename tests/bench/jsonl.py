"""JSON-lines results file: one object per line, appended atomically-ish.

Each line is written with a single write() on an O_APPEND descriptor and
fsync'd, so an interrupted matrix leaves at worst one torn last line, which
read_lines() skips (and counts).
"""

import json
import math
import os

SCHEMA_RUN = "minivmm-bench-run/1"
SCHEMA_CEILING = "minivmm-bench-ceiling/1"
SCHEMA_BOOT = "minivmm-bench-boot/1"


def _clean(obj):
    """JSON has no NaN/Infinity: map them to None, recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def dumps(obj):
    line = json.dumps(_clean(obj), sort_keys=True, separators=(",", ":"), allow_nan=False)
    assert "\n" not in line
    return line


def append_line(path, obj):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    data = (dumps(obj) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # a torn previous line (crash mid-write) must not swallow this one
        if os.fstat(fd).st_size > 0:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        n = os.write(fd, data)
        if n != len(data):
            raise OSError("short write to %s" % path)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path):
    """Return (objects, n_bad_lines). A missing file is empty."""
    objs, bad = [], 0
    try:
        f = open(path)
    except FileNotFoundError:
        return objs, 0
    with f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                o = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(o, dict):
                objs.append(o)
            else:
                bad += 1
    return objs, bad


def done_run_ids(path):
    """run_ids that already have a result line (any status but 'harness-error')."""
    objs, _ = read_lines(path)
    return {o["run_id"] for o in objs
            if o.get("kind") == "run" and "run_id" in o and o.get("status") != "harness-error"}

"""Benchmark matrix configuration: parser and expansion into runs.

Format (see docs/benchmarking.md):

    # comment (also after values)
    name = quick                 # matrix-level keys before the first section
    [defaults]                   # inputs shared by every cell
    repeats = 3
    [cell idle]                  # one cell; a comma list is an axis
    mem = 512M, 2G               # cells expand to the cartesian product
    vmm = minivmm, qemu, qemu-tuned

Every run = one cell x one combination of its axes x one repeat x one VMM.
"""

import itertools
import re

MATRIX_KEYS = {"name", "description", "ceiling_s", "est_run_s"}

# input key -> (default, kind)
INPUT_KEYS = {
    "vmm": ("minivmm", "vmm"),
    "guest": ("dirty", "guest"),
    "mem": ("512M", "size"),
    "cpus": ("1", "int"),
    "wss": ("0", "int"),          # MiB
    "rate": ("max", "rate"),      # pages/s or max
    "pattern": ("seq", "pattern"),
    "fill": ("0", "int"),         # MiB
    "fresh": ("0", "int"),        # dirty guest: 1 = rewrite whole pages with fresh contents
    "period_ms": ("5", "int"),    # heartbeat period (issue 11: at most 5 ms in every matrix)
    "downtime_ms": ("30", "int"),
    "max_bandwidth": ("0", "size"),   # bytes/s, 0 = unlimited
    "link": ("loopback", "link"),
    "repeats": ("1", "int"),
    "migrate_after": ("3", "float"),  # seconds of guest run before migrating
    "timeout_s": ("90", "float"),     # per migration; then cancel / kill
    "verify": ("yes", "bool"),
    "trace": ("no", "bool"),          # minivmm --dirty-trace
}

VMMS = ("minivmm", "minivmm-1stream", "minivmm-prealloc", "minivmm-nice", "minivmm-nice0",
        "minivmm-force", "minivmm-throttle", "minivmm-xbzrle", "minivmm-xbzrle-throttle", "minivmm-postcopy", "minivmm-postcopy-now", "minivmm-postcopy-after-precopy", "minivmm-postcopy-after-precopy-xbzrle",
        "qemu", "qemu-multifd", "qemu-xbzrle", "qemu-ac", "qemu-ac-50-25", "qemu-ac-99", "qemu-xbzrle-ac", "qemu-postcopy", "qemu-postcopy-xbzrle", "qemu-postcopy-now", "qemu-postcopy-preempt", "qemu-postcopy-preempt-now",
        "qemu-tuned", "qemu-prealloc", "qemu-multifd-prealloc")
GUESTS = ("dirty", "counter", "hello")
PATTERNS = ("seq", "random", "hotcold")


class ConfigError(ValueError):
    pass


def parse_size(text):
    """'512M' -> bytes. Suffixes K, M, G, T (powers of 1024); plain number = bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
    if not m:
        raise ConfigError("bad size %r" % text)
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def parse_rate(text):
    """'1gbit' / '100mbit' / '10gbit' / '100MiBps' (bytes) -> bits per second."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|m|g)ibps", text.strip().lower())
    if m:
        return int(float(m.group(1)) * {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2)] * 8)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(k|m|g)?bit", text.strip().lower())
    if not m:
        raise ConfigError("bad link rate %r (want e.g. 1gbit, 100mbit, 100MiBps)" % text)
    return int(float(m.group(1)) * {None: 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)])


def parse_link(text):
    """'loopback' or 'veth:RATE[:RTT][:QUEUE]': RTT like 2ms (needs sch_netem),
    QUEUE fifo (the default: tbf's one queue) or prio (tbf over pfifo_fast,
    the default qdisc of a host's NIC: three bands by packet priority)."""
    t = text.strip()
    if t == "loopback":
        return {"kind": "loopback"}
    parts = t.split(":")
    if parts[0] != "veth" or len(parts) not in (2, 3, 4):
        raise ConfigError("bad link %r (want loopback or veth:RATE[:RTT][:fifo|prio])" % text)
    link = {"kind": "veth", "rate_bps": parse_rate(parts[1])}
    queue = None
    for extra in parts[2:]:
        m = re.fullmatch(r"(\d+(?:\.\d+)?)ms", extra)
        if m and "rtt_ms" not in link and queue is None:
            link["rtt_ms"] = float(m.group(1))
        elif extra in ("fifo", "prio") and queue is None:
            queue = extra
        else:
            raise ConfigError("bad link field %r in %r (want an RTT like 0.2ms, or fifo|prio)"
                              % (extra, text))
    if queue == "prio":
        link["queue"] = "prio"
    return link


def check_value(key, val):
    kind = INPUT_KEYS[key][1]
    if kind == "int":
        if not re.fullmatch(r"\d+", val):
            raise ConfigError("%s: %r is not a non-negative integer" % (key, val))
    elif kind == "float":
        try:
            if float(val) < 0:
                raise ValueError
        except ValueError:
            raise ConfigError("%s: %r is not a non-negative number" % (key, val))
    elif kind == "size":
        parse_size(val)
    elif kind == "rate":
        if val != "max" and not re.fullmatch(r"\d+", val):
            raise ConfigError("rate: %r is neither max nor pages/s" % val)
    elif kind == "link":
        parse_link(val)
    elif kind == "bool":
        if val not in ("yes", "no"):
            raise ConfigError("%s: want yes or no, got %r" % (key, val))
    elif kind == "vmm":
        if val not in VMMS:
            raise ConfigError("vmm: unknown %r (known: %s)" % (val, ", ".join(VMMS)))
    elif kind == "guest":
        if val not in GUESTS:
            raise ConfigError("guest: unknown %r" % val)
    elif kind == "pattern":
        if val not in PATTERNS:
            raise ConfigError("pattern: unknown %r" % val)


def parse(text, source="<config>"):
    """Return {'matrix': {...}, 'defaults': {key: [values]}, 'cells': [(name, {key: [values]})]}."""
    matrix, defaults, cells = {}, {}, []
    current = None  # None = matrix level, dict = section
    names = set()
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = "%s:%d" % (source, lineno)
        m = re.fullmatch(r"\[\s*(defaults|cell\s+([A-Za-z0-9_.-]+))\s*\]", line)
        if m:
            if m.group(1) == "defaults":
                current = defaults
            else:
                name = m.group(2)
                if name in names:
                    raise ConfigError("%s: duplicate cell %r" % (where, name))
                names.add(name)
                current = {}
                cells.append((name, current))
            continue
        if line.startswith("["):
            raise ConfigError("%s: bad section header %r" % (where, line))
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if not m:
            raise ConfigError("%s: expected key = value, got %r" % (where, line))
        key, val = m.group(1), m.group(2).strip()
        if current is None:
            if key not in MATRIX_KEYS:
                raise ConfigError("%s: unknown matrix key %r" % (where, key))
            matrix[key] = val
            continue
        if key not in INPUT_KEYS:
            raise ConfigError("%s: unknown key %r" % (where, key))
        if key in current:
            raise ConfigError("%s: %r given twice in this section" % (where, key))
        vals = [v.strip() for v in val.split(",")]
        if any(v == "" for v in vals):
            raise ConfigError("%s: empty value in %r" % (where, val))
        if key == "repeats" and len(vals) != 1:
            raise ConfigError("%s: repeats takes one value" % where)
        for v in vals:
            try:
                check_value(key, v)
            except ConfigError as e:
                raise ConfigError("%s: %s" % (where, e))
        current[key] = vals
    if not cells:
        raise ConfigError("%s: no [cell NAME] section" % source)
    return {"matrix": matrix, "defaults": defaults, "cells": cells}


def load(path):
    with open(path) as f:
        return parse(f.read(), path)


def canonical(inputs):
    keys = [k for k in INPUT_KEYS if k not in ("repeats",)]
    return ",".join("%s=%s" % (k, inputs[k]) for k in keys)


def expand(cfg, repeats_override=None):
    """List of run dicts in execution order: per cell, per combination, per
    repeat, every VMM (VMMs interleaved so drift hits them alike)."""
    runs = []
    for name, sect in cfg["cells"]:
        merged = {k: [v[0]] for k, v in INPUT_KEYS.items()}
        merged.update(cfg["defaults"])
        merged.update(sect)
        vmms = merged.pop("vmm")
        repeats = int(merged.pop("repeats")[0]) if repeats_override is None else repeats_override
        axes = [k for k in merged]
        for combo in itertools.product(*(merged[k] for k in axes)):
            base = dict(zip(axes, combo))
            for rep in range(repeats):
                for vmm in vmms:
                    inputs = dict(base, vmm=vmm)
                    run = {
                        "cell": name,
                        "repeat": rep,
                        "inputs": inputs,
                        "axes": sorted(k for k in sect if len(sect[k]) > 1 and k != "vmm"),
                    }
                    run["run_id"] = "%s/%s/r%d" % (name, canonical(inputs), rep)
                    runs.append(run)
    return runs


def typed_inputs(inputs):
    """Inputs converted to numbers where it makes sense (for the JSON line)."""
    out = {}
    for k, v in inputs.items():
        kind = INPUT_KEYS.get(k, (None, "str"))[1]
        if kind == "int":
            out[k] = int(v)
        elif kind == "float":
            out[k] = float(v)
        elif kind == "size":
            out[k] = parse_size(v)
        elif kind == "bool":
            out[k] = v == "yes"
        elif kind == "rate":
            out[k] = v if v == "max" else int(v)
        else:
            out[k] = v
    out["link_spec"] = parse_link(inputs.get("link", "loopback"))
    return out

#!/usr/bin/env python3
"""Replay a minivmm dirty-page trace under a link bandwidth and a stop rule.

    replay.py TRACE --bw 10gbit [--rule ours|qemu|xen|all] [--downtime-ms 30]
              [--overhead 16] [--fixed-ms 1] [--extend last|loop|none] [--json]
              [--policy force|throttle|xbzrle|both|all] [--xbzrle-cache 512M]
              [--delta-bytes 24] [--throttle-initial 20 --throttle-increment 10
              --throttle-max 99] [--compare SOURCE_STATS.json]
    replay.py synth OUT --npages N --rounds R --interval-ms I --dirty D [--shrink F]

Model (docs/dirty-trace.md, "Replay"): record k >= 1 of the trace is the set of
pages dirtied between the syncs at t[k-1] and t[k]; inside an interval the
pages are taken as dirtied uniformly in time (in page order). Round 0 sends
the pages of record 0. Each simulated round sends its pending pages at the
link bandwidth; the pages the trace dirtied during that simulated time are the
next round's pending set. Past the trace's end the last interval repeats
(--extend last, default: the workload is in steady state), the whole trace
repeats (loop) or nothing more is dirtied (none). After each sync the stop
rule decides; the final stop-and-copy sends the pending set while paused:
downtime = pending bytes / bw + fixed cost.

Stop rules:
  ours  pending_bytes / bw + fixed_ms <= limit, unless one more round is
        expected to halve the pending set (dirty rate x its send time <= half
        of it, and at least 1 ms of pages); caps: --max-rounds (30),
        --max-bytes-factor x RAM (3), --max-time-s (300): forced switchover.
  qemu  pending dirty bytes (pages x page size) <= bw x limit
        (migration_iteration_run's threshold_size); no caps of its own, so
        --max-time-s ends it as "not converged" (QEMU would go on forever).
  xen   Clark et al./libxc: 30 rounds, or > 3 x RAM sent, or < 50 pages dirty.

Policies (minivmm's, with rule ours; docs/dirty-trace.md, "Policies"):
  force     no throttle, no delta encoding: the caps force the switchover.
  throttle  on-nonconvergence throttle: after each sync that continues, the
            plan of migrate/policy/throttle_plan.c (a strike when the round
            dirtied more than half of what the round before sent; every
            second strike raises the share: initial, +increment, up to max)
            sets the share of time the vCPUs are held in the next round; the
            guest then advances through the trace at (100 - share) % of the
            wall clock. Holds are min(downtime limit, 20 ms) long.
  xbzrle    --xbzrle-cache: a direct-mapped cache of pages (slot = page mod
            slots) filled by every page sent; a page sent again that is still
            in its slot goes as a delta of --delta-bytes (+2 header) instead
            of a page. The trace has no contents: --delta-bytes is the mean
            encoded size (~24 for the dirty guest's stamps, 4096 or more for
            fresh=1, where every delta is refused and the page sent whole).
            Like minivmm's, the stop rule still counts whole pages.
  both      throttle and xbzrle.
"""

import argparse
import bisect
import json
import math
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tracefmt  # noqa: E402


def parse_bw(text):
    """'10gbit' / '940mbit' (bits/s) or '1.2G' / '125M' / number (bytes/s) -> bytes/s."""
    t = str(text).strip().lower()
    mult = {"k": 1e3, "m": 1e6, "g": 1e9, "": 1}
    if t.endswith("bit"):
        t = t[:-3]
        suf = t[-1] if t and t[-1] in "kmg" else ""
        return float(t[: len(t) - len(suf)]) * mult[suf] / 8
    bmult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "": 1}
    if t.endswith("b/s"):
        t = t[:-3]
    suf = t[-1] if t and t[-1] in "kmg" else ""
    return float(t[: len(t) - len(suf)]) * bmult[suf]


class DirtyModel:
    """Pages dirtied in a time window, from a trace."""

    def __init__(self, trace, extend="last"):
        self.npages = trace["npages"]
        rounds = trace["rounds"]
        if not rounds:
            raise ValueError("trace has no rounds")
        t0 = rounds[0]["t_ns"] / 1e9
        self.round0_pages = rounds[0]["ndirty"]
        self.round0 = rounds[0]["runs"]
        self.iv = []  # (start_s, end_s, sorted pages) relative to t0
        for prev, cur in zip(rounds, rounds[1:]):
            s, e = prev["t_ns"] / 1e9 - t0, cur["t_ns"] / 1e9 - t0
            if e <= s:
                e = s + 1e-9
            self.iv.append((s, e, tracefmt.pages_from_runs(cur["runs"])))
        self.starts = [s for s, _, _ in self.iv]
        self.end = self.iv[-1][1] if self.iv else 0.0
        self.extend = extend if self.iv else "none"

    @staticmethod
    def _slice(iv, a, b):
        s, e, pages = iv
        lo, hi = max(a, s), min(b, e)
        if hi <= lo:
            return []
        n, d = len(pages), e - s
        i0 = int(math.floor((lo - s) / d * n))
        i1 = int(math.ceil((hi - s) / d * n))
        return pages[i0:i1] if (i0, i1) != (0, n) else pages

    def dirtied(self, a, b):
        """Set of pages dirtied in [a, b) seconds after the trace's round 0."""
        out = set()
        if b <= a:
            return out
        if a < self.end:
            k = max(0, bisect.bisect_right(self.starts, a) - 1)
            while k < len(self.iv) and self.iv[k][0] < b:
                out.update(self._slice(self.iv[k], a, b))
                k += 1
        if b > self.end and self.extend != "none":
            a2 = max(a, self.end)
            if self.extend == "last":
                seg = [self.iv[-1]]
            else:
                seg = self.iv
            span = seg[-1][1] - seg[0][0]
            base = seg[0][0]
            # walk the repetitions overlapping [a2, b); one full one is enough
            rep = int((a2 - self.end) // span)
            while True:
                off = self.end + rep * span - base
                if off + base >= b:
                    break
                full = a2 <= off + base and b >= off + base + span
                for iv in seg:
                    sh = (iv[0] + off, iv[1] + off, iv[2])
                    out.update(iv[2] if full else self._slice(sh, a2, b))
                if full:
                    break
                rep += 1
        return out


THROTTLE_DIRTY_PCT = 50   # migrate/policy/throttle_plan.h
THROTTLE_STRIKES = 2
THROTTLE_HOLD_MAX_MS = 20.0
PAGE_DELTA_HDR = 2        # migrate/proto/stream.h


class ThrottlePlan:
    """migrate/policy/throttle_plan.c, step for step."""

    def __init__(self, initial=20, increment=10, maximum=99):
        self.max = min(maximum, 99)
        self.initial = min(initial, self.max)
        self.increment = increment
        self.pct = 0
        self.strikes = 0

    def step(self, dirty_bytes, sent_bytes):
        if dirty_bytes * 100 <= sent_bytes * THROTTLE_DIRTY_PCT:
            return self.pct
        self.strikes += 1
        if self.strikes < THROTTLE_STRIKES:
            return self.pct
        self.strikes = 0
        nxt = self.pct + self.increment if self.pct else self.initial
        self.pct = min(nxt, self.max)
        return self.pct


class DeltaCache:
    """migrate/ram/xbz_cache.c: slot = page % slots, a hit when the slot holds the page."""

    def __init__(self, cache_bytes, page_size, delta_bytes):
        self.n = max(1, cache_bytes // page_size)
        self.tag = {}
        self.page_size = page_size
        self.delta_bytes = delta_bytes
        self.hits = self.misses = self.saved = 0

    def put(self, page):
        """Contents bytes of sending page (a delta entry or the page)."""
        s = page % self.n
        hit = self.tag.get(s) == page
        self.tag[s] = page
        if not hit:
            self.misses += 1
            return self.page_size
        enc = PAGE_DELTA_HDR + self.delta_bytes
        if enc >= self.page_size:  # the encoder gives up: sent whole
            return self.page_size
        self.hits += 1
        self.saved += self.page_size - enc
        return enc


def simulate(model, rule, bw_Bps, page_size=4096, overhead=16, downtime_ms=30.0,
             fixed_ms=0.0, sync_ms=0.0, setup_ms=0.0, max_rounds=30, max_bytes_factor=3.0,
             max_time_s=300.0, round0_pages=None, throttle=None, xbzrle_cache=0,
             delta_bytes=24):
    """throttle: None or (initial, increment, max) percent; xbzrle_cache: bytes (0: off)."""
    per_page = page_size + overhead
    ram_bytes = model.npages * page_size
    limit_s = downtime_ms / 1000.0
    t = setup_ms / 1000.0
    t_trace = 0.0  # trace time starts at round 0's sync
    plan = ThrottlePlan(*throttle) if throttle else None
    cache = DeltaCache(xbzrle_cache, page_size, delta_bytes) if xbzrle_cache else None
    if cache:
        pending = tracefmt.pages_from_runs(model.round0)
        if round0_pages is not None:
            pending = pending[:round0_pages]
    else:
        pending = model.round0_pages if round0_pages is None else round0_pages
    sent_bytes, sent_pages, rounds = 0, 0, []
    reason, converged = None, False
    r = 0
    last_dur = 0.0
    last_sent = 0
    pct, pct_max, t_precopy, t_guest = 0, 0, 0.0, 0.0

    def count(p):
        return len(p) if cache else p

    def wire(p):
        if not cache:
            return p * per_page
        return sum(cache.put(x) + overhead for x in p)

    while True:
        if r > 0:
            pend_bytes = count(pending) * per_page
            if rule == "ours":
                pages_s = pend_bytes / bw_Bps
                capped = (r >= max_rounds or sent_bytes >= max_bytes_factor * ram_bytes
                          or t >= max_time_s)
                # migrate/estimator.c: within the limit, still take a round
                # that is expected to at least halve the final set.
                rate = pend_bytes / last_dur if last_dur > 0 else 0.0
                refine = (not capped and pages_s >= 0.001 and rate > 0
                          and rate * pages_s <= 0.5 * pend_bytes)
                if pages_s + fixed_ms / 1000.0 <= limit_s:
                    if not refine:
                        reason, converged = "converged", True
                elif r >= max_rounds:
                    reason = "round cap"
                elif sent_bytes >= max_bytes_factor * ram_bytes:
                    reason = "byte cap"
                elif t >= max_time_s:
                    reason = "time cap"
            elif rule == "qemu":
                if count(pending) * page_size <= bw_Bps * limit_s:
                    reason, converged = "converged", True
                elif t >= max_time_s:
                    reason = "not converged (simulation time cap)"
            elif rule == "xen":
                if count(pending) < 50:
                    reason, converged = "converged (<50 pages)", True
                elif r >= 30:
                    reason = "30 rounds"
                elif sent_pages > 3 * model.npages:
                    reason = "3x RAM sent"
            else:
                raise ValueError("unknown rule %r" % rule)
            if reason:
                break
            # source.c throttle_step: after a sync that goes on, for the
            # pass that follows.
            if plan:
                pct = plan.step(count(pending) * page_size, last_sent)
                pct_max = max(pct_max, pct)
        nbytes = wire(pending)
        dur = nbytes / bw_Bps + sync_ms / 1000.0
        last_dur = dur
        run = dur * (100 - pct) / 100.0
        rounds.append({"round": r, "start_s": t, "pages": count(pending), "bytes": nbytes,
                       "duration_s": dur, "throttle_pct": pct})
        sent_bytes += nbytes
        sent_pages += count(pending)
        last_sent = nbytes
        dirtied = model.dirtied(t_trace, t_trace + run)
        pending = sorted(dirtied) if cache else len(dirtied)
        t += dur
        t_precopy += dur
        t_guest += run
        t_trace += run
        r += 1
    final_bytes = wire(pending)
    down_s = final_bytes / bw_Bps + fixed_ms / 1000.0
    return {
        "rule": rule, "bw_Bps": bw_Bps, "downtime_limit_ms": downtime_ms,
        "rounds": r, "final_pages": count(pending), "bytes_total": sent_bytes + final_bytes,
        "total_ms": (t + down_s) * 1000.0, "downtime_ms": down_s * 1000.0,
        "converged": converged, "reason": reason, "round_records": rounds,
        "throttle_max_pct": pct_max,
        # holds of one slice each (migrate/throttle.c), and the switchover pause
        "guest_stall_max_ms": max(down_s * 1000.0,
                                  min(downtime_ms, THROTTLE_HOLD_MAX_MS) if pct_max else 0.0),
        "guest_progress": t_guest / t_precopy if t_precopy > 0 else 1.0,
        "xbzrle_pages": cache.hits if cache else 0,
        "xbzrle_bytes_saved": cache.saved if cache else 0,
        "xbzrle_cache_misses": cache.misses if cache else 0,
    }


POLICIES = ("force", "throttle", "xbzrle", "both")


def simulate_policy(model, policy, bw_Bps, throttle=(20, 10, 99), xbzrle_cache=512 << 20,
                    delta_bytes=24, **kw):
    """minivmm's stop rule with one of POLICIES."""
    if policy not in POLICIES:
        raise ValueError("unknown policy %r" % policy)
    res = simulate(model, "ours", bw_Bps,
                   throttle=throttle if policy in ("throttle", "both") else None,
                   xbzrle_cache=xbzrle_cache if policy in ("xbzrle", "both") else 0,
                   delta_bytes=delta_bytes, **kw)
    res["policy"] = policy
    res["rule"] = "ours+" + policy
    return res


def synth(path, npages, nrounds, interval_ms, dirty, shrink=1.0, seed=1, pattern="random"):
    """Synthetic trace: round 0 = all pages; round k dirties dirty*shrink^(k-1) pages."""
    rng = random.Random(seed)
    w = tracefmt.Writer(path, npages)
    w.round(0, 0, range(npages))
    for k in range(1, nrounds):
        n = min(npages, int(round(dirty * shrink ** (k - 1))))
        if pattern == "seq":
            pages = range(n)
        else:
            pages = rng.sample(range(npages), n)
        w.round(k, int(k * interval_ms * 1e6), pages)
    w.close()


def fmt_table(results, actual=None):
    head = ("| rule | rounds | bytes | total ms | downtime ms | throttle max % | guest progress "
            "| delta pages | outcome |\n|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for res in results:
        rows.append("| %s | %d | %d | %.1f | %.1f | %d | %.2f | %d | %s |" % (
            res["rule"], res["rounds"], res["bytes_total"], res["total_ms"], res["downtime_ms"],
            res["throttle_max_pct"], res["guest_progress"], res["xbzrle_pages"], res["reason"]))
    if actual:
        rows.append("| **actual run** | %s | %s | %.1f | %.1f | %s | | %s | %s |" % (
            actual.get("rounds"), actual.get("bytes_total"), actual.get("total_ms") or 0,
            actual.get("downtime_ms") or 0, actual.get("throttle_max_pct", ""),
            actual.get("xbzrle_pages", ""), actual.get("result")))
    return head + "\n".join(rows) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "synth":
        ap = argparse.ArgumentParser(prog="replay.py synth")
        ap.add_argument("out")
        ap.add_argument("--npages", type=int, required=True)
        ap.add_argument("--rounds", type=int, required=True)
        ap.add_argument("--interval-ms", type=float, required=True)
        ap.add_argument("--dirty", type=int, required=True)
        ap.add_argument("--shrink", type=float, default=1.0)
        ap.add_argument("--pattern", choices=("random", "seq"), default="random")
        a = ap.parse_args(argv[1:])
        synth(a.out, a.npages, a.rounds, a.interval_ms, a.dirty, a.shrink, pattern=a.pattern)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--bw", required=True, help="link bandwidth: 10gbit, 940mbit, or bytes/s (1.2G)")
    ap.add_argument("--rule", choices=("ours", "qemu", "xen", "all"), default="all")
    ap.add_argument("--downtime-ms", type=float, default=30.0)
    ap.add_argument("--overhead", type=int, default=16, help="stream bytes per page besides its contents")
    ap.add_argument("--page-size", type=int, default=None, help="default: from the trace")
    ap.add_argument("--fixed-ms", type=float, default=0.0, help="fixed switchover cost (state, handshake)")
    ap.add_argument("--sync-ms", type=float, default=0.0, help="cost of each dirty-log sync")
    ap.add_argument("--setup-ms", type=float, default=0.0)
    ap.add_argument("--max-rounds", type=int, default=30)
    ap.add_argument("--max-bytes-factor", type=float, default=3.0)
    ap.add_argument("--max-time-s", type=float, default=300.0)
    ap.add_argument("--extend", choices=("last", "loop", "none"), default="last")
    ap.add_argument("--round0-pages", type=int, default=None, help="override round 0's page count")
    ap.add_argument("--policy", choices=POLICIES + ("all",), default=None,
                    help="minivmm's policies under rule ours (replaces --rule)")
    ap.add_argument("--throttle-initial", type=int, default=20)
    ap.add_argument("--throttle-increment", type=int, default=10)
    ap.add_argument("--throttle-max", type=int, default=99)
    ap.add_argument("--xbzrle-cache", default="512M", help="delta cache size (bytes, or 512M)")
    ap.add_argument("--delta-bytes", type=int, default=24,
                    help="mean encoded size of a re-sent cached page")
    ap.add_argument("--compare", help="the real run's source --stats-json, shown beside the prediction")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    try:
        tr = tracefmt.read(a.trace)
    except (OSError, tracefmt.TraceError) as e:
        print("replay.py: %s: %s" % (a.trace, e), file=sys.stderr)
        return 2
    model = DirtyModel(tr, a.extend)
    rules = ("ours", "qemu", "xen") if a.rule == "all" else (a.rule,)
    bw = parse_bw(a.bw)
    common = dict(page_size=a.page_size or tr["page_size"], overhead=a.overhead,
                  downtime_ms=a.downtime_ms, fixed_ms=a.fixed_ms, sync_ms=a.sync_ms,
                  setup_ms=a.setup_ms, max_rounds=a.max_rounds,
                  max_bytes_factor=a.max_bytes_factor, max_time_s=a.max_time_s,
                  round0_pages=a.round0_pages)
    if a.policy:
        pols = POLICIES if a.policy == "all" else (a.policy,)
        try:
            cache = int(parse_bw(a.xbzrle_cache))
        except ValueError:
            print("replay.py: --xbzrle-cache %r: not a size" % a.xbzrle_cache, file=sys.stderr)
            return 2
        res = [simulate_policy(model, p, bw, (a.throttle_initial, a.throttle_increment,
                                              a.throttle_max), cache, a.delta_bytes, **common)
               for p in pols]
    else:
        res = [simulate(model, r, bw, **common) for r in rules]
    actual = None
    if a.compare:
        with open(a.compare) as f:
            actual = json.load(f)
    if a.json:
        print(json.dumps({"trace": {"npages": tr["npages"], "page_size": tr["page_size"],
                                    "rounds": len(tr["rounds"]), "complete": tr["complete"]},
                          "results": res, "actual": actual}, indent=1))
    else:
        print("trace %s: %d pages of %d B, %d rounds%s; bw %.3g B/s, limit %g ms" % (
            a.trace, tr["npages"], tr["page_size"], len(tr["rounds"]),
            "" if tr["complete"] else " (truncated)", bw, a.downtime_ms))
        print(fmt_table(res, actual), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())

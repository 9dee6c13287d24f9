#!/usr/bin/python3
"""costmodel.py - an analytic model of one Spex decode step, fitted to a scaling sweep and projected.

  tools/scaling/costmodel.py fit CSV [--cores N] [--seed S] [--json OUT]
      Fit the step model below to launch/scaling-study's CSV (decode phase) and report its error on points
      it was not fitted on: a held-out half (random, seeded) and leave-one-out.
  tools/scaling/costmodel.py project [--model v3|16b] [--ranks 8,16,...,1024] [--coordinators 1,4,16]
      [--batch B (64)] [--spec-k K --acceptance A] [--ctx N] [--mem-bw GB/s] [--flops TFLOP/s (14)] [--link-gbit G]
      [--latency-us U] [--msg-overhead-us U] [--mem-eff F] [--flop-eff F] [--imbalance I] [--microbatches M]
      [--fit FIT.json] [--check-deepep]
      Project DeepSeek-V3 (671 B, 256 experts top-8, 61 layers, FP8) or the 16b shape (Moonlight-16B-A3B)
      onto hardware given as inputs, for W expert ranks and C coordinator ranks sharing them; prints the
      assumptions next to the table. --check-deepep compares the dispatch/combine part with DeepEP's
      published low-latency figures.

The step model (fit). Per decode step, with W worker ranks on `--cores` cores and per-step counts taken
from the CSV (calls = MoE calls, rows = rows through MoE calls, pairs = (row, expert) pairs, msgs = frames,
bytes = wire bytes both ways, imb = busiest rank's pairs over the mean, D = emulated delay per message,
R = link rate in bytes/s, unshaped = no term):
  T_step = t_step                                   fixed per-step engine cost (sampling, bookkeeping)
         + t_call   * calls                         per MoE layer call: routing, grouping, waits' floor
         + t_row    * rows                          coordinator compute per row (attention, dense, shared, head)
         + t_pair   * pairs * imb / min(W, cores)   expert compute on the busiest rank (critical path)
         + t_msg    * msgs                          per-message cost (MPI, TCP, wake-up of a waiting rank)
         + g_link   * calls * sum_dir frames * wait(bytes_call / frames)
                                                    tbf, per frame (frames = msgs / calls / 2 per direction:
                                                    one per addressed rank): a frame arrives with a full bucket
                                                    (max(4 kB, 50 us of R), launch/netns-cluster), which passes
                                                    at once; its excess E = max(0, frame - bucket) waits for
                                                    tokens, wait(frame) = max(E / R, ceil(E / bucket) * t_refill):
                                                    at the rate, but in whole wake-ups of tbf's watchdog timer,
                                                    each of which passes at most one bucket (when the timer is
                                                    later than bucket / R, tokens beyond the bucket are lost; on
                                                    this VM that, not R, limits a 1 Gbit/s link); ~1 if ideal
         + g_delay  * 2 D calls                     emulated latency: one delay each way per call, ~1 if exact
and, when the link cannot carry a step's bytes in that time, the link bounds the step instead:
  T = max(T_step, g_bound * max_dir bytes_step / R + g_delay * 2 D calls),   g_bound >= 1 (tbf's rate is a bound)
t_refill is chosen from a grid (0-400 us) with the other coefficients, on the fitted points only.
All coefficients are non-negative (NNLS on relative error: every point weighs the same in %), fitted
robustly (Huber weights beyond 20% error), and every point counts in the reported errors.
This is Spex as measured: no overlap of communication with compute. The projection adds MegaScale-Infer's
ping-pong overlap (arXiv 2504.02263, section 4): with m micro-batches, one layer of a step takes
  max(m * max(T_a, T_e), T_a + T_e + 2 T_c)
where T_a, T_e, T_c are a micro-batch's attention(coordinator), expert and one-way communication times,
i.e. communication is hidden once m * T_f >= T_a + T_e + 2 T_c (their condition m >= 2 (1 + T_c / T_f)
when T_a = T_e = T_f); m = 1 is Spex today.
Needs /usr/bin/python3 with numpy (Debian: python3-numpy).
"""
import csv
import json
import math
import re
import sys

import numpy as np

TERMS = ["t_step", "t_call", "t_row", "t_pair", "t_msg", "g_link", "g_delay"]


# ------------------------------------------------------------------ fit

def rate_bytes(r):
    m = re.fullmatch(r"([0-9.]+)([kmg]?)bit", r or "")
    if not m:
        return None   # unshaped / native
    return float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2)] / 8


def features(row, cores, t_refill=0.0):
    """The model's linear terms for one CSV row (per decode step) and the measured step time."""
    g = lambda k: float(row[k])
    steps = max(g("decode_steps"), 1)
    w = max(int(g("workers")), 1)
    calls = g("decode_moe_calls") / steps
    rows = g("decode_rows") / steps
    imb = g("decode_rank_max_over_mean") or 1.0
    pairs = g("decode_pairs") / steps * imb / min(w, cores)
    msgs = g("decode_messages") / steps
    rb = rate_bytes(row.get("link_rate"))
    link = 0.0
    if rb:   # per frame (one per addressed rank, each direction), what exceeds tbf's bucket, in whole refills
        bucket = max(4096.0, 50e-6 * rb)         # launch/netns-cluster: 50 us of the rate, at least 4 kB
        frames = max(msgs / max(calls, 1e-12) / 2, 1.0)   # frames per call and direction
        for col in ("decode_dispatch_B_tok", "decode_combine_B_tok"):
            frame = g(col) * g("decode_tokens") / max(g("decode_moe_calls"), 1) / frames
            link += calls * frames * tbf_wait(frame, bucket, rb, t_refill)
    delay = 2 * g("link_delay_ms_emulated") / 1e3 * calls
    return np.array([1.0, calls, rows, pairs, msgs, link, delay]), g("decode_s") / steps


def tbf_wait(frame, bucket, rate, t_refill):
    """Seconds a frame of `frame` bytes waits in a tbf of `bucket` bytes at `rate` B/s that arrives with a
    full bucket: the bucket passes at once, the excess E waits for tokens, at the rate (E / rate) but in
    whole refills: tbf's watchdog timer wakes it t_refill after it stalls, and a wake-up passes at most one
    bucket (tokens beyond it are lost), so E costs ceil(E / bucket) wake-ups. When the timer is late by more
    than bucket / rate (at 1 Gbit/s 50 us), those wake-ups, not the rate, set the time."""
    e = max(0.0, frame - bucket)
    return max(e / rate, math.ceil(e / bucket) * t_refill)


def link_bound(row):
    """Seconds per decode step the busier link direction needs at rate R for its bytes (0 if unshaped)."""
    rb = rate_bytes(row.get("link_rate"))
    if not rb:
        return 0.0
    g = lambda k: float(row[k])
    steps = max(g("decode_steps"), 1)
    return max(g(c) * g("decode_tokens") / steps for c in ("decode_dispatch_B_tok", "decode_combine_B_tok")) / rb


def nnls(a, b, iters=500):
    """Lawson-Hanson non-negative least squares: min |a x - b|, x >= 0."""
    n = a.shape[1]
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    for _ in range(iters):
        grad = a.T @ (b - a @ x)
        cand = (~passive) & (grad > 1e-12 * max(1.0, np.abs(grad).max()))
        if not cand.any():
            break
        passive[np.argmax(np.where(cand, grad, -np.inf))] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(a[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > 1e-15
    return x


def fit(X, y, huber=0.2, rounds=20):
    """Coefficients minimising the relative error of the step time, robustly: iteratively reweighted
    NNLS with Huber weights (a point more than `huber` off counts linearly, not squared), so that one
    disturbed run on a shared machine (a TCP retransmission, a descheduled rank) does not bend the fit.
    The errors reported still include every point."""
    A = X / y[:, None]
    w = np.ones(len(y))
    theta = nnls(A, np.ones(len(y)))
    for _ in range(rounds):
        r = np.abs(A @ theta - 1)
        w = np.sqrt(np.minimum(1.0, huber / np.maximum(r, 1e-12)))
        new = nnls(A * w[:, None], w)
        if np.allclose(new, theta, rtol=1e-9, atol=1e-15):
            break
        theta = new
    return theta


def rel_err(X, y, theta):
    return (X @ theta - y) / y


REFILL_GRID = [i * 25e-6 for i in range(17)]   # t_refill candidates, 0-400 us
DELAY = TERMS.index("g_delay")


class StepModel:
    """The fitted step model: linear coefficients theta, the link-bound factor g_bound and t_refill."""

    def __init__(self, theta, g_bound, t_refill):
        self.theta, self.g_bound, self.t_refill = theta, g_bound, t_refill

    def predict(self, rows, cores):
        X = np.array([features(r, cores, self.t_refill)[0] for r in rows])
        L = np.array([link_bound(r) for r in rows])
        return np.maximum(X @ self.theta, self.g_bound * L + X[:, DELAY] * self.theta[DELAY])


def fit_regimes(X, L, y, rounds=30):
    """theta on the points the linear model bounds, g_bound (median of the rest, but not below 1: the link
    cannot carry a step's bytes faster than its rate) on the link-bound ones, alternating until the split
    settles."""
    theta, g_bound = fit(X, y), 1.0
    lin = None
    for _ in range(rounds):
        new = X @ theta >= g_bound * L + X[:, DELAY] * theta[DELAY]
        if lin is not None and (new == lin).all():
            break
        lin = new
        if lin.sum() > X.shape[1]:
            theta = fit(X[lin], y[lin])
        if (~lin).any():
            rest = y[~lin] - X[~lin, DELAY] * theta[DELAY]
            # at least 1: over a phase of many steps tbf passes no more than R (the bucket's one burst is
            # spread over the phase), and Spex does not overlap the transfer with compute
            g_bound = max(1.0, float(np.median(rest / np.maximum(L[~lin], 1e-12))))
    return theta, g_bound


def fit_model(rows, y, cores):
    """The StepModel with the smallest robust relative error on these points (t_refill from the grid)."""
    L = np.array([link_bound(r) for r in rows])
    best = None
    for tr in REFILL_GRID:
        X = np.array([features(r, cores, tr)[0] for r in rows])
        theta, gb = fit_regimes(X, L, y)
        m = StepModel(theta, gb, tr)
        loss = float(np.mean(((m.predict(rows, cores) - y) / y) ** 2))
        if best is None or loss < best[0] - 1e-12:
            best = (loss, m)
    return best[1]


def model_err(m, rows, y, cores):
    return (m.predict(rows, cores) - y) / y


def load(path, cores):
    rows = [r for r in csv.DictReader(open(path)) if float(r.get("decode_steps") or 0) > 0]
    if not rows:
        sys.exit(f"costmodel: no decode rows in '{path}'")
    feats = [features(r, cores) for r in rows]
    return rows, np.array([f for f, _ in feats]), np.array([t for _, t in feats])


def cmd_fit(args):
    path = args[0]
    cores = int(opt(args, "--cores", 2))
    seed = int(opt(args, "--seed", 1))
    out = opt(args, "--json", None)
    rows, X, y = load(path, cores)
    n = len(y)
    m = fit_model(rows, y, cores)
    e_all = model_err(m, rows, y, cores)
    # held-out half, several seeded splits; leave-one-out (t_refill, the regimes and theta refitted each time)
    rng = np.random.default_rng(seed)
    sub = lambda idx: [rows[i] for i in idx]
    half = []
    for _ in range(5):
        idx = rng.permutation(n)
        a, b = idx[: n // 2], idx[n // 2:]
        half.append(np.abs(model_err(fit_model(sub(a), y[a], cores), sub(b), y[b], cores)))
    loo, loo_pred = np.zeros(n), np.zeros(n)
    for i in range(n):
        rest = [j for j in range(n) if j != i]
        loo_pred[i] = fit_model(sub(rest), y[rest], cores).predict([rows[i]], cores)[0]
        loo[i] = abs(loo_pred[i] - y[i]) / y[i]
    h = np.concatenate(half)
    print(f"fitted on {n} decode points of {path} (cores = {cores}):")
    units = {"t_step": "ms/step", "t_call": "us/call", "t_row": "us/row", "t_pair": "us/pair",
             "t_msg": "us/msg", "g_link": "x ideal", "g_delay": "x requested"}
    scale = {"t_step": 1e3, "t_call": 1e6, "t_row": 1e6, "t_pair": 1e6, "t_msg": 1e6, "g_link": 1, "g_delay": 1}
    for k, v in zip(TERMS, m.theta):
        print(f"  {k:8s} {v * scale[k]:10.3f} {units[k]}")
    print(f"  t_refill {m.t_refill * 1e6:10.3f} us per bucket (tbf's refill)")
    print(f"  g_bound  {m.g_bound:10.3f} x bytes / R when the link bounds the step")
    print(f"in-sample |error|: median {100 * np.median(np.abs(e_all)):.1f}%, worst {100 * np.abs(e_all).max():.1f}%")
    print(f"held-out half (5 random splits, {len(h)} predictions): median {100 * np.median(h):.1f}%, "
          f"worst {100 * h.max():.1f}%")
    print(f"leave-one-out ({n} predictions): median {100 * np.median(loo):.1f}%, worst {100 * loo.max():.1f}%")
    for b in sorted({int(r["batch"]) for r in rows if "batch" in r}):
        sel = np.array([int(r.get("batch", 0)) == b for r in rows])
        print(f"  leave-one-out at batch {b} ({sel.sum()} points): median {100 * np.median(loo[sel]):.1f}%, "
              f"worst {100 * loo[sel].max():.1f}%")
    worst = np.argsort(-loo)[:3]
    for i in worst:
        print(f"  worst LOO: {rows[i]['point']}: measured {1e3 * y[i]:.3f} ms/step, predicted {1e3 * loo_pred[i]:.3f}")
    res = {"csv": path, "points": n, "cores": cores, "theta": dict(zip(TERMS, m.theta.tolist())),
           "t_refill": m.t_refill, "g_bound": m.g_bound,
           "heldout_half": {"median": float(np.median(h)), "worst": float(h.max())},
           "loo": {"median": float(np.median(loo)), "worst": float(loo.max())},
           "in_sample": {"median": float(np.median(np.abs(e_all))), "worst": float(np.abs(e_all).max())},
           "per_point": [{"point": r["point"], "measured_ms": 1e3 * t, "loo_error": float(e)}
                         for r, t, e in zip(rows, y, loo)]}
    if out:
        json.dump(res, open(out, "w"), indent=1)
    return 0


# ------------------------------------------------------------------ projection

SHAPES = {
    # DeepSeek-V3 config.json
    "v3": dict(name="DeepSeek-V3 (671B)", h=7168, L=61, dense=3, inter=18432, H=128, ql=1536, kvl=512, nope=128,
               rope=64, v=128, E=256, k=8, moe_inter=2048, shared=1, vocab=129280),
    # Moonlight-16B-A3B class (spex synth --preset 16b)
    "16b": dict(name="16b shape (Moonlight-16B-A3B)", h=2048, L=27, dense=1, inter=11264, H=16, ql=0, kvl=512,
                nope=128, rope=64, v=128, E=64, k=6, moe_inter=1408, shared=2, vocab=163840),
}


def params(s):
    h, H = s["h"], s["H"]
    qk = s["nope"] + s["rope"]
    q = h * s["ql"] + s["ql"] * H * qk if s["ql"] else h * H * qk
    attn = q + h * (s["kvl"] + s["rope"]) + s["kvl"] * H * (s["nope"] + s["v"]) + H * s["v"] * h
    moe = s["L"] - s["dense"]
    expert = 3 * h * s["moe_inter"]
    coord = s["L"] * attn + s["dense"] * 3 * h * s["inter"] + moe * (s["shared"] * expert + h * s["E"])
    head = h * s["vocab"]
    total = coord + moe * s["E"] * expert + 2 * head
    return dict(attn=attn, coord=coord + head, coord_layer=coord / s["L"], head=head, expert=expert, moe=moe,
                total=total)


def layer_times(s, p, hw, W, C, rows, B):
    """One MoE layer of a step for one micro-batch: coordinator T_a, expert T_e, one-way communication T_c.
    rows: rows per coordinator in the micro-batch; B: its sequences (whose KV caches are read)."""
    wb, ctx = hw["wbytes"], hw["ctx"]
    membw = hw["mem_bw"] * hw["mem_eff"]
    flops = hw["flops"] * hw["flop_eff"]
    # coordinator: its layer weights once, the micro-batch's KV caches, the row FLOPs (projections + MLA over ctx)
    kv_seq = (s["kvl"] + s["rope"]) * ctx * hw["kv_bytes"]
    f_row = 2 * p["coord_layer"] + 2 * s["H"] * ctx * (2 * s["kvl"] + s["rope"])
    T_a = max((p["coord_layer"] * wb + B * kv_seq) / membw, rows * f_row / flops)
    # experts: every coordinator's micro-batch reaches the pool in the same layer step (attention DP)
    pairs = C * rows * s["k"]
    pr = pairs / W * hw["imb"]                                     # the busiest rank's (row, expert) pairs
    if W <= s["E"]:
        hosted = math.ceil(s["E"] / W)
        active = hosted * (1 - math.exp(-pairs / s["E"]))          # its experts that got at least one row
    else:                                                          # replicas split an expert's rows
        active = 1 - math.exp(-pairs / W)
    T_e = max(active * p["expert"] * wb / membw, pr * 2 * p["expert"] / flops)
    # communication: a row goes once to each rank that hosts one of its k experts
    f = W * (1 - (1 - 1 / W) ** s["k"])                            # fan-out: distinct ranks per row
    per_row = max(s["h"] + s["h"] / 128 * 4, 2 * s["h"])           # FP8 + scales out, BF16 back (presum)
    coord_bytes = rows * f * per_row                               # the coordinator's NIC, one direction
    rank_bytes = C * rows * f / W * per_row                        # an expert rank's NIC
    msgs = W * (1 - (1 - 1 / W) ** (rows * s["k"]))                # ranks this coordinator talks to
    T_c = hw["latency"] + hw["msg_ovh"] * max(msgs, C * msgs / W) + max(coord_bytes, rank_bytes) / hw["link_bw"]
    return T_a, T_e, T_c


def project_point(s, p, hw, W, C, B, tps):
    """One (W expert ranks, C coordinators with B sequences each) point: step time, tokens/s, bottleneck."""
    m = hw["micro"]
    rows = B * tps["rows"] / m                                     # rows per coordinator per micro-batch
    T_a, T_e, T_c = layer_times(s, p, hw, W, C, rows, B / m)
    layer = max(m * max(T_a, T_e), T_a + T_e + 2 * T_c)            # ping-pong (m >= 2) or serial (m = 1)
    membw = hw["mem_bw"] * hw["mem_eff"]
    flops = hw["flops"] * hw["flop_eff"]
    head = max(p["head"] * hw["wbytes"] / membw, B * tps["rows"] * 2 * p["head"] / flops)
    step = p["moe"] * layer + s["dense"] * m * T_a + head
    # MTP drafting: K chained steps of one MoE layer + head over B rows each
    if tps["k"] > 0:
        da, de, dc = layer_times(s, p, hw, W, C, B, B)
        step += tps["k"] * (da + de + 2 * dc + max(p["head"] * hw["wbytes"] / membw, B * 2 * p["head"] / flops))
    tok = C * B * tps["tokens"] / step
    bott = max((T_a, "coordinator"), (T_e, "experts"), (2 * T_c, "links"))[1]
    return dict(step=step, tok=tok, T_a=T_a, T_e=T_e, T_c=T_c, bott=bott, node_tok=tok / (W + C))


def cmd_project(args):
    model = opt(args, "--model", "v3")
    if model not in SHAPES:
        sys.exit(f"costmodel: --model {model}: v3 or 16b")
    s = SHAPES[model]
    p = params(s)
    ranks = [int(x) for x in opt(args, "--ranks", "8,16,32,64,128,256,512,1024").split(",")]
    coords = [int(x) for x in opt(args, "--coordinators", "1,8,64").split(",")]
    K = int(opt(args, "--spec-k", 1))
    A = float(opt(args, "--acceptance", 0.85))
    hw = dict(mem_bw=float(opt(args, "--mem-bw", 600)) * 1e9, flops=float(opt(args, "--flops", 14)) * 1e12,
              link_bw=float(opt(args, "--link-gbit", 400)) * 1e9 / 8, latency=float(opt(args, "--latency-us", 3)) * 1e-6,
              msg_ovh=float(opt(args, "--msg-overhead-us", 5)) * 1e-6, mem_eff=float(opt(args, "--mem-eff", 0.7)),
              flop_eff=float(opt(args, "--flop-eff", 0.5)), imb=float(opt(args, "--imbalance", 1.3)),
              micro=int(opt(args, "--microbatches", 1)), ctx=int(opt(args, "--ctx", 4096)), wbytes=1.0, kv_bytes=2.0)
    fitfile = opt(args, "--fit", None)
    if fitfile:
        th = json.load(open(fitfile))["theta"]
        hw["msg_ovh"] = th["t_msg"]
    B = int(opt(args, "--batch", 64))
    # tokens per step with K drafts of acceptance A each (chained): 1 + A + A^2 + ... + A^K
    tps = dict(k=K, rows=K + 1, tokens=sum(A ** i for i in range(K + 1)))
    print(f"# projection: {s['name']}: {p['total'] / 1e9:.0f} B parameters, {s['E']} routed experts top-{s['k']}, "
          f"{s['L']} layers ({p['moe']} MoE), FP8 weights")
    print(f"# assumptions: one coordinator = one dual-socket node running attention, dense and shared FFN, router "
          f"and head for its own B = {B} sequences ({p['coord'] * 1e-9:.1f} B params = {p['coord'] * 1e-9:.1f} GB "
          f"FP8 read per step);")
    print(f"#   C coordinators share W expert ranks (one node each); every coordinator's micro-batch reaches the pool "
          f"in the same layer step (attention DP), expert weights read once per rank per micro-batch;")
    print(f"#   node: memory {hw['mem_bw'] / 1e9:.0f} GB/s x {hw['mem_eff']} achieved, {hw['flops'] / 1e12:.0f} TFLOP/s x "
          f"{hw['flop_eff']} achieved; link {hw['link_bw'] * 8 / 1e9:.0f} Gbit/s, latency {hw['latency'] * 1e6:.1f} us + "
          f"{hw['msg_ovh'] * 1e6:.1f} us per message{' (fitted)' if fitfile else ''};")
    print(f"#   context {hw['ctx']} tokens per sequence, KV cache BF16 ({(s['kvl'] + s['rope']) * 2 * s['L'] * hw['ctx'] / 1e6:.0f} MB "
          f"read per sequence per step); dispatch FP8 + scales, combine BF16 summed per rank (presum);")
    print(f"#   busiest expert rank {hw['imb']}x the mean; MTP K = {K} at acceptance {A} -> {tps['tokens']:.2f} tokens per "
          f"step for {tps['rows']} rows; {hw['micro']} micro-batch(es) (1 = Spex today; >= 2 = MegaScale-Infer ping-pong);")
    print(f"#   each MTP draft step costs one MoE layer + head over B rows;")
    print(f"#   more ranks than experts: replicas split an expert's rows (weights read on every replica); no prefill in "
          f"the step (disaggregated), no straggler or queueing effects.")
    print("| W expert ranks | C coord | step ms | attn ms/layer | expert ms/layer | comm ms/layer (one way) | "
          "tokens/s | tokens/s per node | bound by |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for C in coords:
        for W in ranks:
            r = project_point(s, p, hw, W, C, B, tps)
            print(f"| {W} | {C} | {1e3 * r['step']:.1f} | {1e3 * r['T_a']:.3f} | {1e3 * r['T_e']:.3f} | "
                  f"{1e3 * r['T_c']:.3f} | {r['tok']:.0f} | {r['node_tok']:.1f} | {r['bott']} |")
    # where the coordinators stop being the bound: the smallest C (powers of 2) at which a W-rank pool
    # (experts or links) is the bottleneck, i.e. adding coordinators stops adding tokens/s linearly
    print(f"\n# coordinators a pool of W expert ranks can feed (first C, in powers of 2, at which the pool or its "
          f"links bound a layer; before it, tokens/s grow ~linearly with C)")
    print("| W expert ranks | C at saturation | tokens/s there | tokens/s per node | bound by |")
    print("|---:|---:|---:|---:|---|")
    for W in ranks:
        C = 1
        while C <= 65536:
            r = project_point(s, p, hw, W, C, B, tps)
            if r["bott"] != "coordinator":
                break
            C *= 2
        note = f"| {W} | {C} | {r['tok']:.0f} | {r['node_tok']:.1f} | {r['bott']} |" if C <= 65536 else \
            f"| {W} | > 65536 | | | coordinator |"
        print(note)
    if "--check-deepep" in args:
        deepep_check()
    return 0


def deepep_check():
    """DeepEP's low-latency kernels (docs/legacy.md of deepseek-ai/DeepEP): 128 tokens per batch, hidden 7168,
    top-8, FP8 dispatch, BF16 combine, H800 + CX7 400 Gbit/s InfiniBand (~50 GB/s)."""
    pub = {8: (77, 114), 16: (118, 195), 32: (155, 273), 64: (173, 314), 128: (192, 369), 256: (194, 360)}
    h, k, T = 7168, 8, 128
    disp, comb = h + h / 128 * 4, 2 * h
    print("\n# dispatch/combine vs DeepEP's published low-latency figures (128 tokens/rank, hidden 7168, top-8, "
          "FP8 dispatch, BF16 combine, 400 Gbit/s IB = 50 GB/s, 3 us latency); this model: bytes a rank sends / link "
          "bandwidth + latency")
    print("| EP ranks | model dispatch us | DeepEP dispatch us | model combine us | DeepEP combine us |")
    print("|---:|---:|---:|---:|---:|")
    for ep, (d, c) in pub.items():
        f = ep * (1 - (1 - 1 / ep) ** k)                   # distinct ranks a token goes to
        remote = f * (ep - 1) / ep                        # copies leaving the GPU (one rank per GPU)
        md = 3 + T * remote * disp / 50e9 * 1e6
        mc = 3 + T * remote * comb / 50e9 * 1e6
        print(f"| {ep} | {md:.0f} | {d} | {mc:.0f} | {c} |")


def opt(args, name, default):
    if name in args:
        i = args.index(name)
        if i + 1 >= len(args):
            sys.exit(f"costmodel: {name} needs a value")
        return args[i + 1]
    return default


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    if argv[0] == "fit" and len(argv) >= 2:
        return cmd_fit(argv[1:])
    if argv[0] == "project":
        return cmd_project(argv[1:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

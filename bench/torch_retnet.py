#!/usr/bin/python3
"""The RetNet of docs/model.md
in plain float32 PyTorch (1.13, Debian's python3-torch), as a baseline for our C
trainer. Written the way a competent PyTorch user would: nn.Linear / nn.LayerNorm /
nn.Embedding modules, autograd for the backward, torch.optim.AdamW, the chunkwise
recurrent form of retention with all heads batched (one batched matmul over every
chunk for the inner part, a short Python loop over chunks for the carried state).
Nothing is hand-fused and nothing is deliberately slow.

Three modes:

  selftest  the model against the independent float64 reference of
            tests/fixtures/make_fixtures.py on the tiny configuration (same
            parameters -> same logits, loss and gradients), in float64 (must agree
            to ~1e-12) and in float32 (~1e-5).
  step      one-rank step benchmark like build/retnet-bench-step: warm-up step,
            then N timed steps of forward + backward + clip + AdamW on synthetic
            tokens; tokens/s and MFU against a float32 torch.mm ceiling measured in
            the same run; one JSON line.
  train     trains on a byte corpus for a wall-time budget, last 5% of the bytes
            held out (cut as retnet-prep cuts it), held-out bits per byte every K
            seconds; JSON lines (elapsed_s, tokens, loss, val_bits_per_byte).

Threads: OMP_NUM_THREADS (torch.set_num_threads). The BLAS torch uses matters
more than anything else here: see bench/bench_vs_torch.sh (TORCH_BLAS) and the
"blas" field this script prints.

Run with /usr/bin/python3 (Debian's python, which has torch), from anywhere:
  /usr/bin/python3 bench/torch_retnet.py selftest
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/torch_retnet.py step [--steps 3]
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/torch_retnet.py train --corpus kjv.txt \\
      --minutes 10 --metrics torch.jsonl
"""
import argparse
import json
import math
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

LN_EPS = 1e-5
GN_EPS = 1e-5
LN2 = math.log(2.0)


# ---------------------------------------------------------------- model

class RetNetConfig:
    def __init__(self, vocab=256, d=512, layers=6, heads=4, ffn=None, chunk=128):
        assert d % heads == 0 and (d // heads) % 2 == 0
        self.vocab, self.d, self.layers, self.heads = vocab, d, layers, heads
        self.ffn = ffn if ffn else 2 * d
        self.chunk = chunk
        self.dk = d // heads
        self.dv = 2 * d // heads

    def flops_per_token(self):
        """Model FLOPs of one training token, exactly trainer/model.c
        model_flops_per_token() (the spec's formula): 3 x forward, forward =
        L * (2*(2d^2 + 4d^2 + 2d^2) + 4*d*f + 2*C*(d + 2d) + 4*H*dk*dv) + 2*d*V.
        The optimizer, norms and activations are not counted, as in ours."""
        d, f, V, H, C = self.d, self.ffn, self.vocab, self.heads, self.chunk
        fwd = self.layers * (2.0 * (2 * d * d + 4 * d * d + 2 * d * d) + 4.0 * d * f
                             + 2.0 * C * (d + 2 * d) + 4.0 * H * self.dk * self.dv) + 2.0 * d * V
        return 3.0 * fwd

    def describe(self):
        return "d=%d L=%d H=%d f=%d C=%d" % (self.d, self.layers, self.heads, self.ffn,
                                            self.chunk)


def theta_shift(x, cos, sin):
    """Rotate lane pairs (2i, 2i+1) of each head by n * angle_i.
    x: (B, H, T, dk); cos, sin: (T, dk/2)."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).flatten(-2)


def chunkwise_retention(q, k, v, D, xi, zeta, gC, C):
    """The spec's chunkwise recurrent retention, every head and chunk batched.
    q, k: (B, H, T, dk), v: (B, H, T, dv); D: (H, C, C); xi, zeta: (H, C, 1); gC: (H, 1, 1).
        O_c     = ((Q_c K_c^T) .* D) V_c + diag(xi) Q_c S_c
        S_{c+1} = gamma^C S_c + K_c^T diag(zeta) V_c,  S_0 = 0"""
    B, H, T, dk = q.shape
    dv = v.shape[-1]
    N = T // C
    q = q.reshape(B, H, N, C, dk)
    k = k.reshape(B, H, N, C, dk)
    v = v.reshape(B, H, N, C, dv)
    D, xi, zeta = D[:, None], xi[:, None], zeta[:, None]   # broadcast over chunks
    inner = ((q @ k.transpose(-1, -2)) * D) @ v             # (B, H, N, C, dv)
    kv = k.transpose(-1, -2) @ (v * zeta)                   # (B, H, N, dk, dv)
    states = []
    S = torch.zeros(B, H, dk, dv, dtype=q.dtype)
    for c in range(N):
        states.append(S)
        S = gC * S + kv[:, :, c]
    S = torch.stack(states, dim=2)                          # state entering each chunk
    cross = (q @ S) * xi
    return (inner + cross).reshape(B, H, T, dv)


class MultiScaleRetention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, H, C = cfg.d, cfg.heads, cfg.chunk
        self.H, self.dk, self.dv, self.C = H, cfg.dk, cfg.dv, C
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, 2 * d, bias=False)
        self.wg = nn.Linear(d, 2 * d, bias=False)
        self.wo = nn.Linear(2 * d, d, bias=False)
        # Decay tables in double (gamma_h = 1 - 2^(-5-h)), cast to the activations'
        # dtype where used, so that a float64 copy of the model is exact.
        gamma = 1.0 - torch.pow(2.0, -5.0 - torch.arange(H, dtype=torch.float64))
        i = torch.arange(C, dtype=torch.float64)
        diff = i[:, None] - i[None, :]
        g = gamma[:, None, None]
        D = torch.where(diff >= 0, g ** diff.clamp(min=0), torch.zeros((), dtype=torch.float64))
        self.register_buffer("D", D, persistent=False)
        self.register_buffer("xi", (g ** (i + 1)[:, None]), persistent=False)
        self.register_buffer("zeta", (g ** (C - 1 - i)[:, None]), persistent=False)
        self.register_buffer("gC", (g ** C), persistent=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        H, dk, dv = self.H, self.dk, self.dv
        q = self.wq(x).view(B, T, H, dk).transpose(1, 2)
        k = self.wk(x).view(B, T, H, dk).transpose(1, 2) * dk ** -0.5
        v = self.wv(x).view(B, T, H, dv).transpose(1, 2)
        g = self.wg(x)
        q, k = theta_shift(q, cos, sin), theta_shift(k, cos, sin)
        dt = q.dtype
        o = chunkwise_retention(q, k, v, self.D.to(dt), self.xi.to(dt), self.zeta.to(dt),
                                self.gC.to(dt), self.C)
        o = F.layer_norm(o, (dv,), eps=GN_EPS)   # GroupNorm per head, no gain/bias
        o = o.transpose(1, 2).reshape(B, T, H * dv)
        return self.wo(F.silu(g) * o)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d, eps=LN_EPS)
        self.msr = MultiScaleRetention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d, eps=LN_EPS)
        self.w1 = nn.Linear(cfg.d, cfg.ffn)
        self.w2 = nn.Linear(cfg.ffn, cfg.d)

    def forward(self, x, cos, sin):
        y = x + self.msr(self.ln1(x), cos, sin)
        return y + self.w2(F.gelu(self.w1(self.ln2(y)), approximate="tanh"))


class RetNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab, cfg.d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.d, eps=LN_EPS)
        self.lm_head = nn.Linear(cfg.d, cfg.vocab, bias=False)
        self._rot = {}
        self.reset_parameters()

    def reset_parameters(self):
        """The spec's initialisation (the distributions; not our Philox stream)."""
        nn.init.normal_(self.embedding.weight, std=0.02)
        for b in self.blocks:
            for w in (b.msr.wq, b.msr.wk, b.msr.wv, b.msr.wg):
                nn.init.xavier_uniform_(w.weight, gain=2 ** -2.5)
            nn.init.xavier_uniform_(b.msr.wo.weight, gain=2 ** -1)
            for lin in (b.w1, b.w2):
                nn.init.xavier_uniform_(lin.weight)
                nn.init.zeros_(lin.bias)
        nn.init.xavier_uniform_(self.lm_head.weight)

    def rotation(self, T, dtype):
        """cos, sin of n * angle_i, (T, dk/2); angles in double (n gets large)."""
        key = (T, dtype)
        if key not in self._rot:
            half = self.cfg.dk // 2
            angle = 1.0 / 10000 ** torch.linspace(0, 1, half, dtype=torch.float64)
            a = torch.arange(T, dtype=torch.float64)[:, None] * angle[None, :]
            self._rot[key] = (a.cos().to(dtype), a.sin().to(dtype))
        return self._rot[key]

    def forward(self, tokens):
        """tokens (B, T) -> logits (B, T, V)."""
        cos, sin = self.rotation(tokens.shape[1], self.embedding.weight.dtype)
        x = self.embedding(tokens)
        for b in self.blocks:
            x = b(x, cos, sin)
        return self.lm_head(self.ln_f(x))


def make_optimizer(model, lr, weight_decay=0.05, betas=(0.9, 0.98), eps=1e-8):
    """AdamW with our defaults (trainer/config.c): decay on the matrices (Wq Wk Wv
    Wg Wo W1 W2 and the LM head), none on the embedding, LN parameters, biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 and not name.startswith("embedding") else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=eps)


def train_step(model, opt, inputs, targets, clip, lr):
    """forward + backward + global-norm clip + AdamW. Returns (loss, times)."""
    t0 = time.perf_counter()
    logits = model(inputs)
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    t1 = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    t2 = time.perf_counter()
    gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.step()
    t3 = time.perf_counter()
    return float(loss), float(gnorm), (t1 - t0, t2 - t1, t3 - t2)


# ---------------------------------------------------------------- environment

def set_threads():
    n = int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or os.cpu_count()
    torch.set_num_threads(n)
    return n


def blas_library():
    """The BLAS shared object this process actually mapped (torch's float32 mm on CPU
    goes to it in 1.13), so a run on Debian's reference BLAS cannot pass unnoticed."""
    try:
        with open("/proc/self/maps") as fh:
            libs = {line.split()[-1] for line in fh if "blas" in line.split()[-1].lower()}
    except OSError:
        return "unknown"
    libs = sorted(l for l in libs if ".so" in l)
    return ",".join(libs) if libs else "none mapped"


def blas_is_reference(blas):
    return "/blas/libblas.so" in blas


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def matmul_ceiling(n=2048, reps=5):
    """FP32 ceiling: best of `reps` torch.mm of n x n by n x n, as our
    metrics_matmul_ceiling() times a 2048^3 oneDNN sgemm."""
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.mm(a, b)  # first touch, thread pool start
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best


# ---------------------------------------------------------------- step mode

def cmd_step(args):
    threads = set_threads()
    torch.manual_seed(args.seed)
    if args.config == "tiny":
        cfg, B, T = RetNetConfig(256, 64, 2, 4, 128, 8), 2, 32
    else:
        cfg, B, T = RetNetConfig(256, 512, 6, 4, 1024, 128), 4, 2048
    B = args.batch or B
    T = args.seq_length or T
    if T % cfg.chunk:
        sys.exit("torch_retnet: --seq-length %d is not a multiple of the chunk %d"
                 % (T, cfg.chunk))
    ceiling = matmul_ceiling(args.ceiling_n, 5)
    blas = blas_library()
    model = RetNet(cfg)
    opt = make_optimizer(model, lr=1e-4)
    i = torch.arange(B * T)
    # The same synthetic tokens as bench/bench_step.c.
    inputs = ((i * 131 + 7) % cfg.vocab).reshape(B, T)
    targets = ((i * 71 + 3) % cfg.vocab).reshape(B, T)
    best, times, all_s = float("inf"), None, []
    for s in range(args.steps + 1):   # step 0 warms up
        _, _, t = train_step(model, opt, inputs, targets, 2.0, 1e-4)
        if s > 0:
            all_s.append(sum(t))
            if sum(t) < best:
                best, times = sum(t), t
    tokens = B * T
    tps = tokens / best
    med = statistics.median(all_s)
    tps_fb = tokens / (times[0] + times[1])
    fpt = cfg.flops_per_token()
    mfu = tps * fpt / ceiling
    mfu_fb = tps_fb * fpt / ceiling
    rss = peak_rss_mib()
    print("torch %s (%s), config %s: %s, batch %d x %d, form chunkwise, %d threads"
          % (torch.__version__, "float32", args.config, cfg.describe(), B, T, threads))
    print("BLAS: %s%s" % (blas, "   (WARNING: the reference BLAS, not OpenBLAS)"
                          if blas_is_reference(blas) else ""))
    print("matmul ceiling (%d^3 torch.mm): %.1f GFLOP/s" % (args.ceiling_n, ceiling * 1e-9))
    print("step (fwd+bwd+AdamW, best of %d): %.3f s (fwd %.3f, bwd %.3f, clip+AdamW %.3f);"
          " mean %.3f s" % (args.steps, best, times[0], times[1], times[2],
                            sum(all_s) / len(all_s)))
    print("tokens/s: %.0f   MFU: %.1f%%   (fwd+bwd only: %.0f tokens/s, MFU %.1f%%)"
          "   peak RSS: %.0f MiB" % (tps, 100 * mfu, tps_fb, 100 * mfu_fb, rss))
    print("FLOPs/token (trainer/model.c model_flops_per_token): %.4g" % fpt)
    print(json.dumps({
        "bench": "step_torch", "config": args.config, "batch": B, "seq_len": T,
        "threads": threads, "tokens_per_sec": round(tps, 1), "mfu": round(mfu, 4),
        "tokens_per_sec_fwd_bwd": round(tps_fb, 1), "mfu_fwd_bwd": round(mfu_fb, 4),
        "ceiling_gflops": round(ceiling * 1e-9, 1), "step_s": round(best, 4),
        "fwd_s": round(times[0], 4), "bwd_s": round(times[1], 4),
        "opt_s": round(times[2], 4), "optimizer": "adamw",
        "step_median_s": round(med, 4), "tokens_per_sec_median": round(tokens / med, 1),
        "mfu_median": round(tokens / med * fpt / ceiling, 4), "flops_per_token": fpt,
        "peak_rss_mib": round(rss, 1),
        "form": "chunkwise", "torch": torch.__version__, "blas": blas}))


# ---------------------------------------------------------------- train mode

def held_out_cut(n_bytes, data, fraction):
    """retnet-prep's split (data/prep_main.c): the first line start at or after
    byte B - floor(F * B), or exactly that byte when no line start follows."""
    start = n_bytes - int(math.floor(fraction * n_bytes))
    nl = data.find(b"\n", max(start - 1, 0))
    return nl + 1 if nl != -1 and nl + 1 < n_bytes else start


def evaluate(model, held, T, batch):
    """Held-out nats summed over every target byte: windows of T from a zero state
    (inputs held[wT .. wT+T-1], targets one byte on), the last window padded after
    its real targets, as retnet-eval --mode windows. Returns (nats, targets)."""
    n = held.numel() - 1
    W = (n + T - 1) // T
    inputs = torch.zeros(W * T, dtype=torch.long)
    targets = torch.full((W * T,), -100, dtype=torch.long)   # -100: not scored
    inputs[:n] = held[:-1]
    targets[:n] = held[1:]
    inputs, targets = inputs.view(W, T), targets.view(W, T)
    total = 0.0
    model.eval()
    with torch.no_grad():
        for w in range(0, W, batch):
            logits = model(inputs[w:w + batch])
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                           targets[w:w + batch].reshape(-1),
                                           ignore_index=-100, reduction="sum"))
    model.train()
    return total, n


def lr_at(progress, args):
    """Linear warm-up over the first warmup_frac of the time budget, then cosine
    decay to min_lr at its end: the main job's schedule shape, by time (this run
    stops on the clock, not on an iteration count)."""
    if progress < args.warmup_frac:
        return args.lr * max(progress, 1e-3) / args.warmup_frac
    p = min(1.0, (progress - args.warmup_frac) / (1.0 - args.warmup_frac))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1.0 + math.cos(math.pi * p))


def cmd_train(args):
    threads = set_threads()
    torch.manual_seed(args.seed)
    with open(args.corpus, "rb") as fh:
        data = fh.read()
    cut = held_out_cut(len(data), data, args.held_out_fraction)
    tokens = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
    train, held = tokens[:cut], tokens[cut:]
    cfg = RetNetConfig(256, args.hidden_size, args.num_layers, args.num_heads,
                       args.ffn_hidden_size, args.chunk_size)
    T, B = args.seq_length, args.batch
    if T % cfg.chunk:
        sys.exit("torch_retnet: --seq-length %d is not a multiple of --chunk-size %d"
                 % (T, cfg.chunk))
    model = RetNet(cfg)
    opt = make_optimizer(model, args.lr, args.weight_decay)
    n_params = sum(p.numel() for p in model.parameters())
    out = open(args.metrics, "w") if args.metrics else None

    def emit(rec):
        line = json.dumps(rec)
        if out:
            out.write(line + "\n")
            out.flush()
        return line

    budget = 60.0 * args.minutes
    print(emit({"torch": torch.__version__, "blas": blas_library(), "threads": threads,
                "config": cfg.describe(), "seq_len": T, "batch": B, "params": n_params,
                "corpus": args.corpus, "corpus_bytes": len(data), "train_bytes": cut,
                "held_out_bytes": len(data) - cut, "minutes": args.minutes,
                "lr": args.lr, "min_lr": args.min_lr, "warmup_frac": args.warmup_frac}))
    print("torch_retnet train: %s, %d params, batch %d x %d, %d threads, budget %.1f min;"
          " held out: last %d of %d bytes; clock paused during evaluations"
          % (cfg.describe(), n_params, B, T, threads, args.minutes, len(data) - cut,
             len(data)), flush=True)

    # Windows of T+1 bytes at multiples of T, in a fresh random order each epoch
    # (what our loader does, data/loader.h).
    n_windows = (train.numel() - 1) // T
    offs = torch.arange(T + 1)
    gen = torch.Generator().manual_seed(args.seed)
    perm, pos = torch.randperm(n_windows, generator=gen), 0

    def val_record(step, seen, elapsed, final=False):
        t0 = time.perf_counter()
        nats, n = evaluate(model, held, T, args.eval_batch or B)
        rec = {"iteration": step, "tokens": seen, "elapsed_s": round(elapsed, 2),
               "val_loss": nats / n, "val_bits_per_byte": nats / n / LN2,
               "val_targets": n, "eval_s": round(time.perf_counter() - t0, 1)}
        if final:
            rec["final"] = True
        print("step %5d | %7.1f s | held-out %.4f bits/byte (eval %.0f s)%s"
              % (step, elapsed, rec["val_bits_per_byte"], rec["eval_s"],
                 ", final" if final else ""), flush=True)
        emit(rec)

    elapsed, step, seen = 0.0, 0, 0
    next_eval = args.eval_every_s
    loss_acc, n_acc, t_log = 0.0, 0, 0.0
    while elapsed < budget:
        if pos + B > n_windows:
            perm, pos = torch.randperm(n_windows, generator=gen), 0
        idx = perm[pos:pos + B] * T
        pos += B
        batch = train[idx[:, None] + offs]            # (B, T+1)
        lr = lr_at(elapsed / budget, args)
        t0 = time.perf_counter()
        loss, gnorm, _ = train_step(model, opt, batch[:, :-1], batch[:, 1:], args.clip_grad, lr)
        elapsed += time.perf_counter() - t0
        step += 1
        seen += B * T
        loss_acc += loss
        n_acc += 1
        if step % args.log_interval == 0 or elapsed >= budget:
            tps = B * T * n_acc / max(elapsed - t_log, 1e-9)
            print("step %5d | %7.1f s | loss %.4f | lr %.2e | grad norm %.3f | %.0f tok/s"
                  % (step, elapsed, loss_acc / n_acc, lr, gnorm, tps), flush=True)
            emit({"iteration": step, "tokens": seen, "elapsed_s": round(elapsed, 2),
                  "loss": loss_acc / n_acc, "lr": lr, "grad_norm": gnorm,
                  "tokens_per_sec": round(tps, 1)})
            loss_acc, n_acc, t_log = 0.0, 0, elapsed
        if elapsed >= next_eval and elapsed < budget:
            val_record(step, seen, elapsed)
            next_eval += args.eval_every_s
    val_record(step, seen, elapsed, final=True)
    if out:
        out.close()


# ---------------------------------------------------------------- selftest

def load_reference_params(model, p32):
    """Parameters named as in make_fixtures.py / our checkpoints, stored (in, out)
    and applied as x @ W; nn.Linear keeps (out, in)."""
    sd = {"embedding.weight": p32["embedding"], "ln_f.weight": p32["final_ln/gain"],
          "ln_f.bias": p32["final_ln/bias"], "lm_head.weight": p32["lm_head"].t()}
    for l in range(model.cfg.layers):
        s, b = "layers/%d/" % l, "blocks.%d." % l
        sd[b + "ln1.weight"], sd[b + "ln1.bias"] = p32[s + "ln1/gain"], p32[s + "ln1/bias"]
        sd[b + "ln2.weight"], sd[b + "ln2.bias"] = p32[s + "ln2/gain"], p32[s + "ln2/bias"]
        for w in ("wq", "wk", "wv", "wg", "wo"):
            sd[b + "msr.%s.weight" % w] = p32[s + "retention/" + w].t()
        sd[b + "w1.weight"], sd[b + "w1.bias"] = p32[s + "ffn/w1"].t(), p32[s + "ffn/b1"]
        sd[b + "w2.weight"], sd[b + "w2.bias"] = p32[s + "ffn/w2"].t(), p32[s + "ffn/b2"]
    model.load_state_dict({k: v.contiguous() for k, v in sd.items()}, strict=True)


def grad_in_reference_layout(model, name):
    """The gradient of reference parameter `name` from `model`'s .grad fields."""
    m = {"embedding": ("embedding.weight", False), "final_ln/gain": ("ln_f.weight", False),
         "final_ln/bias": ("ln_f.bias", False), "lm_head": ("lm_head.weight", True)}
    if name.startswith("layers/"):
        _, l, rest = name.split("/", 2)
        b = "blocks.%s." % l
        table = {"ln1/gain": ("ln1.weight", False), "ln1/bias": ("ln1.bias", False),
                 "ln2/gain": ("ln2.weight", False), "ln2/bias": ("ln2.bias", False),
                 "ffn/w1": ("w1.weight", True), "ffn/b1": ("w1.bias", False),
                 "ffn/w2": ("w2.weight", True), "ffn/b2": ("w2.bias", False)}
        for w in ("wq", "wk", "wv", "wg", "wo"):
            table["retention/" + w] = ("msr.%s.weight" % w, True)
        key, tr = table[rest]
        key = b + key
    else:
        key, tr = m[name]
    g = dict(model.named_parameters())[key].grad
    return g.t() if tr else g


def cmd_selftest(args):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tests", "fixtures"))
    import make_fixtures as ref  # the independent float64 reference (sets 1 thread)

    worst = {}
    ok, passed = True, 0
    for T, B, seed in ((32, 2, 1001), (40, 1, 1002)):
        cfg_d = dict(V=256, d=64, L=2, H=4, f=128, C=8, T=T, B=B)
        p32 = ref.init_params(cfg_d)
        gen = torch.Generator().manual_seed(seed)
        tokens = torch.randint(0, 256, (B, T + 1), generator=gen, dtype=torch.int64)
        r_logits, r_loss, r_grads = ref.run(p32, tokens, cfg_d, ref.retention_parallel)
        # (loss tolerance, logits/gradients tolerance), relative
        for dtype, tol in ((torch.float64, (1e-12, 1e-10)), (torch.float32, (1e-5, 1e-4))):
            model = RetNet(RetNetConfig(256, 64, 2, 4, 128, 8))
            load_reference_params(model, p32)
            model.to(dtype)
            logits = model(tokens[:, :T])
            loss = F.cross_entropy(logits.reshape(-1, 256), tokens[:, 1:].reshape(-1))
            loss.backward()
            e_loss = abs(float(loss) - float(r_loss)) / abs(float(r_loss))
            e_logits = float((logits.detach().double().reshape(-1, 256) - r_logits).abs().max()
                             / r_logits.abs().max())
            e_grad = 0.0
            for name, rg in r_grads.items():
                g = grad_in_reference_layout(model, name).double()
                e_grad = max(e_grad, float((g - rg).abs().max() / rg.abs().max()))
            tag = "T=%d %s" % (T, str(dtype).replace("torch.", ""))
            worst[tag] = (e_loss, e_logits, e_grad)
            good = e_loss <= tol[0] and max(e_logits, e_grad) <= tol[1]
            ok &= good
            passed += good
            print("selftest %-12s loss %.10f (reference %.10f): rel err loss %.2e, logits %.2e,"
                  " grads %.2e (of each tensor's max) -> %s (tol %.0e, %.0e)"
                  % (tag, float(loss), float(r_loss), e_loss, e_logits, e_grad,
                     "ok" if good else "FAIL", tol[0], tol[1]))
    # The optimizer's decay groups: every matrix but the embedding decays.
    model = RetNet(RetNetConfig(256, 64, 2, 4, 128, 8))
    groups = make_optimizer(model, 1e-3).param_groups
    ids = {id(p) for p in groups[0]["params"]}
    decayed = sorted(n for n, p in model.named_parameters() if id(p) in ids)
    want = sorted(["lm_head.weight"] + ["blocks.%d.%s.weight" % (l, w) for l in range(2)
                                        for w in ("msr.wq", "msr.wk", "msr.wv", "msr.wg",
                                                  "msr.wo", "w1", "w2")])
    good = decayed == want and groups[0]["weight_decay"] == 0.05 \
        and groups[1]["weight_decay"] == 0.0
    ok &= good
    passed += good
    worst["adamw"] = None
    print("selftest adamw groups: %d tensors decayed (Wq Wk Wv Wg Wo W1 W2 per layer, LM head),"
          " %d not -> %s" % (len(decayed), len(groups[1]["params"]), "ok" if good else "FAIL"))
    print("%d passed, %d failed" % (passed, len(worst) - passed))
    return 0 if ok else 1


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("selftest", help="agree with tests/fixtures/make_fixtures.py")

    st = sub.add_parser("step", help="one-rank step benchmark (fwd+bwd+AdamW)")
    st.add_argument("--config", choices=("bench-small", "tiny"), default="bench-small")
    st.add_argument("--micro-batch-size", "--batch", dest="batch", type=int, default=0,
                    help="default: the config's (4)")
    st.add_argument("--seq-length", type=int, default=0, help="default: the config's (2048)")
    st.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    st.add_argument("--ceiling-n", type=int, default=2048)
    st.add_argument("--seed", type=int, default=1)

    tr = sub.add_parser("train", help="train on a byte corpus for a time budget")
    tr.add_argument("--corpus", required=True, help="text file; one token per byte")
    tr.add_argument("--minutes", type=float, default=10.0, help="training wall time")
    tr.add_argument("--hidden-size", type=int, default=256)
    tr.add_argument("--num-layers", type=int, default=4)
    tr.add_argument("--num-heads", type=int, default=4)
    tr.add_argument("--ffn-hidden-size", type=int, default=0, help="default 2d")
    tr.add_argument("--chunk-size", type=int, default=64)
    tr.add_argument("--seq-length", type=int, default=512)
    tr.add_argument("--batch", type=int, default=8)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--min-lr", type=float, default=1e-4)
    tr.add_argument("--warmup-frac", type=float, default=0.1,
                    help="warm-up share of the time budget")
    tr.add_argument("--weight-decay", type=float, default=0.05)
    tr.add_argument("--clip-grad", type=float, default=2.0)
    tr.add_argument("--held-out-fraction", type=float, default=0.05)
    tr.add_argument("--eval-every-s", type=float, default=60.0,
                    help="held-out evaluation every this many seconds of training")
    tr.add_argument("--eval-batch", type=int, default=0, help="default: --batch")
    tr.add_argument("--log-interval", type=int, default=10)
    tr.add_argument("--seed", type=int, default=1234)
    tr.add_argument("--metrics", default="", help="JSON lines file")

    args = ap.parse_args()
    if args.mode == "selftest":
        return cmd_selftest(args)
    if args.mode == "step":
        return cmd_step(args)
    return cmd_train(args)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Projects retnet-train's tokens/s and memory per rank on a cluster, from the
model's shapes, the communication volumes the trainer accounts per axis (the same
formulas as tests/cli/comm_bytes.sh) and a few measured or assumed rates.

Compute: the model FLOPs per token (docs/model.md) at MFU x the ranks' matmul
ceiling. Communication, per step and rank, as ring algorithms send it:
  TP  4 all-reduces of (B*T/CP) x d floats per layer and micro-batch, inside a node
      (shared memory), never hidden;
  CP  2 all-gathers of B x H/TP x dk x dv floats per layer and micro-batch, across
      nodes when CP spans them, never hidden;
  DP  an all-reduce (or reduce-scatter + all-gather with the distributed optimizer)
      of the stage's gradient over DP x CP ranks, started during the last backward:
      the part that outlasts that backward is exposed;
  PP  one activation per micro-batch each way, hidden but for the bubble
      (P-1)/(m+P-1) of 1F1B.
Each transfer costs latency + bytes / bandwidth; a node's ranks share its link.
Memory per rank: parameters and gradients 4 bytes each per local parameter, AdamW
8 bytes (divided over DP x CP with the distributed optimizer), activations per
token in flight (measured: bench-small stores about BYTES_PER_TOKEN_LAYER per token
and layer of width 512, scaled with d; recompute keeps one layer's).

Layouts: for each node count the candidates TP in {1, 2, 4, 8} (inside a node),
PP dividing L, CP in {1, 2, 4}, DP the rest, micro-batches m = 4 x PP; the fastest
whose memory fits is printed, with why it won (its comm and bubble shares).
This is a model, not a measurement: it is as good as the rates given to it. The
defaults describe a cluster of 2 sockets x 32 cores with a 100 Gb/s InfiniBand-class
network (12.5 GB/s, 2 us) and 256 GiB per node, and this repository's measured rates
(bench-small: 87% MFU, 187 GFLOP/s of fp32 matmul per core with AVX-512).

Usage: bench/project_scaling.py [--core-gflops 187] [--mfu 0.85] [--cores 64]
  [--ranks-per-node 8] [--net-gbs 12.5] [--net-lat-us 2] [--shm-gbs 40]
  [--mem-gib 256] [--seq-length 2048] [--global-batch-tokens 4194304]
  [--dp-hidden 0.7] [--nodes 1,2,4,...,256] [--measured FILE]
--measured FILE: lines "MODEL NODES LAYOUT TOKENS_PER_SEC" measured on a real (or
emulated) cluster, printed beside the projection of the same layout.
"""
import argparse
import itertools
import math

MODELS = {
    # name: d, L, H, f, V, C
    "bench-small": (512, 6, 4, 1024, 256, 128),
    "350M": (1024, 24, 8, 2048, 50257, 256),
    "1.3B": (2048, 24, 16, 4096, 50257, 256),
}
# activation bytes per token and layer at d = 512 with stored activations, measured
# on bench-small (docs/benchmarks.md: 2423 MiB for 4 x 2048 tokens x 6 layers)
BYTES_PER_TOKEN_LAYER_512 = 2423 * 2**20 / (4 * 2048 * 6)


def params_of(d, L, H, f, V):
    layer = 4 * d + 2 * d * d + 3 * d * 2 * d + f * (2 * d + 1) + d
    return L * layer + V * d + 2 * d + d * V


def flops_per_token(d, L, H, f, V, C):
    dk, dv = d / H, 2 * d / H
    fwd = L * (2 * (2 * d * d + 4 * d * d + 2 * d * d) + 4 * d * f + 2 * C * (d + 2 * d)
               + 4 * H * dk * dv) + 2 * d * V
    return 3 * fwd


def transfer(bytes_, n_msgs, gbs, lat_us):
    return n_msgs * lat_us * 1e-6 + bytes_ / (gbs * 1e9)


def project(model, nodes, tp, cp, pp, a, forced=False):
    d, L, H, f, V, C = MODELS[model]
    ranks = nodes * a.ranks_per_node
    if ranks % (tp * cp * pp) or H % tp or L % pp:
        return None
    # A tensor-parallel group stays inside a node unless the layout is forced on it
    # (as on emulated nodes with one rank each); then it goes over the network.
    tp_cross = a.ranks_per_node % tp != 0
    if tp_cross and not forced:
        return None
    if a.seq_length % (cp * C):
        return None
    dp = ranks // (tp * cp * pp)
    T = a.seq_length
    seqs = a.global_batch_tokens // T
    B = 1
    m = seqs // (dp * B)
    if m < 1 or seqs % (dp * B):
        return None
    M = B * T // cp  # rows of a micro-batch piece
    cores = a.cores / a.ranks_per_node
    rank_flops = cores * a.core_gflops * 1e9 * a.mfu
    tokens = a.global_batch_tokens
    t_compute = flops_per_token(d, L, H, f, V, C) * tokens / (ranks * rank_flops)
    # communication of one rank, per step
    per_layer = L // pp
    link = a.net_gbs / a.ranks_per_node  # a node's link shared by its ranks
    t_tp = 0.0
    if tp > 1:
        b = 4 * per_layer * m * 2 * (tp - 1) / tp * M * d * 4
        t_tp = transfer(b, 4 * per_layer * m * 2 * (tp - 1),
                        link if tp_cross else a.shm_gbs, a.net_lat_us if tp_cross else 0.5)
    t_cp = 0.0
    if cp > 1:
        ranks_cp_node = max(1, a.ranks_per_node // tp)
        cross = cp > ranks_cp_node
        b = 2 * per_layer * m * (cp - 1) * B * (H // tp) * (d / H) * (2 * d / H) * 4
        t_cp = transfer(b, 2 * per_layer * m * (cp - 1),
                        link if cross else a.shm_gbs, a.net_lat_us if cross else 0.5)
    R = dp * cp
    stage_params = params_of(d, L, H, f, V) / (tp * pp)
    t_dp = t_dp_total = 0.0
    if R > 1:
        b = 2 * (R - 1) / R * stage_params * 4
        t_dp_total = transfer(b, 2 * (R - 1) * per_layer, link, a.net_lat_us)
        # the buckets start during the last micro-batch's backward (2/3 of its compute)
        t_dp = max(0.0, t_dp_total - a.dp_hidden * (2 / 3) * t_compute / m)
    t_pp_total = 0.0
    bubble = 0.0
    if pp > 1:
        b = 2 * m * M * d * 4
        t_pp_total = transfer(b, 2 * m, link, a.net_lat_us)
        bubble = (pp - 1) / (m + pp - 1)
    t_pp = 0.1 * t_pp_total  # sent while the other micro-batches compute: mostly hidden
    t_step = (t_compute + t_tp + t_cp) / (1 - bubble) + t_dp + t_pp
    # memory of one rank
    act_token_layer = BYTES_PER_TOKEN_LAYER_512 * d / 512 / tp
    in_flight = min(m, pp)
    act = act_token_layer * per_layer * M * in_flight
    mem = stage_params * (4 + 4 + 8 / R) + act
    fits = mem * a.ranks_per_node <= a.mem_gib * 2**30
    return dict(tp=tp, cp=cp, pp=pp, dp=dp, m=m, tokens_per_sec=tokens / t_step,
                mem_gib=mem / 2**30, fits=fits, step=t_step,
                comm=(t_tp + t_cp + t_dp + t_pp) / t_step,
                comm_all=t_tp + t_cp + t_dp_total + t_pp_total, bubble=bubble)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--core-gflops", type=float, default=187.0)
    ap.add_argument("--mfu", type=float, default=0.85)
    ap.add_argument("--cores", type=int, default=64)
    ap.add_argument("--ranks-per-node", type=int, default=8)
    ap.add_argument("--net-gbs", type=float, default=12.5)
    ap.add_argument("--net-lat-us", type=float, default=2.0)
    ap.add_argument("--shm-gbs", type=float, default=40.0)
    ap.add_argument("--mem-gib", type=float, default=256.0)
    ap.add_argument("--seq-length", type=int, default=2048)
    ap.add_argument("--global-batch-tokens", type=int, default=4 * 2**20)
    ap.add_argument("--dp-hidden", type=float, default=0.7,
                    help="the share of the last backward the DP reduction can hide behind")
    ap.add_argument("--nodes", default="1,2,4,8,16,32,64,128,256")
    ap.add_argument("--measured", default=None)
    ap.add_argument("--models", default=",".join(MODELS),
                    help="which of " + ", ".join(MODELS))
    ap.add_argument("--layouts", default=None,
                    help="project these layouts (TPxCPxPPxDP, comma separated) instead "
                    "of choosing the fastest that fits")
    a = ap.parse_args()
    measured = {}
    if a.measured:
        for line in open(a.measured):
            w = line.split()
            if len(w) == 4 and not line.startswith("#"):
                measured[(w[0], int(w[1]), w[2])] = float(w[3])
    print("| model | params | nodes | layout (TP x CP x PP x DP, m) | tokens/s | "
          "memory/rank GiB | step s | comm s sent (exposed share) | bubble |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model in a.models.split(","):
        d, L, H, f, V, C = MODELS[model]
        for nodes in (int(x) for x in a.nodes.split(",")):
            choices = []
            if a.layouts:
                for lay in a.layouts.split(","):
                    tp, cp, pp, dp = (int(x) for x in lay.split("x"))
                    p = project(model, nodes, tp, cp, pp, a, forced=True)
                    if p and p["dp"] == dp:
                        choices.append(p)
                    else:
                        print("| %s | | %d | %s: not a layout of %d ranks | | | | | |"
                              % (model, nodes, lay, nodes * a.ranks_per_node))
            else:
                best = None
                for tp, cp, pp in itertools.product((1, 2, 4, 8), (1, 2, 4), range(1, L + 1)):
                    p = project(model, nodes, tp, cp, pp, a)
                    if p and p["fits"] and (not best or
                                            p["tokens_per_sec"] > best["tokens_per_sec"]):
                        best = p
                if not best:
                    print("| %s | %.0fM | %d | nothing fits | | | | | |"
                          % (model, params_of(d, L, H, f, V) / 1e6, nodes))
                    continue
                choices.append(best)
            for best in choices:
                row(model, nodes, best, measured)


def row(model, nodes, best, measured):
    d, L, H, f, V, C = MODELS[model]
    lay = "%d x %d x %d x %d, %d" % (best["tp"], best["cp"], best["pp"], best["dp"], best["m"])
    meas = measured.get((model, nodes, "%dx%dx%dx%d" % (best["tp"], best["cp"], best["pp"],
                                                        best["dp"])))
    print("| %s | %.0fM | %d | %s | %.0f%s | %.1f | %.2f | %.2f (%.0f%%) | %.0f%% |"
          % (model, params_of(d, L, H, f, V) / 1e6, nodes, lay, best["tokens_per_sec"],
             " (measured %.0f)" % meas if meas else "", best["mem_gib"], best["step"],
             best["comm_all"], 100 * best["comm"], 100 * best["bubble"]))


if __name__ == "__main__":
    main()

"""Which kernel runs packed T5 self-attention (relative position bias that takes gradients, plus the segment
mask), and what each choice costs: forward + backward of one attention call at a model size's shape, on
random packed rows (segments of 40-250 tokens filling ~94% of a row, as packed training rows are).

For each option: the time of one forward+backward (median of 20), the error of the output and of the gradients
(queries, the bias table) against an fp32 reference, and, where SDPA refuses a forced kernel, its reasons.

    python eval/experiments/attention_kernels.py [--size large] [--dropout 0.1] [--which encoder] [--out FILE.json]
    python eval/experiments/attention_kernels.py --density .devdata/bench_small.npz --rows 1024 128   (CPU)

``--density``: of the real instances in a prepared benchmark file (eval/bench_train.py prepare), packed into rows
as training packs them, the share of flex_attention's 128 x 128 blocks that hold a query-key pair of one segment
(the blocks it computes; the dense kernels compute every block) and the share of such pairs, padding left out.

Options: ``sdpa`` (what F.scaled_dot_product_attention picks), ``sdpa-efficient`` / ``sdpa-cudnn`` /
``sdpa-math`` (forced), ``eager`` (matmul, fp32 softmax, matmul: model/packing.py's ``attention="eager"``),
each eager and compiled; ``flex`` (``flex_attention``, the bias looked up per query-key pair from each head's bias by
distance in a score_mod and the segments as a block mask; no attention dropout, so timed at dropout 0 only).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from instructie.model.packing import _block_mask, _distance_bias, _FlexBias, _self_bias

SHAPES = {  # heads, head dim, source row, target row, rows a batch
    "small": (8, 64, 1024, 128, 26),
    "base": (12, 64, 512, 64, 32),
    "large": (16, 64, 512, 64, 32),
    "xl": (32, 64, 512, 64, 16),
}
FORCED = {"sdpa-efficient": SDPBackend.EFFICIENT_ATTENTION, "sdpa-cudnn": SDPBackend.CUDNN_ATTENTION,
          "sdpa-math": SDPBackend.MATH, "sdpa-flash": SDPBackend.FLASH_ATTENTION}


def packed_segments(rows: int, length: int, gen: torch.Generator) -> torch.Tensor:
    seg = torch.zeros(rows, length, dtype=torch.long)
    for r in range(rows):
        at, s = 0, 1
        while True:
            n = int(torch.randint(40, 251, (1,), generator=gen))
            if at + n > 0.94 * length:
                break
            seg[r, at:at + n] = s
            at, s = at + n, s + 1
    return seg


def t5_attention(heads: int, d: int, table: torch.Tensor, device) -> torch.nn.Module:
    """A T5 self-attention whose relative position bias table is ``table`` (num_buckets, H): the model's own
    module, so that the biases below are built by model/packing.py's code."""
    from transformers import T5Config
    from transformers.models.t5.modeling_t5 import T5Attention

    config = T5Config(num_heads=heads, d_kv=d, d_model=heads * d, relative_attention_num_buckets=table.shape[0])
    attn = T5Attention(config, has_relative_attention_bias=True).to(device)
    with torch.no_grad():
        attn.relative_attention_bias.weight.copy_(table)
    return attn


def sdpa_call(forced):
    def f(q, k, v, attn, seg, causal, p):
        bias = _self_bias(attn, seg, causal, q.dtype)
        if forced is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=1.0)
        with sdpa_kernel([forced]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p, scale=1.0)
    return f


def eager_call(q, k, v, attn, seg, causal, p):
    bias = _self_bias(attn, seg, causal, q.dtype)
    scores = torch.matmul(q, k.transpose(-1, -2)).float() + bias.float()
    return torch.matmul(F.dropout(torch.softmax(scores, dim=-1).to(q.dtype), p=p), v)


def flex_call(block_masks):
    def f(q, k, v, attn, seg, causal, p):
        bias = _distance_bias(attn, q.shape[2], causal, q.device).contiguous()
        return _FlexBias(block_masks[causal], bias).attend(q, k, v)
    return f


def run_once(fn, q, k, v, attn, seg, causal, p, grad):
    for t in (q, attn.relative_attention_bias.weight):
        t.grad = None
    out = fn(q, k, v, attn, seg, causal, p)
    out.backward(grad)
    return out


def measure(fn, inputs, p, grad, device, reps=20, warm=5):
    times = []
    for i in range(warm + reps):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run_once(fn, *inputs, p, grad)
            end.record()
            torch.cuda.synchronize()
            ms = start.elapsed_time(end)
        else:
            import time
            t0 = time.perf_counter()
            run_once(fn, *inputs, p, grad)
            ms = (time.perf_counter() - t0) * 1000
        if i >= warm:
            times.append(ms)
    return statistics.median(times)


def dtable(inputs):
    """The gradient of the bias table, of a case's inputs."""
    return inputs[3].relative_attention_bias.weight.grad


def rel_err(a, b):
    # padding queries (segment 0) may attend anywhere: compare real tokens only
    return float((a.detach().float() - b.detach().float()).norm() / b.float().norm().clamp_min(1e-30))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="large", choices=sorted(SHAPES))
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rows", type=int, help="rows a batch (default: the size's)")
    ap.add_argument("--options", help="comma-separated options to run (default: all)")
    ap.add_argument("--eager-too", action="store_true", help="time each SDPA option uncompiled as well")
    ap.add_argument("--which", choices=("encoder", "decoder", "both"), default="both",
                    help="encoder self-attention (bidirectional, source rows), decoder self-attention (causal)")
    ap.add_argument("--out")
    ap.add_argument("--density", metavar="NPZ", help="measure flex's block density on this file's packed rows")
    ap.add_argument("--row", nargs=2, type=int, default=(1024, 128), metavar=("SOURCE", "TARGET"))
    a = ap.parse_args(argv)
    if a.density:
        return block_density(a.density, *a.row)
    heads, d, src, tgt, rows = SHAPES[a.size]
    rows = a.rows or rows
    dev = a.device
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    gen = torch.Generator().manual_seed(0)
    results = {"size": a.size, "rows": rows, "heads": heads, "torch": torch.__version__,
               "device": torch.cuda.get_device_name() if dev == "cuda" else "cpu", "cases": []}
    for causal, n in ((False, src), (True, tgt)):
        if a.which != "both" and causal != (a.which == "decoder"):
            continue
        seg = packed_segments(rows, n, gen).to(dev)
        if causal:  # target segments are shorter: rescale
            seg = packed_segments(rows, n * 8, gen)[:, ::8].contiguous().to(dev)
        base = [torch.randn(rows, heads, n, d, generator=gen) for _ in range(3)]
        table0 = torch.randn(32, heads, generator=gen) * 2
        grad = torch.randn(rows, heads, n, d, generator=gen).to(dev, dtype)
        real = (seg != 0)[:, None, :, None]

        def inputs(dt):
            q, k, v = (x.to(dev, dt).requires_grad_(True) for x in base)
            return q, k, v, t5_attention(heads, d, table0, dev), seg, causal

        ref_in = inputs(torch.float32)
        ref = run_once(sdpa_call(SDPBackend.MATH), *ref_in, 0.0, grad.float())
        ref_out, ref_dq, ref_dt = (ref * real).detach(), ref_in[0].grad * real, dtable(ref_in)
        options = {"sdpa": sdpa_call(None), **{k: sdpa_call(v) for k, v in FORCED.items()}, "eager": eager_call}
        if not a.eager_too:  # forced kernels uncompiled: the refusal reasons SDPA prints
            for name in FORCED:
                if name in (a.options or name):
                    case = {"causal": causal, "option": name, "compiled": False, "dropout": a.dropout}
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        try:
                            run_once(options[name], *inputs(dtype), a.dropout, grad)
                            case["runs"] = True
                        except Exception as e:  # noqa: BLE001 - a refused kernel is a result
                            case["error"] = str(e)[-300:]
                    case["warnings"] = sorted({str(w.message)[:400] for w in caught})
                    print(json.dumps(case), flush=True)
                    results["cases"].append(case)
        block_masks = None
        if dev == "cuda":
            try:
                block_masks = {causal: _block_mask(seg, seg, causal)}
                options["flex"] = flex_call(block_masks)
            except Exception as e:  # noqa: BLE001 - report, go on
                results["cases"].append({"causal": causal, "option": "flex", "error": repr(e)[:500]})
        wanted = set(a.options.split(",")) if a.options else set(options)
        for name, fn in options.items():
            if name not in wanted:
                continue
            for compiled in ((False, True) if a.eager_too else (True,)):
                f = torch.compile(fn, dynamic=False) if compiled else fn
                for p in ((0.0,) if name == "flex" else (0.0, a.dropout)):
                    case = {"causal": causal, "length": n, "option": name, "compiled": compiled, "dropout": p}
                    try:
                        with warnings.catch_warnings(record=True) as caught:
                            warnings.simplefilter("always")
                            ins = inputs(dtype)
                            out = run_once(f, *ins, p, grad)
                        if p == 0.0:
                            case["err_out"] = rel_err(out * real, ref_out)
                            case["err_dq"] = rel_err(ins[0].grad * real, ref_dq)
                            case["err_dtable"] = rel_err(dtable(ins), ref_dt)
                        case["ms"] = measure(f, ins, p, grad, dev)
                        if caught:
                            case["warnings"] = sorted({str(w.message)[:300] for w in caught})
                    except Exception as e:  # noqa: BLE001 - a refused kernel is a result
                        case["error"] = (str(e)[-600:] + " | " + "; ".join(
                            sorted({str(w.message)[:300] for w in caught}))[:1500])
                    if dev == "cuda" and "ms" in case and compiled and p == a.dropout:
                        case["kernels"] = kernels(f, ins, p, grad)
                    print(json.dumps(case), flush=True)
                    results["cases"].append(case)
                    torch._dynamo.reset()
    if a.out:
        with open(a.out, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


def block_density(path: str, source: int, target: int, rows: int = 256) -> int:
    import random

    import numpy as np

    from instructie.data.packing import pack_rows

    z = np.load(path)
    lengths = {"source": [min(int(x), source) for x in z["src_len"]],
               "target": [min(int(x), target) for x in z["tgt_len"]]}
    packed = pack_rows(lengths["source"], lengths["target"], source, target, random.Random(0))[:rows]
    for side, n, causal in (("source", source, False), ("target", target, True)):
        seg = torch.zeros(len(packed), n, dtype=torch.long)
        for r, row in enumerate(packed):
            at = 0
            for s, i in enumerate(row, 1):
                seg[r, at:at + lengths[side][i]] = s
                at += lengths[side][i]

        blocks = _block_mask(seg, seg, causal)
        q, k = torch.arange(n)[:, None], torch.arange(n)[None, :]
        pairs = torch.stack([(seg[b, q] == seg[b, k]) & ((k <= q) | (not causal)) & (seg[b, q] != 0)
                             for b in range(len(packed))]).float().mean()
        per_row = (-(-n // 128)) ** 2
        kept = blocks.kv_num_blocks.sum() + (blocks.full_kv_num_blocks.sum() if blocks.full_kv_num_blocks is not None
                                             else 0)
        print(f"{side} rows of {n} ({'causal' if causal else 'bidirectional'}), {len(packed)} rows: flex computes "
              f"{int(kept) / (len(packed) * per_row):.2f} of the 128 x 128 blocks (a dense kernel: all); pairs "
              f"within a segment {float(pairs):.2f} of all")
    return 0


def kernels(fn, ins, p, grad) -> list[str]:
    """The GPU kernels taking most time in one forward+backward: which attention kernel actually ran."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run_once(fn, *ins, p, grad)
        torch.cuda.synchronize()
    rows = sorted(((e.device_time_total if hasattr(e, "device_time_total") else e.cuda_time_total, e.key)
                   for e in prof.key_averages()), reverse=True)
    return [f"{k[:70]} {t / 1000:.2f}ms" for t, k in rows[:6]]


if __name__ == "__main__":
    sys.exit(main())

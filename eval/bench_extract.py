"""Inference throughput benchmark: ``Extractor.extract`` vs. a naive generate loop, one run.

Real sentences from the shared data, mixed English/Chinese: CoNLL2003 test sentences
(NER), DuIE dev texts (RE) and DuEE test texts (EE), topped up from DuIE train, DuEE dev
and CoNLL dev when ``--sentences`` asks for more. Each group is asked its own task when
the model was trained with labels for it (else NER), with the model's trained labels.

Variants, same model directory, same prompts:

* ``instructie``: ``Extractor.extract`` -- model loaded once, bf16 on a GPU, batches of
  ``--batch-size`` prompts sorted by length, greedy, per-item confidences, grounding;
* ``naive``: one prompt per ``model.generate`` call, fp32, input order, greedy, no scores;
  the prompts are the Extractor's own (``Extractor._plan``: same segmentation, option
  chunks and ``instructions.build_source``), so the work per sentence is the same. It is
  slow, so it runs on a proportional subset (``--naive-sentences``, at most
  ``--naive-max-seconds``) and its sentences/s is extrapolated from that subset;
* ``instructie_constrained``: ``extract(constrained=True)`` on the first
  ``--constrained-sentences`` (proportional) sentences, to compare the rate of
  unsupported items (spans not found in the text) with the unconstrained run on the
  same sentences.

Peak memory: ``torch.cuda.max_memory_allocated`` per variant on a GPU, process peak RSS
on CPU. Writes JSON and prints a Markdown table.

    python eval/bench_extract.py --model DIR --data .devdata --sentences 5000 --out eval/bench_extract.json
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path

import torch

GROUP_TASK = {"conll": "NER", "duie": "RE", "duee": "EE"}


# ------------------------------------------------------------------ data

def _json_texts(path: Path, key: str) -> list[str]:
    if not path.exists():
        return []
    return [r[key] for r in json.loads(path.read_text(encoding="utf-8")) if isinstance(r.get(key), str)]


def _jsonl_texts(path: Path, key: str) -> list[str]:
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    t = json.loads(line).get(key)
                except (json.JSONDecodeError, AttributeError):
                    continue
                if isinstance(t, str):
                    out.append(t)
    return out


def load_sentences(data: Path, n: int) -> dict[str, list[str]]:
    """group -> texts, ``n`` in all (fewer only if the data holds fewer)."""
    ie = data / "ie_instructions"
    primary = {
        "conll": _json_texts(ie / "NER/CoNLL2003/test.json", "sentence"),
        "duie": _jsonl_texts(data / "duie/duie_dev.json", "text"),
        "duee": _json_texts(ie / "EE/DuEE/test.json", "sentence"),
    }
    topup = [("duie", _jsonl_texts(data / "duie/duie_train.json", "text")),
             ("duee", _json_texts(ie / "EE/DuEE/dev.json", "sentence")),
             ("conll", _json_texts(ie / "NER/CoNLL2003/dev.json", "sentence"))]
    primary = {g: [t for t in v if t.strip()] for g, v in primary.items()}
    total = sum(len(v) for v in primary.values())
    if total >= n:
        return proportional(primary, n)
    out = {g: list(v) for g, v in primary.items()}
    for g, extra in topup:
        need = n - sum(len(v) for v in out.values())
        if need <= 0:
            break
        out[g] += [t for t in extra if t.strip()][:need]
    return out


def proportional(groups: dict[str, list], m: int) -> dict[str, list]:
    """The first items of each group, ``m`` in all, in proportion to the group sizes."""
    total = sum(len(v) for v in groups.values())
    if m >= total:
        return {g: list(v) for g, v in groups.items()}
    out, left = {}, m
    names = [g for g in groups if groups[g]]
    for k, g in enumerate(names):
        take = left if k == len(names) - 1 else min(left, max(1, round(m * len(groups[g]) / total)))
        out[g] = list(groups[g][:take])
        left -= take
    return out


# ------------------------------------------------------------------ measuring

def _reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        try:  # Linux: reset the process's peak RSS (VmHWM)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def _peak_mib(device: str) -> tuple[float | None, str]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20, "cuda_max_memory_allocated"
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, "process_peak_rss"
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def group_tasks(ex) -> dict[str, list[str]]:
    out = {}
    for g, task in GROUP_TASK.items():
        has = any(task in per for per in ex.card.get("labels", {}).values() if per.get(task))
        out[g] = [task] if has else ["NER"]
    return out


def run_extractor(ex, groups, tasks, args, device, constrained: bool, budget_s: float) -> dict:
    from instructie.inference.extractor import Schema

    from instructie.decoding import generation

    _reset_peak(device)
    counts: dict[str, list[tuple[int, int]]] = {}  # group -> (supported, unsupported) per doc
    n_prompts = [0]
    n_segments = 0
    real_generate = generation.generate

    def counting_generate(model, tokenizer, sources, **kw):  # counts the prompts extract sends
        n_prompts[0] += len(sources)
        return real_generate(model, tokenizer, sources, **kw)

    generation.generate = counting_generate
    t0 = time.perf_counter()
    stopped = False
    try:
        for g, texts in groups.items():
            counts[g] = []
            for doc in ex.extract(texts, tasks[g], batch_size=args.batch_size, constrained=constrained,
                                  docs_per_chunk=args.docs_per_chunk, schema=Schema()):
                counts[g].append((len(doc.entities) + len(doc.relations) + len(doc.events),
                                  doc.stats.get("unsupported", 0)))
                n_segments += doc.stats.get("segments", 0)
                if time.perf_counter() - t0 > budget_s:
                    stopped = True
                    break
            if stopped:
                break
    finally:
        generation.generate = real_generate
    _sync(device)
    secs = time.perf_counter() - t0
    n = sum(len(v) for v in counts.values())
    peak, kind = _peak_mib(device)
    sup = sum(s for v in counts.values() for s, _ in v)
    uns = sum(u for v in counts.values() for _, u in v)
    n_prompts = n_prompts[0]
    return {"sentences": n, "segments": n_segments, "prompts": n_prompts, "seconds": round(secs, 3),
            "sentences_per_s": round(n / secs, 2) if secs else None,
            "prompts_per_s": round(n_prompts / secs, 2) if secs else None,
            "peak_memory_mib": round(peak, 1) if peak is not None else None, "memory_kind": kind,
            "dtype": str(next(ex.model.parameters()).dtype).replace("torch.", ""), "batch_size": args.batch_size,
            "constrained": constrained, "stopped_by_time_budget": stopped,
            "items": sup, "unsupported_items": uns, "unsupported_rate": round(uns / (sup + uns), 4) if sup + uns else 0.0,
            "_counts": counts}


_PROMPT_CACHE: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def _prompts_for(ex, text: str, tasks: list[str]) -> list[str]:
    from instructie.inference.extractor import Schema

    key = (text, tuple(tasks))
    if key not in _PROMPT_CACHE:
        _, _, prompts = ex._plan([("0", text)], [t.upper() for t in tasks], Schema(), None)
        _PROMPT_CACHE[key] = [p[2].source for p in prompts]
    return _PROMPT_CACHE[key]


@torch.inference_mode()
def run_naive(model, tok, ex, groups, tasks, args, device) -> dict:
    """One prompt per generate call, fp32, input order, the Extractor's prompts."""
    sub = proportional(groups, args.naive_sentences)
    work = [(g, t) for g, texts in sub.items() for t in texts]
    # interleave the groups in proportion, so that any prefix (a run cut by the time limit)
    # has the mix of the whole set: item k of a group of n sits at (k + 0.5) / n
    by_group = {g: [t for gg, t in work if gg == g] for g in sub}
    mixed = [(g, t) for _, g, t in sorted(((k + 0.5) / len(v), g, t) for g, v in by_group.items()
                                          for k, t in enumerate(v))]
    prompts = [(g, _prompts_for(ex, t, tasks[g])) for g, t in mixed]
    max_new = ex.max_target_length
    # warm-up (CUDA context, kernels): not timed
    enc = tok(prompts[0][1][0] if prompts and prompts[0][1] else "warm up", return_tensors="pt")
    model.generate(**{k2: v.to(device) for k2, v in enc.items()}, max_new_tokens=4, do_sample=False, num_beams=1)
    _reset_peak(device)
    t0 = time.perf_counter()
    done = n_prompts = 0
    stopped = False
    for g, ps in prompts:
        for p in ps:
            enc = tok(p, return_tensors="pt", truncation=True, max_length=ex.max_source_length)
            out = model.generate(**{k2: v.to(device) for k2, v in enc.items()}, max_new_tokens=max_new,
                                 do_sample=False, num_beams=1)
            tok.decode(out[0], skip_special_tokens=True)
            n_prompts += 1
        done += 1
        if time.perf_counter() - t0 > args.naive_max_seconds:
            stopped = done < len(prompts)
            break
    _sync(device)
    secs = time.perf_counter() - t0
    peak, kind = _peak_mib(device)
    return {"sentences": done, "subset_requested": len(prompts), "prompts": n_prompts, "seconds": round(secs, 3),
            "sentences_per_s": round(done / secs, 3) if secs else None,
            "prompts_per_s": round(n_prompts / secs, 3) if secs else None,
            "peak_memory_mib": round(peak, 1) if peak is not None else None, "memory_kind": kind,
            "dtype": "float32", "batch_size": 1, "stopped_by_time_budget": stopped,
            "extrapolated": True,
            "note": f"sentences/s measured on the first {done} sentences of a subset interleaved in the "
                    "proportions of the full set, and extrapolated to the full set"}


def _first(counts: dict[str, list], sub: dict[str, list]) -> tuple[int, int]:
    sup = uns = 0
    for g, texts in sub.items():
        for s, u in counts.get(g, [])[: len(texts)]:
            sup += s
            uns += u
    return sup, uns


# ------------------------------------------------------------------ main

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a trained instructie model directory")
    ap.add_argument("--data", default=os.environ.get("INSTRUCTIE_DATA", "../shared/data"))
    ap.add_argument("--sentences", type=int, default=5000)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--docs-per-chunk", type=int, default=2048, help="documents planned and length-sorted together")
    ap.add_argument("--naive-sentences", type=int, default=300)
    ap.add_argument("--naive-max-seconds", type=float, default=60.0)
    ap.add_argument("--constrained-sentences", type=int, default=1000)
    ap.add_argument("--extract-max-seconds", type=float, default=120.0, help="stop a variant after this long")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", default="eval/bench_extract.json")
    args = ap.parse_args(argv)

    from instructie.inference.extractor import Extractor

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t_start = time.perf_counter()
    groups = load_sentences(Path(args.data), args.sentences)
    n_total = sum(len(v) for v in groups.values())
    if not n_total:
        print(f"no sentences found under {args.data}", file=sys.stderr)
        return 2
    report: dict = {
        "model": str(args.model), "data": str(args.data), "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor() or "cpu",
        "torch": torch.__version__, "sentences": n_total, "per_group": {g: len(v) for g, v in groups.items()},
        "variants": {}, "errors": {},
    }
    try:
        import transformers
        report["transformers"] = transformers.__version__
    except Exception:  # noqa: BLE001
        pass

    ex = Extractor.from_pretrained(args.model, device=device)
    tasks = group_tasks(ex)
    report["tasks"] = tasks
    # warm-up on a few sentences of each group (CUDA context, kernels, spaCy pipelines): not timed
    warm = proportional(groups, min(32, n_total))
    for g, texts in warm.items():
        list(ex.extract(texts, tasks[g], batch_size=args.batch_size))
    counts_unconstrained = None
    for name, constrained, sub, budget in (
            ("instructie", False, groups, args.extract_max_seconds),
            ("instructie_constrained", True, proportional(groups, args.constrained_sentences),
             args.extract_max_seconds / 2)):
        try:
            res = run_extractor(ex, sub, tasks, args, device, constrained, budget)
            counts = res.pop("_counts")
            if not constrained:
                counts_unconstrained = counts
            else:
                res["_counts"] = counts
            report["variants"][name] = res
        except Exception as e:  # noqa: BLE001
            report["errors"][name] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
    # unsupported-span rate, same sentences with and without constrained decoding
    con = report["variants"].get("instructie_constrained")
    if con is not None and counts_unconstrained is not None:
        c_counts = con.pop("_counts")
        sub = {g: [None] * min(len(v), len(counts_unconstrained.get(g, []))) for g, v in c_counts.items()}
        su, uu = _first(counts_unconstrained, sub)
        sc, uc = _first(c_counts, sub)
        report["unsupported"] = {
            "sentences": sum(len(v) for v in sub.values()),
            "unconstrained": {"items": su, "unsupported": uu, "rate": round(uu / (su + uu), 4) if su + uu else 0.0},
            "constrained": {"items": sc, "unsupported": uc, "rate": round(uc / (sc + uc), 4) if sc + uc else 0.0},
        }
    elif con is not None:
        con.pop("_counts", None)

    # naive baseline: a separate fp32 copy, loaded after the Extractor's runs (peaks stay separate)
    try:
        from instructie.model.loading import load_trained
        prompts_ex = ex
        model_fp32, tok = load_trained(args.model, device=device, dtype=torch.float32)
        if device.startswith("cuda"):
            ex.model.to("cpu")  # free the bf16 copy so the naive peak is its own
            torch.cuda.empty_cache()
        report["variants"]["naive"] = run_naive(model_fp32, tok, prompts_ex, groups, tasks, args, device)
        del model_fp32
        gc.collect()
    except Exception as e:  # noqa: BLE001
        report["errors"]["naive"] = f"{type(e).__name__}: {e}"
        traceback.print_exc()

    v = report["variants"]
    if "instructie" in v and "naive" in v and v["naive"].get("sentences_per_s"):
        report["speedup_sentences_per_s"] = round(v["instructie"]["sentences_per_s"] / v["naive"]["sentences_per_s"], 2)
        if v["naive"].get("prompts_per_s"):
            report["speedup_prompts_per_s"] = round(v["instructie"]["prompts_per_s"] / v["naive"]["prompts_per_s"], 2)
    report["total_seconds"] = round(time.perf_counter() - t_start, 1)
    report["table"] = table(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(report["table"])
    print(f"wrote {out}", file=sys.stderr)
    return 0 if not report["errors"] else 1


def table(r: dict) -> str:
    mix = ", ".join(f"{g}: {n} -> {'/'.join(r.get('tasks', {}).get(g) or [])}" for g, n in r["per_group"].items())
    lines = [f"Extraction throughput on {r['device_name']} ({r['device']}), model {r['model']}, "
             f"{r['sentences']} sentences ({mix})",
             "",
             "| variant | dtype | batch | sentences | prompts | seconds | sentences/s | prompts/s | peak memory (MiB) | unsupported rate |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in r["variants"].items():
        lines.append(f"| {name}{' (extrapolated)' if v.get('extrapolated') else ''} | {v.get('dtype')} | "
                     f"{v.get('batch_size')} | {v.get('sentences')} | {v.get('prompts')} | {v.get('seconds')} | "
                     f"{v.get('sentences_per_s')} | {v.get('prompts_per_s')} | {v.get('peak_memory_mib')} "
                     f"({v.get('memory_kind', '')}) | {v.get('unsupported_rate', '-')} |")
    if "speedup_sentences_per_s" in r:
        lines += ["", f"Speed-up of instructie over the naive loop: {r['speedup_sentences_per_s']}x sentences/s "
                      f"({r.get('speedup_prompts_per_s')}x prompts/s); the naive rate is extrapolated from "
                      f"{r['variants']['naive']['sentences']} sentences."]
    u = r.get("unsupported")
    if u:
        lines += ["", f"Unsupported items (spans not in the text) on the same {u['sentences']} sentences: "
                      f"unconstrained {u['unconstrained']['unsupported']}/{u['unconstrained']['items'] + u['unconstrained']['unsupported']}"
                      f" = {u['unconstrained']['rate']:.2%}, constrained {u['constrained']['unsupported']}/"
                      f"{u['constrained']['items'] + u['constrained']['unsupported']} = {u['constrained']['rate']:.2%}."]
    for k, e in r.get("errors", {}).items():
        lines.append(f"\nerror in {k}: {e}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

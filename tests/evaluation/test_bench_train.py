"""eval/bench_train.py join: calls of one machine joined into the file eval/RESULTS.md's training table reads."""
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def bench():
    spec = importlib.util.spec_from_file_location("eval_bench_train", ROOT / "eval" / "bench_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_file(path, peak, results, torch_version="2.11.0"):
    path.write_text(json.dumps({"device": "GPU", "torch": torch_version, "transformers": "5.17.0",
                                "peak_bf16_tflops": peak, "tokens": "t.npz", "steps": 8, "warmup": 2,
                                "results": results}))
    return str(path)


def test_join_keeps_each_result_with_the_peak_of_its_own_call(tmp_path):
    r = {"size": "large", "variant": "hf", "batch": 16, "examples_per_step": 16, "examples_per_s": 30.0,
         "useful_tokens_per_s": 1, "useful_tflops": 15.0, "mfu": 0.02, "padding": 0.1, "peak_mem_gib": 40,
         "first_step_s": 1}
    a = run_file(tmp_path / "a.json", 750.0, [r])
    b = run_file(tmp_path / "b.json", 740.0, [dict(r, variant="packed", attention="flex", examples_per_s=600.0)])
    bench().join(str(tmp_path / "joined.json"), [a, b])
    joined = json.loads((tmp_path / "joined.json").read_text())
    assert [(x["variant"], x["peak_bf16_tflops"]) for x in joined["results"]] == [("hf", 750.0), ("packed", 740.0)]
    assert joined["peak_bf16_tflops"] == [750.0, 740.0] and joined["device"] == "GPU"


def test_join_refuses_runs_of_different_setups(tmp_path):
    a = run_file(tmp_path / "a.json", 750.0, [])
    b = run_file(tmp_path / "b.json", 750.0, [], torch_version="2.12.0")
    with pytest.raises(SystemExit, match="differ in 'torch'"):
        bench().join(str(tmp_path / "joined.json"), [a, b])
    assert not (tmp_path / "joined.json").exists()


@pytest.mark.parametrize("name", ["train_flan.json", "train_small.json"])
def test_the_recorded_mfu_is_useful_flops_over_the_peak_of_the_same_call(name):
    joined = json.loads((ROOT / "eval" / "runs" / "bench" / name).read_text())
    for r in joined["results"]:
        if "mfu" in r:
            assert r["mfu"] == pytest.approx(r["useful_tflops"] / r["peak_bf16_tflops"], abs=6e-4), r

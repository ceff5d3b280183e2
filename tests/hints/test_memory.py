"""Memory hints (memory.py): what the training data says about a text, in the prompt.

The hint must be what the no-model baselines would answer, training hints must come
from the other folds (else the model learns to copy them blindly), the memory must
round-trip through the model directory, and extraction must ask with it."""
from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from instructie.evaluation.baselines import ner_dictionary, rc_entity_memory, train_triples
from instructie.hints.memory import FoldedMemory, Memory, fold_of
from instructie.core.records import Entity, Record, Relation

from helpers import fixture_records, tiny_config


@pytest.fixture(scope="module")
def records():
    return fixture_records()


def _split(records):
    train = [r for r in records if r.split == "train" or (r.dataset == "duie" and int(r.id.split("-")[-1]) < 20)]
    test = [r for r in records if r not in train]
    return train, test


def test_hints_are_the_baselines_answers(records):
    checked = 0
    for r in records:  # each record answered from all the others: what a test sentence gets
        if r.task not in ("NER", "RE"):
            continue
        train = [x for x in records if x is not r]
        mem = Memory.from_records(train)
        if r.task == "NER":
            want = [(e.text, e.label) for e in ner_dictionary([x for x in train if x.task == "NER"])(r).entities]
            assert mem.items(r) == want[: mem.max_items]
        else:
            base = train_triples([x for x in train if x.task == "RE"])(r)
            want = sorted(x.key() for x in base.relations)
            assert sorted(mem.items(r)) == want
        checked += bool(want)
    assert checked >= 10
    # Options restrict the hint as they restrict the answer.
    conll = next(r for r in records if r.dataset == "CoNLL2003" and len({e.label for e in r.entities}) > 1)
    full = Memory.from_records([conll])
    only = conll.entities[0].label
    assert {lab for _, lab in full.items(conll, [only])} == {only}
    assert full.hint(conll).startswith("Memory: ") and full.hint(Record("x", "d", "NEG", "t")) is None
    assert full.hint(Record("x", "d", "NER", "nothing known here", options=[only])) == "Memory: None"  # the empty answer


def test_rc_hint_backs_off_like_entity_memory():
    def rc(h, t, lab):
        return Record(f"{h}{t}{lab}", "fewrel", "RC", f"{h} and {t}", options=["mother", "child", "spouse"],
                      relations=[Relation(Entity("head", h), lab, Entity("tail", t))])
    train = [rc("Ann", "Bob", "mother"), rc("Ann", "Bob", "mother"), rc("Cid", "Bob", "child"),
             rc("Cid", "Bob", "child"), rc("Cid", "Bob", "child"), rc("Ann", "Dee", "spouse")]
    mem = Memory.from_records(train)
    assert mem.items(rc("Ann", "Bob", "?")) == [("pair", "mother"), ("tail", "child"), ("head", "mother")]
    assert mem.items(rc("Eve", "Bob", "?")) == [("tail", "child")]
    assert mem.items(rc("Eve", "Fay", "?")) == []
    base = rc_entity_memory(train)
    assert base(rc("Eve", "Bob", "?")).labels == ["child"]  # the baseline's answer is the first level


def test_training_hints_come_from_the_other_folds(records):
    train, _ = _split(records)
    folded, full = FoldedMemory(train, 5, block=4), Memory.from_records(train)
    own_only = 0
    for r in train:
        if r.task != "NER":
            continue
        k = folded.fold_of(r)
        others = [x for x in train if folded.fold_of(x) != k]
        assert folded.hint(r) == Memory.from_records(others).hint(r)
        seen_elsewhere = {e.text for x in others for e in x.entities}
        hinted = {s for s, _ in folded.parts[k].items(r)}
        assert hinted <= seen_elsewhere
        own_only += len({e.text for e in r.entities} & {s for s, _ in full.items(r)} - seen_elsewhere)
    assert own_only > 0, "some spans are hinted by the full memory only because the record itself has them"
    # Folds are runs of consecutive records of each dataset (at most block=4, at most a fifth of it).
    conll = list(dict.fromkeys(r.id for r in train if r.dataset == "CoNLL2003"))
    assert len(conll) == 12  # runs of 3
    assert [folded.fold[i] for i in conll] == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    for ds in {r.dataset for r in train}:  # every dataset, small ones too, is spread over the folds
        n = len([r for r in train if r.dataset == ds])
        assert n >= 10 and len({folded.fold_of(r) for r in train if r.dataset == ds}) >= 4
    ee = next(r for r in train if r.task == "EE")
    assert folded.fold_of(replace(ee, id=ee.id + "@1")) == folded.fold_of(ee)  # EEA copies share the fold
    assert fold_of("unknown@1", 5) == fold_of("unknown", 5)  # ids never seen: a stable hash


def test_memory_file_round_trips_and_bad_files_name_themselves(records, tmp_path):
    train, test = _split(records)
    mem = Memory.from_records(train, max_items=3)
    mem.save(tmp_path / "memory.json")
    back = Memory.load(tmp_path / "memory.json")
    assert back.to_json() == mem.to_json() and back.max_items == 3
    assert [back.hint(r) for r in test] == [mem.hint(r) for r in test]
    from instructie.core.io import InputError
    for bad in ('{"format": 1, "spans": [["x"]]}', "[]", '"x"', "{not json"):
        (tmp_path / "bad.json").write_text(bad)
        with pytest.raises(InputError, match="bad.json"):
            Memory.load(tmp_path / "bad.json")


def test_hints_come_from_the_records_own_dataset_as_its_baseline_does(tmp_path):
    """CoNLL calls "Google" an organization; a CrossNER-like set calls it a product. Pooled,
    CoNLL's many records won every vote in the other set's hints; per dataset each gets its own
    baseline's answer, and a record of no known dataset (a user's text) the pooled one."""
    opts = ["organization", "product"]

    def rec(i, ds, label):
        return Record(f"{ds}-{i}", ds, "NER", "Google rose .", options=opts, entities=[Entity(label, "Google", 0, 6)])

    train = [rec(i, "conll", "organization") for i in range(5)] + [rec(i, "ai", "product") for i in range(2)]
    mem = Memory.from_records(train)
    ask = Record("q", "ai", "NER", "Google fell .", options=opts)
    assert mem.items(ask) == [("Google", "product")]
    assert mem.items(ask) == [(e.text, e.label) for e in ner_dictionary(train[5:])(ask).entities]
    assert mem.items(replace(ask, dataset="conll")) == [("Google", "organization")]
    assert mem.items(replace(ask, dataset="")) == [("Google", "organization")]  # pooled: 5 votes to 2
    assert mem.items(replace(ask, dataset="new")) == [("Google", "organization")]
    # a dataset without records of the task falls back to the pooled memory
    mem.add(Record("e", "ai", "EE", "x", events=[]))
    assert mem.items(replace(ask, task="NER")) == [("Google", "product")]
    # the per-dataset tables survive the model directory; a format-1 file (pooled only) still loads
    mem.save(tmp_path / "m.json")
    assert Memory.load(tmp_path / "m.json").items(ask) == [("Google", "product")]
    old = {k: v for k, v in mem.to_json().items() if k != "datasets"} | {"format": 1}
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert Memory.load(tmp_path / "old.json").items(ask) == [("Google", "organization")]


def test_re_hint_order_is_by_position_then_longest_head():
    def re(text, triples):
        return Record(text, "d", "RE", text, language="en", options=["in", "mayor"],
                      relations=[Relation(Entity("", h), lab, Entity("", t)) for h, lab, t in triples])
    mem = Memory.from_records([re("x", [("New", "in", "Jersey"), ("New York", "in", "USA"),
                                        ("New York City", "mayor", "Adams"), ("Adams", "in", "USA")])])
    text = re("New York City , USA , Adams , Jersey , New", [])
    assert mem.items(text) == [("New York City", "mayor", "Adams"), ("New York", "in", "USA"),
                               ("New", "in", "Jersey"), ("Adams", "in", "USA")]
    assert mem.items(text, exclude=frozenset({"USA"})) == [("New York City", "mayor", "Adams"), ("New", "in", "Jersey")]


def test_names_put_in_by_mention_replacement_are_not_hinted(records):
    from instructie.config import DataConfig
    from instructie.data.sources import Source, make_instances
    from instructie.config import DatasetConfig
    from instructie.prompts.instructions import load_templates

    train, _ = _split(records)
    conll = [r for r in train if r.dataset == "CoNLL2003"]
    folded = FoldedMemory(conll, 2, block=3)
    data = DataConfig(mention_replacement=1.0)
    src = [Source(DatasetConfig("ie_instructions", "x"), conll)]
    inst = make_instances(src, data, load_templates(None), seed=0, epoch=0, memory=folded)
    original = {r.text for r in conll}
    replaced = [i for i in inst if i.record.text not in original]
    assert replaced
    for i in replaced:
        own = {e.text for r in conll if r.id == i.record.id for e in r.entities}
        new_names = {e.text for e in i.record.entities} - own
        hinted = {it[0] for it in folded.parts[folded.fold_of(i.record)].items(i.record)}
        line = i.source.split("\n")[-2]
        assert line.startswith("Memory: ")
        assert not any(f"{n} |" in line for n in new_names & hinted), (line, new_names)



def test_prompt_carries_the_hint_after_the_text_per_option_chunk(records):
    from instructie.hints.plugin import Hints
    from instructie.inference.predict import record_prompts
    from instructie.prompts.instructions import load_templates

    train, _ = _split(records)
    mem = Memory.from_records(train)
    rec = next(r for r in train if r.task == "NER" and len({e.label for e in r.entities}) > 1)
    prompts = record_prompts(rec, load_templates(), max_options=2, hints=Hints(mem))
    assert len(prompts) == 2
    for p in prompts:
        lines = p.source.split("\n")
        assert lines[-3].startswith("Text: ") and lines[-2].startswith("Memory: ") and lines[-1] == "Answer:"
        assert lines[-2] == mem.hint(rec, list(p.options))
        assert list(p.hint) == mem.items(rec, list(p.options))  # the prompt's metadata: the items it proposes
    assert all("Memory:" not in p.source for p in record_prompts(rec, load_templates(), max_options=2))


def test_prompts_list_options_sorted_or_as_the_record_lists_them(records):
    """eval.option_order sorted: a record whose options come in another order gets the same prompts, chunks
    and hints included; schema: the prompts follow the record's order."""
    from dataclasses import replace

    from instructie.hints.plugin import Hints
    from instructie.inference.predict import record_prompts
    from instructie.prompts.instructions import asked_order, load_templates

    train, _ = _split(records)
    mem, templates = Memory.from_records(train), load_templates()
    rec = next(r for r in train if r.task == "NER" and len(r.options) > 2)
    turned = replace(rec, options=list(reversed(rec.options)))
    ask = {order: [[(list(p.options), p.source) for p in record_prompts(r, templates, 2, order, Hints(mem))]
                   for r in (rec, turned)] for order in ("sorted", "schema")}
    assert ask["sorted"][0] == ask["sorted"][1] and ask["sorted"][0][0][0] == sorted(rec.options)[:2]
    assert ask["schema"][0] != ask["schema"][1] and ask["schema"][1][0][0] == turned.options[:2]
    with pytest.raises(ValueError, match="sorted, schema"):
        asked_order(rec.options, "random")


def test_training_with_memory_hints_saves_and_uses_the_memory(tmp_path, capsys, monkeypatch):
    from instructie.cli.main import main as cli_main
    from instructie.config import load_config
    from instructie.data.sources import load_sources, make_instances
    from instructie.hints.memory import training_memory
    from instructie.evaluation.evaluate import reorder_options, scored_records
    from instructie.inference.extractor import Extractor, Schema
    from instructie.prompts.instructions import load_templates

    out = tmp_path / "run"
    cfg_path = tiny_config(tmp_path, out, max_steps=3, save_every=0)
    cfg = load_config(cfg_path, ["hints.memory=true"])
    fold, full = training_memory(load_sources(cfg.data.train), cfg.hints)
    inst = make_instances(load_sources(cfg.data.train), cfg.data, load_templates(None), 0, 0, memory=fold)
    hinted = [i for i in inst if "\nMemory: " in i.source]
    assert hinted and {i.task for i in hinted} <= {"NER", "RE", "EE", "RC"}
    # the training hints do know things (each dataset spread over the folds), not only "None"
    assert sum("\nMemory: None\n" not in i.source for i in hinted) >= len(hinted) // 5
    assert all("\nMemory: " not in i.source for i in inst if i.task not in ("NER", "RE", "EE", "RC"))

    assert cli_main(["train", "--config", str(cfg_path), "--set", "hints.memory=true"]) == 0
    assert json.loads((out / "instructie.json").read_text())["memory_hints"] is True
    assert Memory.load(out / "memory.json").to_json() == full.to_json()

    ex = Extractor.from_pretrained(out, device="cpu")
    assert ex.memory is not None
    text = "EU rejects German call to boycott British lamb ."
    _, _, prompts = ex._plan([("0", text)], ["NER"], Schema(), "en")
    assert prompts and all("\nMemory: EU | organization" in p[2].source for p in prompts if "organization" in p[2].options)
    # A user's own records join the memory (instructie extract --memory FILE).
    ex.remember([Record("u", "mine", "NER", "Zorblax", entities=[Entity("person", "Zorblax", 0, 7)])])
    _, _, prompts = ex._plan([("0", "Zorblax met EU officials .")], ["NER"],
                             Schema(), "en")
    assert any("Memory: Zorblax | person" in p[2].source for p in prompts)

    # Hint-biased decoding (hint_bias.py): instructie test scores each bias asked for, and
    # eval/tune_hint_bias.py picks one on the dev sets and stores it for extraction.
    assert cli_main(["test", "--model", str(out), "--config", str(cfg_path), "--set", "hints.memory=true",
                     "--split", "eval", "--hint-bias", "0", "1e4", "--json", str(tmp_path / "t.json")]) == 0
    rep = json.loads((tmp_path / "t.json").read_text())
    assert set(rep) == {"unconstrained", "unconstrained+hint10000"}
    assert rep["unconstrained"]["summary"] and rep["unconstrained+hint10000"]["summary"]
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "eval"))
    import tune_hint_bias
    tj = tmp_path / "tune.json"
    assert tune_hint_bias.main(["--model", str(out), "--config", str(cfg_path), "--set", "hints.memory=true",
                                "--values", "0", "1e4", "--json", str(tj), "--write-card", "--device", "cpu",
                                "--predictions", str(tmp_path / "p.jsonl")]) == 0
    tune = json.loads(tj.read_text())
    # every bias decoded once, scored at every unhinted-item floor; a (bias, floor) pair chosen per task
    dev = {(float(b), float(f)): v["summary"] for b, d in tune["dev"].items() for f, v in d["floors"].items()}
    assert set(dev) == {(b, f) for b in (0, 1e4) for f in tune["floors"]} and 0.9 in tune["floors"]
    assert set(tune["chosen"]) == set(tune["chosen_floor"]) >= {"NER", "RE", "EE", "RC"}
    assert tune["chosen_floor"]["RC"] == 0  # a classification answer is one label: never left out
    for key, b in tune["chosen"].items():  # each task's own dev sets where it has some, else all of them
        task, _, ds = key.partition("/")
        seen = any(k.split("/")[1] == task for k in dev[(0, 0)])
        options = {k: v for k, v in dev.items() if task != "RC" or not k[1]}
        assert (b, tune["chosen_floor"][key]) == tuple(tune_hint_bias.pick(
            options, {ds} if ds else set(tune["dev_datasets"]), task if seen else None))
    chosen = {t: b for t, b in tune["chosen"].items() if b} or 0.0
    floor = {t: f for t, f in tune["chosen_floor"].items() if f} or 0.0
    assert {"constrained_copy"} <= set(tune["test"]) and (tmp_path / "p.jsonl").exists() == bool(chosen or floor)
    assert (tmp_path / "p.copy.jsonl").exists() == bool(chosen or floor)
    assert (tmp_path / "p.floor.jsonl").exists() == bool(floor) == ("unconstrained+hint+floor" in tune["test"])
    # --option-seed N: the tuned free test again right after it, before the copy-constrained ones (a call cut
    # short keeps it), every record asked with its options in the seeded order, not sorted back as the model's
    # own tests ask them (its card: eval.option_order, sorted by default)
    assert json.loads((out / "instructie.json").read_text())["option_order"] == "sorted"
    asked, orders, real_floors = [], [], tune_hint_bias.evaluate_records

    def spy_floors(model, tokenizer, records, cfg, *args, **kw):
        asked.append([(r.id, tuple(r.options)) for r in records])
        orders.append(cfg.eval.option_order)
        return real_floors(model, tokenizer, records, cfg, *args, **kw)

    tune_hint_bias.evaluate_records = spy_floors
    try:  # one bias to choose from, so the tuned tests run whatever the tiny model does on dev
        assert tune_hint_bias.main(["--model", str(out), "--config", str(cfg_path), "--set", "hints.memory=true",
                                    "--values", "1e4", "--floors", "0", "--json", str(tmp_path / "tune2.json"),
                                    "--device", "cpu", "--predictions", str(tmp_path / "q.jsonl"),
                                    "--option-seed", "1"]) == 0
    finally:
        tune_hint_bias.evaluate_records = real_floors
    assert list(json.loads((tmp_path / "tune2.json").read_text())["test"]) == [
        "unconstrained+hint", "option_seed_1+hint", "constrained_copy+hint", "constrained_copy"]
    assert (tmp_path / "q.options1.jsonl").exists()
    free, shuffled = asked[1], asked[2]  # asked[0]: the dev sweep
    by_id = {r.id: r for r in scored_records(load_sources(load_config(cfg_path, ["hints.memory=true"]).data.test))}
    assert [i for i, _ in shuffled] == [i for i, _ in free]
    assert shuffled == [(i, tuple(reorder_options(by_id[i], 1).options)) for i, _ in free] != free
    assert orders == ["sorted", "sorted", "schema", "sorted", "sorted"]
    tuned = Extractor.from_pretrained(out, device="cpu")
    assert tuned.card.hint_bias == chosen and tuned.card.unhinted_floor == floor
    # instructie test asks the options as the model's card says (sorted), an --option-seed test in its shuffled
    # order, and --option-order or --set eval.option_order as told; a seed with sorted is a clear error
    import instructie.evaluation.evaluate as evaluate_module
    test_orders, real = [], evaluate_module.evaluate_records

    def spy(model, tokenizer, records, cfg, *args, **kw):
        test_orders.append(cfg.eval.option_order)
        return real(model, tokenizer, records, cfg, *args, **kw)

    monkeypatch.setattr(evaluate_module, "evaluate_records", spy)
    for flags in ([], ["--option-seed", "1"], ["--option-order", "schema"], ["--set", "eval.option_order=schema"]):
        assert cli_main(["test", "--model", str(out), "--config", str(cfg_path), "--set", "hints.memory=true",
                         "--split", "eval", "--limit", "2", *flags]) == 0
    assert test_orders == ["sorted", "schema", "schema", "schema"]
    capsys.readouterr()
    assert cli_main(["test", "--model", str(out), "--config", str(cfg_path), "--split", "eval",
                     "--option-seed", "1", "--option-order", "sorted"]) == 2
    assert "--option-seed" in capsys.readouterr().err and len(test_orders) == 4
    assert cli_main(["test", "--model", str(out), "--config", str(cfg_path), "--limit", "0"]) == 2
    assert "--limit is a number of records per dataset (at least 1), got 0" in capsys.readouterr().err
    monkeypatch.setattr(evaluate_module, "evaluate_records", real)
    # instructie test decodes as the model is used: its card's tuned values unless told otherwise
    card = json.loads((out / "instructie.json").read_text())
    (out / "instructie.json").write_text(json.dumps(card | {"hint_bias": {"NER": 1e4}, "unhinted_floor": 0.5}))
    for flags, key in (([], "unconstrained+hintNER=10000+floor0.5"), (["--hint-bias", "0", "--unhinted-floor", "0"],
                                                                     "unconstrained")):
        assert cli_main(["test", "--model", str(out), "--config", str(cfg_path), "--set", "hints.memory=true",
                         "--split", "eval", "--limit", "2", "--json", str(tmp_path / "t.json"), *flags]) == 0
        assert list(json.loads((tmp_path / "t.json").read_text())) == [key]
    # several modes with a dataset-keyed bias: one predictions file each, named after the mode
    (out / "instructie.json").write_text(json.dumps(card | {"hint_bias": {"NER": 1e4, "NER/x": 0}}))
    assert cli_main(["test", "--model", str(out), "--config", str(cfg_path), "--set", "hints.memory=true",
                     "--split", "eval", "--limit", "2", "--constrained", "both", "--unhinted-floor", "0",
                     "--predictions", str(tmp_path / "p.jsonl")]) == 0
    assert sorted(p.name for p in tmp_path.glob("p.*constrained*.jsonl")) == [
        "p.constrained+hintNER=10000,NER_x=0.jsonl", "p.unconstrained+hintNER=10000,NER_x=0.jsonl"]
    (out / "instructie.json").write_text(json.dumps(card))
    from instructie.core.io import ConfigError
    # extraction decodes with a per-task bias from the card (and with one given), hint lines and all
    card = json.loads((out / "instructie.json").read_text())
    (out / "instructie.json").write_text(json.dumps(card | {"hint_bias": {"NER": 1e4}}))
    ex = Extractor.from_pretrained(out, device="cpu")
    import instructie.decoding.generation as generation
    from instructie.hints.bias import HintBiasProcessor
    real, used = generation.generate, []

    def spy(*args, **kw):
        used.append(kw.get("logits_processor_factory"))
        return real(*args, **kw)

    generation.generate = spy
    try:
        text = "EU rejects German call to boycott British lamb ."
        next(ex.extract([text], ["NER"], max_new_tokens=24))
        next(ex.extract([text], ["NER"], max_new_tokens=8, hint_bias=0))
    finally:
        generation.generate = real
    assert used[1] is None  # bias 0 given: plain decoding
    rest = "\nOption: person\nText: EU .\nMemory: EU | organization\nAnswer:"
    enc = ex.tokenizer([ex.templates["NER"][0] + rest, "Say it." + rest], return_tensors="pt", padding=True)
    from instructie.inference.predict import Prompt
    rows = [Prompt(ex.templates["NER"][0] + rest, "NER", ("person",), "EU .", hint=(("EU", "organization"),)),
            Prompt("Say it." + rest, "RE", ("person",), "EU .", hint=(("EU", "organization"),))]
    proc = used[0](enc["input_ids"], enc["attention_mask"], rows)
    assert isinstance(proc, HintBiasProcessor) and proc.bias.tolist() == [1e4, 0.0]  # the card's NER bias
    with pytest.raises(ConfigError, match="hint_bias"):
        next(ex.extract(["EU rejects ."], ["NER"], hint_bias={"NER": -1}))

    (out / "memory.json").unlink()
    from instructie.core.io import ConfigError
    with pytest.raises(ConfigError, match="memory.json is missing"):
        Extractor.from_pretrained(out, device="cpu")


def test_extract_cli_adds_memory_records(tmp_path, tiny_model_dir, capsys):
    from instructie.cli.main import main as cli_main

    doc = tmp_path / "doc.txt"
    doc.write_text("Zorblax met EU officials .", encoding="utf-8")
    mine = tmp_path / "mine.jsonl"
    mine.write_text(json.dumps({"id": "u", "dataset": "mine", "task": "NER", "text": "Zorblax",
                                "entities": [{"label": "person", "text": "Zorblax", "start": 0, "end": 7}]}) + "\n")
    # The tiny model was trained without hints: added records are refused with a clear message.
    assert cli_main(["extract", str(doc), "--model", str(tiny_model_dir), "--memory", str(mine),
                     "-o", str(tmp_path / "o.jsonl"), "--device", "cpu"]) == 2
    assert "trained without memory hints" in capsys.readouterr().err


def test_hint_usage_splits_answers_by_what_the_hint_offered(records):
    """eval/hint_usage.py: kept / dropped hint items and the model's own, each with its precision."""
    import importlib.util
    from dataclasses import asdict
    spec = importlib.util.spec_from_file_location("hint_usage", Path(__file__).resolve().parents[2] / "eval" / "hint_usage.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    test = [r for r in records if r.task == "NER"]
    mem = Memory.from_records([r for r in records if r.split == "train" or r.dataset != "CoNLL2003"])
    rows, hinted = {}, 0
    for k, r in enumerate(test):
        hint = mem.items(r)
        hinted += len(hint)
        keep = hint[: len(hint) // 2] if k % 2 else hint  # odd records: drop the second half of the hint
        ents = [Entity(lab, text) for text, lab in keep] + [Entity(r.options[0], "not a span here")]
        rows[r.id, r.task] = {"entities": [asdict(e) for e in ents], "relations": [], "events": [], "labels": []}
    rep = mod.usage(test, rows, mem)
    kept = sum(len(mem.items(r)) if k % 2 == 0 else len(mem.items(r)) // 2 for k, r in enumerate(test))
    tot = {key: sum(v[key] for v in rep.values()) for key in ("hint_items", "kept", "dropped", "not_hinted")}
    assert hinted > 0 and tot == {"hint_items": hinted, "kept": kept, "dropped": hinted - kept, "not_hinted": len(test)}
    assert all(v["not_hinted_precision"] == 0.0 for v in rep.values())  # the invented span is never gold
    # the hint's own precision: its right items over all of them, per dataset
    for ds, v in rep.items():
        rs = [r for r in test if r.dataset == ds]
        right = sum(len(set(mem.items(r)) & {(e.text, e.label) for e in r.entities}) for r in rs)
        assert v["hint_precision"] == (round(right / v["hint_items"], 4) if v["hint_items"] else None)

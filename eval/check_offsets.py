"""Check an `instructie extract --per-line` output against its input: every returned span
(entities, relation heads/tails, event triggers/arguments) must equal text[start:end] of its
document (document ids are 1-based line numbers).

    python eval/check_offsets.py INPUT.txt OUTPUT.jsonl
"""
import json
import sys
from collections import Counter


def main(src: str, out: str) -> int:
    with open(src, encoding="utf-8") as f:
        docs = [line.rstrip("\n") for line in f]
    counts, bad = Counter(), []
    with open(out, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            text = docs[int(rec["id"]) - 1]
            for kind in ("entities", "relations", "events"):
                for item in rec.get(kind, []):
                    counts[kind] += 1
                    spans = ([item] if kind == "entities" else [item["head"], item["tail"]] if kind == "relations"
                             else [item["trigger"], *item.get("arguments", [])])
                    for s in spans:
                        counts["spans"] += 1
                        if text[s["start"]:s["end"]] != s["text"]:
                            bad.append((rec["id"], s))
            counts["documents"] += 1
    print(f"{out}: {counts['documents']} documents, {counts['entities']} entities, {counts['relations']} relations, "
          f"{counts['events']} events; {counts['spans']} spans, {len(bad)} not equal to text[start:end]")
    for doc_id, s in bad[:10]:
        print(f"  document {doc_id}: {s}")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))

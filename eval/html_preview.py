"""The extraction page (`instructie extract --html`) for the fixture texts, with their gold items drawn as if a
model had extracted them: an English page (CoNLL2003 entities, three sentences a document) and a Chinese one
(DuIE relations with their entities, DuEE events), each ending with a document where nothing was found.
Every label, role and colour path of the page is exercised without a trained model.

    python eval/html_preview.py OUTDIR      ->  OUTDIR/preview_en.html, OUTDIR/preview_zh.html
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"


def records():
    from instructie.config import DatasetConfig
    from instructie.data.sources import load_records

    out = [r for s in ("train", "dev", "test")
           for r in load_records(DatasetConfig("ie_instructions", str(FIX / "ie_instructions"), split=s))]
    out += load_records(DatasetConfig("duie", str(FIX / "duie" / "duie_train_excerpt.json"),
                                      options={"schema": str(FIX / "duie" / "duie_schema.json")}))
    return out


def documents(recs, name: str, language: str, per_doc: int, n_docs: int):
    """Consecutive records joined into documents, their gold items shifted to document offsets."""
    from instructie.inference.extractor import Document, EventItem, RelationItem, Span

    def span(x, label, shift):
        return Span(x.text, label, None if x.start is None else x.start + shift,
                    None if x.end is None else x.end + shift, 1.0)

    docs = []
    for k in range(0, min(len(recs), per_doc * n_docs), per_doc):
        d = Document(f"{name}-{k // per_doc + 1}", "", language)
        for r in recs[k:k + per_doc]:
            if d.text:  # a space between English sentences; a full stop after a Chinese one that has none
                d.text += " " if language == "en" else ("" if d.text.endswith(("。", "！", "？")) else "。")
            shift = len(d.text)
            d.text += r.text
            d.sentences.append((shift, shift + len(r.text)))
            d.entities += [span(e, e.label, shift) for e in r.entities]
            for rel in r.relations:
                d.entities += [span(rel.head, rel.head.label, shift), span(rel.tail, rel.tail.label, shift)]
                d.relations.append(RelationItem(span(rel.head, "head", shift), rel.label,
                                                span(rel.tail, "tail", shift), 1.0))
            d.events += [EventItem(v.type, span(v.trigger, v.type, shift),
                                   [span(a, a.role, shift) for a in v.arguments], 1.0) for v in r.events]
        d.entities = sorted({(e.start, e.end, e.label): e for e in d.entities}.values(), key=lambda e: (e.start, e.end))
        docs.append(d)
    return docs


def main(out: Path) -> None:
    from instructie.cli.extract import write_html
    from instructie.inference.extractor import Document

    out.mkdir(parents=True, exist_ok=True)
    recs = records()
    conll = [r for r in recs if r.dataset == "CoNLL2003" and r.entities]
    duie = [r for r in recs if r.dataset == "duie" and r.relations]
    duee = [r for r in recs if r.dataset == "DuEE" and r.events]
    en = documents(conll, "conll2003", "en", 3, 3)
    en.append(Document("en-nothing", "The weather was mild and nothing else happened that day.", "en",
                       sentences=[(0, 56)]))
    zh = documents(duie, "duie", "zh", 2, 2) + documents(duee, "duee", "zh", 2, 2)
    zh.append(Document("zh-nothing", "今天天气很好，什么也没有发生。", "zh", sentences=[(0, 15)]))
    write_html(str(out / "preview_en.html"), en)
    write_html(str(out / "preview_zh.html"), zh)
    print(f"wrote {out / 'preview_en.html'} ({len(en)} documents), {out / 'preview_zh.html'} ({len(zh)} documents)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(Path(sys.argv[1]))

"""Write two real documents for the extraction demo: English (CoNLL2003 test sentences)
and Chinese (DuIE dev texts), one document per line.  python eval/demo_docs.py DATA OUTDIR"""
import json
import sys
from pathlib import Path

data, out = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
conll = json.loads((data / "ie_instructions/NER/CoNLL2003/test.json").read_text())
en = [" ".join(r["sentence"] for r in conll[i : i + 5]) for i in range(0, 200, 5)]
(out / "news_en.txt").write_text("\n".join(en) + "\n", encoding="utf-8")
zh = [json.loads(line)["text"] for line in (data / "duie/duie_dev.json").read_text(encoding="utf-8").splitlines()[:120]]
(out / "news_zh.txt").write_text("\n".join("。".join(zh[i : i + 3]) for i in range(0, 120, 3)) + "\n", encoding="utf-8")

#!/usr/bin/env bash
# Screenshots of the extraction page (`instructie extract --html`) in headless Chromium: the English and
# Chinese pages of eval/html_preview.py (the fixtures' gold items drawn as extracted), and with a MODEL the
# page `instructie extract` writes with it for a few English and Chinese fixture texts. Needs chromium
# (apt-get install chromium; fonts-noto-cjk for Chinese glyphs) and the spacy extra.
#     eval/screenshot_html.sh OUTDIR [MODEL]      ->  OUTDIR/*.html and one OUTDIR/*.png each
set -euo pipefail
out=${1:?usage: eval/screenshot_html.sh OUTDIR [MODEL]}
model=${2:-}
python=${PYTHON:-python3}
cd "$(dirname "$0")/.."
mkdir -p "$out"
"$python" eval/html_preview.py "$out"
if [ -n "$model" ]; then
    "$python" - "$out/model_docs.txt" <<'PY'
import json, sys
conll = json.load(open("tests/fixtures/ie_instructions/NER/CoNLL2003/test.json", encoding="utf-8"))
duie = [json.loads(l)["text"] for l in open("tests/fixtures/duie/duie_train_excerpt.json", encoding="utf-8")]
lines = [" ".join(r["sentence"] for r in conll[i:i + 3]) for i in range(0, 9, 3)] + ["。".join(duie[i:i + 2]) for i in (0, 2, 4)]
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(lines) + "\n")
PY
    "$python" -m instructie extract "$out/model_docs.txt" --per-line --model "$model" -o "$out/model_docs.jsonl" \
        --html "$out/model_docs.html"
fi
chrome=$(command -v chromium || command -v chromium-browser || command -v google-chrome)
for page in "$out"/*.html; do
    profile=$(mktemp -d)
    "$chrome" --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --hide-scrollbars --window-size=1100,3000 \
        --user-data-dir="$profile" --screenshot="${page%.html}.png" "file://$(realpath "$page")" 2>/dev/null
    rm -rf "$profile"
    echo "${page%.html}.png"
done

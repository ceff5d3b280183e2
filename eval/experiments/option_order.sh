#!/usr/bin/env bash
# In one call on the GPU machine: does a model's answer depend on the order of the labels in its prompt?
# Trains the config's recipe for a short schedule (STEPS steps, default 600: what fits one 10-minute call with two
# tests), lets training's own test decode the test splits in schema order, then decodes them again with each
# record's options shuffled by seed 1 (and seed 2 if the call has time left). Greedy, hint bias 0: the model alone.
# Run from the repository root on the GPU machine, with the wheels (.whl) and the data (.devdata) beside it:
#
#   bash eval/experiments/option_order.sh NAME [KEY.PATH=VALUE ...]
#
# $OUT gets NAME_train.log, NAME_metrics.json, NAME_seedN.json / .log and the prediction files in one archive,
# NAME_predictions.tgz (a call returns at most 8 files), which eval/bootstrap_vs_baseline.py --against
# compares record by record.
set -u -o pipefail
name=${1:?usage: bash eval/experiments/option_order.sh NAME [KEY.PATH=VALUE ...]}
shift
source eval/device_env.sh || exit 1
steps=${STEPS:-600}
call_s=${CALL_S:-580}
cfg=${CFG:-configs/multitask-small.yaml}
# eval.option_order=schema: training's own test asks each record's options as the record lists them (the
# default, sorted, would make this the order compared with the shuffled one)
sets=(--set "train.max_steps=$steps" --set "train.warmup_steps=$(( steps / 4 ))" --set 'data.eval=[]'
      --set train.eval_every=0 --set eval.option_order=schema)
for kv in "$@"; do sets+=(--set "$kv"); done
run=runs/$name
python3 -m instructie train --config "$cfg" --output-dir "$run" --overwrite "${sets[@]}" \
    --max-time $(( call_s - 260 )) > "$OUT/${name}_train.log" 2>&1
rc=$?
echo "option_order: training exited $rc after $SECONDS s"
if [ ! -f "$run/test_predictions.jsonl" ]; then
    echo "option_order: no test predictions (the schedule did not fit): the log ends:"; tail -c 1500 "$OUT/${name}_train.log"
    exit 1
fi
cp "$run/metrics.json" "$OUT/${name}_metrics.json"
preds=/tmp/${name}_predictions; mkdir -p "$preds"
gzip -c "$run/test_predictions.jsonl" > "$preds/${name}_test_predictions.jsonl.gz"
for seed in 1 2; do
    left=$(( call_s - SECONDS ))
    if [ "$left" -lt 130 ]; then echo "option_order: ${left} s left: no test with option seed $seed"; break; fi
    timeout -k 10 $(( left - 10 )) python3 -m instructie test --model "$run" --config "$cfg" "${sets[@]}" \
        --option-seed "$seed" --json "$OUT/${name}_seed$seed.json" --predictions "$preds/${name}_seed$seed.jsonl" \
        > "$OUT/${name}_seed$seed.log" 2>&1 || { echo "option_order: the seed-$seed test did not finish"; break; }
    gzip "$preds/${name}_seed$seed.jsonl"
    echo "option_order: seed $seed tested after $SECONDS s"
done
tar -czf "$OUT/${name}_predictions.tgz" -C "$preds" .

#!/usr/bin/env bash
# Training speed of variants of the multi-task recipe, on the GPU machine, one process after the other in
# one call (so each ratio is against a baseline measured on the same machine): `instructie train` from random
# init for SECONDS of training each, no dev or test sets, the loss logged every 10 steps; then the steady rate
# from the logged history (eval/experiments/steps_per_second.py: the last half of the logged steps, so a compile's first
# steps are left out).
#
#   bash eval/experiments/throughput_probe.sh NAME SECONDS [KEY.PATH=VALUE ...] [-- NAME SECONDS [KEY.PATH=VALUE ...] ...]
#   e.g. bash eval/experiments/throughput_probe.sh small 80 -- base 150 model.size=base train.max_batch_tokens=20480
#
# Writes $OUT/probe_NAME.log and $OUT/probe_NAME_state.json (the checkpoint's trainer_state.json), and prints
# one line per variant. CFG picks the config (default configs/multitask-small.yaml). Carry .whl and .devdata.
set -u -o pipefail
source eval/device_env.sh || exit 1  # environment, the machine's age (eval/gpu_run.sh), wheels
cfg=${CFG:-configs/multitask-small.yaml}
out=${OUT:-/tmp/probe_out}
mkdir -p "$out"
probe() {  # NAME SECONDS [KEY=VALUE ...]
    local name=$1 secs=$2; shift 2
    local sets=(--set train.eval_every=0 --set 'data.test=[]' --set 'data.eval=[]' --set train.log_every=10
                --set train.save_every=0)
    for kv in "$@"; do sets+=(--set "$kv"); done
    local start=$SECONDS
    python3 -m instructie train --config "$cfg" --output-dir "runs/probe-$name" --overwrite "${sets[@]}" \
        --max-time "$secs" > "$out/probe_$name.log" 2>&1
    local rc=$? state
    state=$(ls -d runs/probe-"$name"/checkpoints/step-* 2>/dev/null | sort -V | tail -1)  # same prefix: by step number
    if [ -z "$state" ]; then
        echo "probe $name: no checkpoint (exit $rc); the log ends:"; tail -c 1500 "$out/probe_$name.log"; return
    fi
    cp "$state/trainer_state.json" "$out/probe_${name}_state.json"
    echo "probe $name ($* ): $(python3 eval/experiments/steps_per_second.py "$state/trainer_state.json"); process $(( SECONDS - start )) s"
    rm -rf "runs/probe-$name"
}
args=()
for a in "$@" --; do
    if [ "$a" = -- ]; then
        [ ${#args[@]} -ge 2 ] && probe "${args[@]}"
        args=()
    else
        args+=("$a")
    fi
done

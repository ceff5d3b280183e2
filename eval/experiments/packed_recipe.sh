#!/usr/bin/env bash
# The multi-task T5-small recipe (configs/multitask-small.yaml) trained on packed, compiled rows on one GPU
# machine, over three 10-minute calls chained at once (eval/gpu_run.sh's stages; carry .whl and .devdata):
#
#   bash eval/experiments/packed_recipe.sh NAME 1 [KEY.PATH=VALUE ...]   # (a) CHECK_S s (default 240) of the recipe as recorded, its
#                                                   #     4,400-step schedule, packed: the loss curve to set beside
#                                                   #     the unpacked run's (eval/loss_curves.py);
#                                                   # (b) its steady steps/s sizes the run NAME on the same recipe,
#                                                   #     packed, to fill this call's rest plus two more calls; it
#                                                   #     starts here (eval/gpu_run.sh stage 1)
#   bash eval/experiments/packed_recipe.sh NAME 2 [...]   # eval/gpu_run.sh stage 2 (TRAIN_S, default 440)
#   bash eval/experiments/packed_recipe.sh NAME 3 [...]   # stage 3: the end of training (~200 s) and the test
#                                                   #     (CALL_S, default 560; TUNE as for eval/gpu_run.sh)
#
# The overrides go to the check and to every stage of NAME alike.
# Returns $OUT/check_1.log and $OUT/check_state.json (the check's loss history), $OUT/NAME_plan.txt (the rate and
# the steps chosen), and what eval/gpu_run.sh returns.
set -u -o pipefail
name=${1:?usage: bash eval/experiments/packed_recipe.sh NAME 1|2|3 [KEY.PATH=VALUE ...]} stage=${2:?stage 1, 2 or 3}
shift 2
# 26 rows of 1024/128 tokens hold ~125 examples (4.8 a row): the recipe's 128-example batches
packed=(train.packing=true train.pack_source_length=1024 train.pack_target_length=128 train.batch_size=26
        train.compile=true "$@")
steps_file=/tmp/instructie_packed_steps
if [ "$stage" != 1 ]; then
    [ -f "$steps_file" ] || { echo "packed_recipe: no $steps_file on this machine: start at stage 1"; exit 1; }
    [ "$stage" = 2 ] && export TRAIN_S=${TRAIN_S:-440}
    [ "$stage" = 3 ] && export CALL_S=${CALL_S:-560}
    exec bash eval/gpu_run.sh "$name" "$stage" "${packed[@]}" "train.max_steps=$(cat $steps_file)"
fi
start=$SECONDS
TRAIN_S=${CHECK_S:-240} bash eval/gpu_run.sh check 1 "${packed[@]}" train.max_steps=4400 train.eval_every=0 \
    train.save_every=0
state=$(ls -d runs/check/checkpoints/step-* 2>/dev/null | sort -V | tail -1)
[ -n "$state" ] || { echo "packed_recipe: the check left no checkpoint"; exit 1; }
cp "$state/trainer_state.json" "$OUT/check_state.json"
rate=$(python3 -c "import json,sys; sys.path.insert(0, 'eval/experiments'); from steps_per_second import steady_rate
print(steady_rate(json.load(open('$state/trainer_state.json'))['history'])['steps_per_s'])") || exit 1
# seconds of training: this call's rest less a process start (~80 s), stage 2's 440 and ~200 of stage 3 (whose
# other ~360 s hold the test and the tuning); evaluations and saves take ~8% of the steady rate
first=$(( ${CALL_S:-560} - (SECONDS - start) - 80 ))
[ "$first" -ge 60 ] || { echo "packed_recipe: only $first s of this call left for training: lower CHECK_S"; exit 1; }
steps=$(python3 -c "print(int($rate * 0.92 * ($first + 440 + 200)) // 50 * 50)")
echo "$steps" > "$steps_file"
echo "check: $rate steps/s steady; $name: $steps steps, stage 1 trains $first s" | tee "$OUT/${name}_plan.txt"
TRAIN_S=$first MACHINE_AGE_S=100000 bash eval/gpu_run.sh "$name" 1 "${packed[@]}" "train.max_steps=$steps"

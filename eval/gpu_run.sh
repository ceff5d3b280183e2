#!/usr/bin/env bash
# One training run of a config on a GPU machine that runs commands of at most 10 minutes, over three such
# calls joined by --resume; what comes back lands in $OUT (at most 8 files a call: the prediction
# files of stage 3 come as one archive, NAME_predictions.tgz).
# Run from the repository root there, with the wheels (.whl) and the data (.devdata) copied beside it:
#
#   bash eval/gpu_run.sh NAME p                        # instructie pretrain (PCFG, default
#                                                     # configs/pretrain-small.yaml; PSTEPS steps) into
#                                                     # runs/NAME-pretrain for TRAIN_S s; then stage 1 with
#                                                     # model.name_or_path=runs/NAME-pretrain model.init=pretrained
#   bash eval/gpu_run.sh NAME 1 [KEY.PATH=VALUE ...]   # fresh run, trains TRAIN_S s (default 450)
#   bash eval/gpu_run.sh NAME 2 [KEY.PATH=VALUE ...]   # --resume, trains TRAIN_S s (default 490)
#   bash eval/gpu_run.sh NAME 3 [KEY.PATH=VALUE ...]   # --resume for up to CALL_S - 200 s (default 560):
#                                                     # the end and the test, then the copy-constrained
#                                                     # test if time is left (with TUNE set: the hint-bias
#                                                     # tuning instead, eval/tune_hint_bias.py, its value
#                                                     # the dev-set overrides, and with OPTSEED=N its test
#                                                     # with options shuffled by seed N, after the tuned
#                                                     # free test; TUNE_ARGS: more tuning arguments); if the
#                                                     # steps did not fit,
#                                                     # it saved a checkpoint: call stage 3 again
#
# Chain the calls at once: the machine is given back after 30 s idle, and runs/NAME with it (stage 2 and 3
# then stop with a line saying so instead of training afresh). It also goes back 30 minutes after it started,
# mid-run or not, and three calls take ~28 of them: stage p, and stage 1 unless it follows stage p on the same
# machine, refuse a machine first used by this script more than MACHINE_AGE_S (default 300) seconds ago (give
# it back and start on a fresh one; MACHINE_AGE_S=100000 overrides): a run begun late loses its machine mid-run.
# Each call's returned files copied into FETCHED/call1, call2, call3: `python eval/collect_run.py NAME FETCHED` files
# them under eval/runs/multitask-small-NAME.
# CFG picks the config (default configs/multitask-small.yaml); the KEY.PATH=VALUE overrides go to every stage
# alike. The last lines printed say what happened; the exit status is training's (3: time budget reached,
# checkpoint saved).
set -u -o pipefail
name=${1:?usage: bash eval/gpu_run.sh NAME p|1|2|3 [KEY.PATH=VALUE ...]} stage=${2:?stage p, 1, 2 or 3}
shift 2
source eval/device_env.sh || exit 1  # environment, $machine_age, wheels
max_age=${MACHINE_AGE_S:-300}
case $max_age in ''|*[!0-9]*) echo "gpu_run: MACHINE_AGE_S must be a number of seconds, got '$max_age'"; exit 1 ;; esac
case ${OPTSEED:-0} in ''|*[!0-9]*) echo "gpu_run: OPTSEED must be a whole number (a seed), got '$OPTSEED'"; exit 1 ;; esac
echo "gpu_run: machine first used by these scripts ${machine_age} s ago (init started $(ps -o etimes= -p 1 2>/dev/null | tr -d ' ') s ago)"
# stage 1 after stage p on this machine (the pretrained model lives only here) is the same run going on
if { [ "$stage" = p ] || { [ "$stage" = 1 ] && [ ! -d "runs/$name-pretrain" ]; }; } && [ "$machine_age" -gt "$max_age" ]; then
    echo "gpu_run: this machine was first used ${machine_age} s ago and goes back 30 minutes after it started, mid-run" \
         "or not: give it back (give_back) and start stage $stage on a fresh one (or MACHINE_AGE_S=100000 to go on)"
    exit 1
fi
cfg=${CFG:-configs/multitask-small.yaml}
sets=()
for kv in "$@"; do sets+=(--set "$kv"); done
run=runs/$name
if [ "$stage" != 1 ] && [ "$stage" != p ] && ! ls "$run"/checkpoints/step-* >/dev/null 2>&1; then
    echo "gpu_run: $run has no checkpoint on this machine (given back since the last call, or stage 1 failed): start at stage 1"
    exit 1
fi
start=$SECONDS
train=(python3 -m instructie train --config "$cfg" --output-dir "$run" ${sets[@]+"${sets[@]}"})
case $stage in
    p) log=$OUT/${name}_p.log
       python3 -m instructie pretrain --config "${PCFG:-configs/pretrain-small.yaml}" --output-dir "$run-pretrain" \
           ${PSTEPS:+--max-steps "$PSTEPS"} --max-time "${TRAIN_S:-450}" > "$log" 2>&1 ;;
    1) log=$OUT/${name}_1.log; "${train[@]}" --max-time "${TRAIN_S:-450}" > "$log" 2>&1 ;;
    2) log=$OUT/${name}_2.log; "${train[@]}" --resume --max-time "${TRAIN_S:-490}" > "$log" 2>&1 ;;
    3) log=$OUT/${name}_3.log
       # --max-time leaves ~200 s for start-up and the test; timeout is the backstop if the test runs long
       timeout -k 10 $(( ${CALL_S:-560} - 15 )) "${train[@]}" --resume --max-time $(( ${CALL_S:-560} - 200 )) \
           > "$log" 2>&1 ;;
    *) echo "gpu_run: stage must be p, 1, 2 or 3"; exit 1 ;;
esac
rc=$?
if [ "$stage" = 3 ] && [ $rc = 0 ]; then
    for f in metrics.json training.png; do [ -f "$run/$f" ] && cp "$run/$f" "$OUT/${name}_$f"; done
    # the prediction files (each scorable later: eval/bootstrap_vs_baseline.py) travel as one archive: 8 files a call at most
    preds=$run/predictions; mkdir -p "$preds"
    [ -f "$run/test_predictions.jsonl" ] && cp "$run/test_predictions.jsonl" "$preds/${name}_test_predictions.jsonl"
    left=$(( ${CALL_S:-560} - (SECONDS - start) ))
    if [ -n "${TUNE:-}" ] && [ "$left" -gt 120 ]; then
        # TUNE="DEV_SET_OVERRIDES": pick the hint bias and unhinted floor on dev (eval/tune_hint_bias.py), test
        # with them, and copy-constrained at 0
        tsets=()
        for kv in $TUNE; do tsets+=(--set "$kv"); done
        # TUNE_ARGS: more tune_hint_bias.py arguments (fewer --values for a slower model, e.g. "--values 0 4 16")
        targs=(${TUNE_ARGS:-})
        # OPTSEED=N: the tuned free test again with each record's options shuffled by seed N,
        # right after the tuned free test, before the copy-constrained tests
        [ -n "${OPTSEED:-}" ] && targs+=(--option-seed "$OPTSEED")
        timeout -k 10 $(( left - 10 )) python3 eval/tune_hint_bias.py --model "$run" --config "$cfg" \
            ${sets[@]+"${sets[@]}"} ${tsets[@]+"${tsets[@]}"} ${targs[@]+"${targs[@]}"} --write-card --json "$OUT/${name}_hint_bias.json" \
            --predictions "$preds/${name}_test_hint_predictions.jsonl" > "$OUT/${name}_hint_bias.log" 2>&1 \
            || echo "gpu_run: the hint-bias tuning did not finish (exit $?)"
        grep -a "chosen bias" "$OUT/${name}_hint_bias.log"
    elif [ "$left" -gt 120 ]; then
        timeout -k 10 $(( left - 10 )) python3 -m instructie test --model "$run" --config "$cfg" --constrained copy \
            --json "$OUT/${name}_test_copy.json" --predictions "$preds/${name}_test_copy_predictions.jsonl" \
            ${sets[@]+"${sets[@]}"} > "$OUT/${name}_test_copy.log" 2>&1 \
            || echo "gpu_run: the copy-constrained test did not finish (exit $?)"
    fi
    tar -czf "$OUT/${name}_predictions.tgz" -C "$preds" . && ls "$preds"
fi
grep -aoh "eval at step [0-9]*: [^\]*\|time budget reached[^\]*\|saved model[^\]*" "$log" | tail -4
if [ $rc != 0 ] && [ $rc != 3 ]; then
    echo "gpu_run: training exited with $rc; the log ends:"
    tail -c 1500 "$log"
fi
echo "gpu_run: stage $stage took $(( SECONDS - start )) s"
exit $rc

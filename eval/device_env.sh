# Sourced (`source eval/device_env.sh || exit 1`) by eval/gpu_run.sh and eval/experiments/*.sh on the GPU
# machine, from the repository root, with .whl carried: the environment of a run there, the machine's age, and
# the wheels the GPU image lacks.
export PYTHONPATH=/tmp/site:${PYTHONPATH:-} INSTRUCTIE_DATA=.devdata PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
# The machine's age: a machine's /tmp starts empty, and the first call of a script that sources this file leaves
# the time there. It does not see calls of other commands before it, so it can under-count; init's age (ps,
# gpu_run.sh prints it for comparison) is the machine's own clock if init starts with it.
machine_since=/tmp/instructie_machine_since
grep -qx '[0-9]\+' "$machine_since" 2>/dev/null || date +%s > "$machine_since"
machine_age=$(( $(date +%s) - $(cat "$machine_since") ))
# the GPU image lacks datasets and seqeval: install the carried wheels (once per machine)
python3 -c "import datasets, seqeval" 2>/dev/null || python3 -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || return 1
# the package itself, installed from this checkout (its readers install as instructie.data_adapters)
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >/dev/null 2>&1 || return 1

#!/usr/bin/env bash
# The GPU figures of issue 21 in one short call on a lent GPU machine (docs/install.md, GPU).
#
#   bash scripts/gpu_check.sh prepare   # here, with PyPI: wheels into .whl/, GL libraries into .gl/
#   bash scripts/gpu_check.sh run       # there: tests and benches, results under $OUT
#   bash scripts/gpu_check.sh run tf32 mjx   # only the steps named (to rerun one that failed)
#
# The GPU machine has Python 3.12 with torch, jax (CUDA) and numpy but no MuJoCo, gymnasium or
# network, so `prepare` downloads what the learner and the sims need besides (about 40 MB) and
# the EGL/GL libraries for offscreen rendering; both travel as carried folders. `run` gives
# each step its own time limit inside GPU_CHECK_SECONDS (default 540) so the whole call fits
# the device budget (15 minutes, the machine's start included), the two targets first:
# updates/s against the GPU's GEMM rate, and PickCubeVision to 90% within 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=(tests fp32 suite tf32 mjx host-replay)  # `run`'s steps, in its default order: targets first

prepare() {
    set -e
    grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
    grep -qx "/.gl/" .git/info/exclude 2>/dev/null || echo "/.gl/" >> .git/info/exclude
    rm -rf .whl && mkdir -p .whl
    # Exact pairs: sim/mjx needs mujoco == mujoco-mjx; the rest are what `import robot_rl`
    # and the envs need that the GPU image lacks (its list: device KINDS.md).
    local wheels=(mujoco==3.17.0 mujoco-mjx==3.17.0 gymnasium==1.2.2 farama-notifications==0.0.6
                  glfw==2.11.0 pyopengl==3.1.10 trimesh==5.2.0 websockets==15.0.1
                  importlib-resources==6.5.2)
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
        -d .whl "${wheels[@]}"
    rm -rf .gl && mkdir -p .gl /tmp/amd64/partial
    local o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
    apt-get "${o[@]}" update -qq
    (cd .gl && apt-get "${o[@]}" download -qq libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
    du -sh .whl .gl
    echo 'next: the device tool, carry [".whl", ".gl"], command "bash scripts/gpu_check.sh run"'
}

run() {
    local steps=("$@")
    [ ${#steps[@]} -eq 0 ] && steps=("${STEPS[@]}")
    for s in "${steps[@]}"; do
        [[ " ${STEPS[*]} " == *" $s "* ]] || { echo "unknown step $s; the steps: ${STEPS[*]}" >&2; return 2; }
    done
    local out="${OUT:-runs/gpu_check}" budget="${GPU_CHECK_SECONDS:-540}"
    local py="${PYTHON:-python3}" device="${GPU_CHECK_DEVICE:-cuda}" start=$SECONDS
    mkdir -p "$out"
    exec > >(tee -a "$out/log.txt") 2>&1
    # Carried GL libraries and wheels, each only where the machine lacks them.
    if [ -d .gl ] && ! ldconfig -p | grep -q libEGL.so.1; then  # EGL for offscreen MuJoCo
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    if [ -d .whl ] && ! "$py" -c "import mujoco, gymnasium" 2>/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site .whl/*.whl || exit 1
        export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    "$py" setup.py -q build_ext --inplace  # the C impedance kernel, beside its source
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=egl PYTHONUNBUFFERED=1
    nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
    "$py" -c "import torch, mujoco; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'mujoco', mujoco.__version__)"

    step() {  # step NAME SECONDS CMD...: run CMD for at most SECONDS (or what is left)
        local name=$1 limit=$2; shift 2
        local left=$((budget - (SECONDS - start)))
        [ "$limit" -gt "$left" ] && limit=$left
        if [ "$limit" -lt 15 ]; then echo "== $name: not run (time budget spent)"; return; fi
        echo "== $name (at most ${limit} s)"
        timeout --signal=INT --kill-after=10 "$limit" "$@"
        echo "== $name: exit $? after $((SECONDS - start)) s in all"
    }
    local cli=("$py" -m robot_rl.cli bench learn --device "$device")
    for s in "${steps[@]}"; do case $s in
        tests) step "CUDA tests" 60 "$py" -m pytest -q -p no:cacheprovider tests/robot_rl/test_cuda.py ;;
        fp32) step "updates/s vs GEMM, fp32" 120 "${cli[@]}" --task throughput \
            --json "$out/learn_cuda.json" ;;
        tf32) step "updates/s vs GEMM, TF32" 120 "${cli[@]}" --task throughput \
            --json "$out/learn_cuda_tf32.json" train.matmul_precision=high ;;
        host-replay) step "updates/s, replay frames on the host" 120 "${cli[@]}" --task throughput \
            --json "$out/learn_cuda_host_replay.json" train.replay_on_device=false ;;
        mjx) step "MJX on the GPU" 120 "$py" -m robot_rl.cli bench mjx --json "$out/mjx_cuda.json" ;;
        suite)
            step "PickCubeVision to 90%" 330 "${cli[@]}" --task suite --seeds 1 \
                --envs robot_rl/PandaPickCubeVision-v0 --runs-dir /tmp/gpu_runs \
                --json "$out/suite_cuda.json"
            # its eval curve, also when the step's limit stopped the run short of 90%
            cp /tmp/gpu_runs/suite_PandaPickCubeVision_seed0/metrics.jsonl \
                "$out/suite_cuda_metrics.jsonl" 2>/dev/null || true ;;
    esac; done
}

case "${1:-}" in
    prepare) prepare ;;
    run) shift; run "$@" ;;
    *) echo "usage: $0 prepare | run [${STEPS[*]}]" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# The GPU checks in one run: the CUDA tests and the CUDA speed benchmark.
#
# Meant for one call of the project's device machine, whose python3 has torch with
# CUDA, scikit-learn, pandas, accelerate and pytest but not skorch. Prepare here,
# from the repository root (both folders are ignored by git; name them in `carry`):
#
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux2014_x86_64 -d .whl skorch==1.4.0
#   mkdir -p .gpu_data && cp -r ../shared/data/music_genres .gpu_data/   # a data home for SKANNOT_DATA
#
# then run `bash tools/gpu_check.sh` there with carry [".whl", ".gpu_data"] and a
# timeout of about 540 s. Everything it prints also lands in $OUT (or ./gpu_check_out):
# nvidia-smi.txt, versions.txt, tests.txt, speed.txt. Record the numbers in
# docs/performance.md ("GPU"). The exit status is non-zero if a test or the
# benchmark failed.
#
# SKANNOT_GPU_CHECK_DEVICE=cpu runs the same steps on the CPU (a dry run of this script).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_check_out}
mkdir -p "$out"
device=${SKANNOT_GPU_CHECK_DEVICE:-cuda}
export PYTHONUNBUFFERED=1 SKANNOT_TEST_DEVICE=$device

if ! python3 -c "import skorch" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl ||
        { echo "skorch is missing and no wheel in .whl/ (see the header)"; exit 2; }
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

status=0
nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || echo "no nvidia-smi" >"$out/nvidia-smi.txt"
python3 - <<'EOF' 2>&1 | tee "$out/versions.txt"
import sklearn, skorch, torch
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"torch {torch.__version__}, {gpu}, skorch {skorch.__version__}, scikit-learn {sklearn.__version__}")
EOF

# The GPU tests (tests/test_gpu.py: annot-mix, every estimator of the family, weights, early stopping,
# annotator features) and the persistence tests, whose GPU test needs CUDA.
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_persistence.py 2>&1 |
    tee "$out/tests.txt" || status=1

# The speed benchmark on the device: Music Genres (paper settings) and the annotator scaling.
SKANNOT_DATA=.gpu_data timeout 240 python3 benchmarks/speed.py --device "$device" --threads 0 \
    --parts music,annotators --runs 3 --scaling-runs 1 2>&1 | tee "$out/speed.txt" || status=1

echo "gpu_check finished with status $status"
exit $status

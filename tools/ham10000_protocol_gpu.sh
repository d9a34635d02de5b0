#!/usr/bin/env bash
# The HAM10000 searched-vs-random protocol on one GPU, as one command (docs/distributed.md,
# "The HAM10000 protocol on a GPU"). From the repository root, with data/HAM10000 laid out:
#
#   tools/ham10000_protocol_gpu.sh [WORKERS] [OUT]          # default 6 workers, runs/suite-ham10000-gpu
#   tools/ham10000_protocol_gpu.sh --dry-run                # the same pipeline on the CPU in minutes
#
# WORKERS processes share the GPU (a search step uses a fraction of a large GPU); each claims the
# next unfinished run of experiments/suite_ham10000_gpu.yaml (searches first). At the end the
# report, report_stats.csv, ranking.csv and every run's summary.json and per_image.csv are packed
# into OUT/results.tar.gz (OUT = $OUT/skipnas if the environment names an output folder $OUT).
# --dry-run rewrites the suite to 32 px, 1 epoch, 120 images, 2 random genotypes, on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
NAS=${NAS:-nas}
command -v "$NAS" >/dev/null || NAS=".venv/bin/nas"
PY="$(dirname "$(command -v "$NAS")")/python"   # the interpreter nas runs on (has torch)
[ -x "$PY" ] || PY=python3
SUITE=experiments/suite_ham10000_gpu.yaml
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
WORKERS=${1:-6}
RESULTS=${2:-runs/suite-ham10000-gpu}
if [ -n "${OUT:-}" ] && [ -z "${2:-}" ]; then RESULTS="$OUT/skipnas"; fi
if [ ! -f data/HAM10000/HAM10000_metadata.csv ]; then
  echo "error: data/HAM10000/HAM10000_metadata.csv not found; lay out HAM10000 first (docs/getting-started.md)" >&2
  exit 2
fi
if [ "$DRY" = 1 ]; then
  WORKERS=${1:-2}
  RESULTS=${2:-runs/suite-ham10000-gpu-dry}
  SUITE=$(mktemp --suffix=.yaml -p experiments .suite_ham10000_dry.XXXX)
  trap 'rm -f "$SUITE"' EXIT
  sed -e 's/data.image_size=128/data.image_size=32/; s/data.limit=3000/data.limit=120/' \
      -e 's/train.epochs=30/train.epochs=1/; s/retrain.epochs=20/retrain.epochs=1/' \
      -e 's/batch_size=24/batch_size=8/g; s/run.device=cuda/run.device=cpu/; s/run.bf16=true/run.bf16=false/' \
      -e 's/run.channels_last=true/run.threads=1/; s/samples: 8/samples: 2/' experiments/suite_ham10000_gpu.yaml > "$SUITE"
  export OMP_NUM_THREADS=1
fi
mkdir -p "$RESULTS"
"$PY" - <<'PY' || true
import torch
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device:",
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)")
PY
start=$(date +%s)
"$NAS" compare --suite "$SUITE" --out "$RESULTS" --workers "$WORKERS"
echo "suite finished in $(( $(date +%s) - start )) s"
( cd "$RESULTS" && find . \( -name summary.json -o -name per_image.csv -o -name 'report*' -o -name 'ranking*' \
    -o -name '*.png' -o -path './genotypes/*' \) -type f | tar czf results.tar.gz -T - )
echo "packed $RESULTS/results.tar.gz"

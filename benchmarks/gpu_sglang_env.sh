# Sourced by the GPU-host scripts (gpu_sglang_run.sh, gpu_bisect.sh): the SGLang bundle unpacked once per host
# (a warm host keeps it) and the environment its README gives, then the rig's checkpoints unpacked into
# $HARNESS_CACHE_DIR. Needs `say` defined and PREPARE_LOG set by the caller; exits 3 when either step fails.
if [ ! -f /tmp/sglsite/.sgl_bundle_ok ]; then
  RS_MODE=prepare bash .sgl/run_sglang.sh > "$PREPARE_LOG" 2>&1 || { say "bundle prepare failed"; tail -30 "$PREPARE_LOG"; exit 3; }
fi
CUDART=$(python3 -c 'import os,torch; print(os.path.realpath(os.path.join(os.path.dirname(torch.__file__),"..","nvidia","cu13","lib")))' 2>/dev/null)
mkdir -p /tmp/sgl_cudart_link
[ -e "$CUDART/libcudart.so.13" ] && ln -sf "$CUDART/libcudart.so.13" /tmp/sgl_cudart_link/libcudart.so
export PYTHONPATH=/tmp/sglsite:$PWD CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} PYTHONUNBUFFERED=1 \
  PATH="$(dirname "$(command -v python3)"):$PATH:/usr/local/cuda/bin" \
  LIBRARY_PATH=/usr/local/cuda/lib64:/tmp/sgl_cudart_link${LIBRARY_PATH:+:$LIBRARY_PATH} \
  HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if [ ! -f "$HARNESS_CACHE_DIR/.unpacked" ]; then
  python3 -m harness.rig unpack .rig/rig.pack.xz "$HARNESS_CACHE_DIR" > /dev/null && touch "$HARNESS_CACHE_DIR/.unpacked" \
    || { say "unpacking the rig's checkpoints failed"; exit 3; }
fi

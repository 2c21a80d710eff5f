#!/usr/bin/env bash
# Entrypoint of the GPU worker image (deploy/Dockerfile.worker), on any platform: a Verda instance
# or container, a RunPod serverless worker, a Kubernetes pod, a local GPU.
#
#   (no arguments) | -flags...  write ComfyUI's model paths for MODELS_DIR, then `gpu-worker run`,
#                               which starts ComfyUI, waits for it and only then takes jobs
#   doctor [flags]              `gpu-worker doctor`: check this host (GPU, Redis, ComfyUI, upload)
#   accept [flags]              `gpu-worker accept`: accept a new host (doctor, figures, cancels, a
#                               workflow), launching ComfyUI the way the worker does; not beside a
#                               running worker (`docker compose run --rm`, not `exec`)
#   healthcheck                 exit 0 when GET /health on GPU_WORKER_HEALTH_PORT answers 200
#   anything else               run it (a shell, for instance)
#
# The worker is a long-lived queue worker pulling from the workshop's Redis, not a request handler:
# SIGTERM makes it finish the job in hand and exit (tini hands the signal to it alone, so ComfyUI
# keeps running until then). REDIS_CA_PEM (below) applies to every form. Variables: docs/deploy.md.
set -euo pipefail

python="${WORKER_PYTHON:-python3}"
comfyui_dir="${COMFYUI_DIR:-/comfyui}"
models_dir="${MODELS_DIR:-/models}"
comfyui_port="${COMFYUI_PORT:-8188}"
export COMFYUI_URL="${COMFYUI_URL:-http://127.0.0.1:${comfyui_port}}"
export GPU_WORKER_BACKEND="${GPU_WORKER_BACKEND:-comfyui}"

gpu_worker() {
    exec "$python" -m gpu_worker "$@"
}

healthcheck() {
    local port="${GPU_WORKER_HEALTH_PORT:?GPU_WORKER_HEALTH_PORT is not set: no health endpoint}"
    exec "$python" -c 'import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=4)' "$port"
}

# ComfyUI finds the models on the volume through its own folder names, one per kind of model.
write_model_paths() {
    local out="$1" kind
    {
        echo "workshop:"
        echo "  base_path: ${models_dir}"
        echo "  is_default: true"
        for kind in checkpoints clip clip_vision configs controlnet diffusion_models unet embeddings \
            loras upscale_models latent_upscale_models vae vae_approx text_encoders audio_encoders \
            model_patches style_models hypernetworks photomaker gligen; do
            echo "  ${kind}: ${kind}"
        done
    } >"$out"
}

# The Redis CA from deploy/redis/make-certs.sh, for platforms configured by environment alone
# (RunPod, Verda containers): REDIS_CA_PEM holds the PEM text (real or \n-escaped newlines).
if [[ -n "${REDIS_CA_PEM:-}" ]]; then
    ca_file="${TMPDIR:-/tmp}/workshop-redis-ca.crt"
    printf '%b\n' "$REDIS_CA_PEM" >"$ca_file"
    if [[ "${REDIS_URL:-}" == rediss://* && "$REDIS_URL" != *ssl_ca_certs=* ]]; then
        separator="?"
        [[ "$REDIS_URL" == *\?* ]] && separator="&"
        export REDIS_URL="${REDIS_URL}${separator}ssl_ca_certs=${ca_file}"
    fi
fi

case "${1:-}" in
    healthcheck) healthcheck ;;
    doctor)
        shift
        gpu_worker doctor "$@"
        ;;
    "" | -* | accept) ;;
    *) exec "$@" ;;
esac

: "${REDIS_URL:?REDIS_URL is required (rediss://:PASSWORD@HOST:6380/0?ssl_ca_certs=/path/ca.crt)}"
if [[ -z "${GPU_WORKER_NAME:-}" ]]; then
    # Unique per worker: the platform's id for it where there is one, else the host name.
    GPU_WORKER_NAME="${GPU_WORKER_PROVIDER:-gpu}-${RUNPOD_POD_ID:-$(hostname)}"
fi
export GPU_WORKER_NAME

if [[ ! -d "$models_dir" ]]; then
    echo "worker-entrypoint: MODELS_DIR=${models_dir} does not exist (mount the models volume there);" \
        "only model-free templates will run" >&2
fi

# Optional: fetch or refresh the models before anything starts (a shell command, e.g. an
# `hf download ... --local-dir "$MODELS_DIR/..."` or an rsync from a bucket).
if [[ -n "${MODELS_SYNC_COMMAND:-}" ]]; then
    echo "worker-entrypoint: syncing models: ${MODELS_SYNC_COMMAND}" >&2
    bash -c "$MODELS_SYNC_COMMAND"
fi

args=()
if [[ "${COMFYUI_MANAGED:-true}" == "true" ]]; then
    # The worker launches ComfyUI (on loopback only: it has no authentication), waits until it
    # answers, and starts it again if it dies.
    paths="${TMPDIR:-/tmp}/workshop-extra-model-paths.yaml"
    write_model_paths "$paths"
    printf -v command '%q ' "$python" "${comfyui_dir}/main.py" --listen 127.0.0.1 --port "$comfyui_port" \
        --extra-model-paths-config "$paths" --disable-auto-launch
    args+=(--comfyui-command "${COMFYUI_COMMAND:-${command}${COMFYUI_ARGS:-}}")
    if [[ "${1:-}" != accept ]]; then
        args+=(--comfyui-log "${COMFYUI_LOG:-/dev/stdout}")
    elif [[ -n "${COMFYUI_LOG:-}" ]]; then
        # Otherwise accept keeps ComfyUI's output in its work folder: its own ends with a JSON line.
        args+=(--comfyui-log "$COMFYUI_LOG")
    fi
fi

if [[ "${1:-}" == accept ]]; then
    shift
    gpu_worker accept "${args[@]}" "$@"
fi

echo "worker-entrypoint: ${GPU_WORKER_NAME} (${GPU_WORKER_PROVIDER:-local}) on queues" \
    "${GPU_WORKER_QUEUES:-video,image}, ComfyUI ${COMFYUI_URL}, models ${models_dir}" >&2
gpu_worker run "${args[@]}" "$@"

#!/usr/bin/env bash
# Serves every pushed model with the official TF Serving image.
#
#   serving/docker-run.sh [SERVING_BASE [extra tensorflow_model_server flags]]
#   GPU=1 serving/docker-run.sh ...    tensorflow/serving:2.16.1-gpu, all GPUs
#
# SERVING_BASE is a pipeline's OUT/serving (default: build/demo/serving in
# this repo, what `make demo` pushes to); the SERVING_BASE environment
# variable works too. The script first writes SERVING_BASE/models.config for
# the models found there, then runs the server: gRPC on 8500, REST on 8501,
# Prometheus metrics at :8501/monitoring/prometheus/metrics.
# Rerun the generator after a new model is pushed; the server rereads the
# config every 60 s. New versions of listed models need nothing: the server
# watches their folders.
#
# Environment: PYTHON (default .venv/bin/python), DOCKER (default docker),
# TF_SERVING_VERSION (default 2.16.1, the tensorflow-serving-api pin).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
serving_base="${1:-${SERVING_BASE:-$repo/build/demo/serving}}"
shift || true
python="${PYTHON:-$repo/.venv/bin/python}"
docker="${DOCKER:-docker}"
version="${TF_SERVING_VERSION:-2.16.1}"

if [[ ! -d "$serving_base" ]]; then
  echo "error: serving folder not found: $serving_base" >&2
  echo "run the pipeline first (make demo), or pass its OUT/serving" >&2
  exit 1
fi
serving_base="$(cd "$serving_base" && pwd)"  # docker -v needs an absolute path

(cd "$repo" && "$python" -m serving.tf_serving_config "$serving_base")

if [[ -n "${GPU:-}" ]]; then
  image="tensorflow/serving:$version-gpu"
  batching="$repo/serving/batching_gpu.config"
  gpu_flags=(--gpus all)
else
  image="tensorflow/serving:$version"
  batching="$repo/serving/batching_cpu.config"
  gpu_flags=()
fi

# The image's entrypoint already passes --port=8500 --rest_api_port=8501;
# --model_config_file takes precedence over its single-model flags.
exec "$docker" run --rm \
  -p 8500:8500 -p 8501:8501 \
  ${gpu_flags[@]+"${gpu_flags[@]}"} \
  -v "$serving_base:/models:ro" \
  -v "$batching:/config/batching.config:ro" \
  -v "$repo/serving/monitoring.config:/config/monitoring.config:ro" \
  "$image" \
  --model_config_file=/models/models.config \
  --model_config_file_poll_wait_seconds=60 \
  --enable_batching \
  --batching_parameters_file=/config/batching.config \
  --monitoring_config_file=/config/monitoring.config \
  "$@"

#!/usr/bin/env bash
# The proxy benchmark with LiteLLM's proxy as a third target (issue 9): same upstream stand-in,
# same open-loop load generator, runs alternating direct / llmwatch / litellm.
#
#   bash benches/litellm_proxy.sh                 # rates 1000,5000 (as the llmwatch table)
#   BENCH_RATES=100,1000 bash benches/litellm_proxy.sh
#   # also BENCH_SECONDS, BENCH_ROUNDS, BENCH_LITELLM_WORKERS (1), LLMWATCH_BIN, LITELLM_VENV,
#   # BENCH_CMD (default `cargo bench --bench proxy`; e.g. a prebuilt bench binary)
#
# LiteLLM (PyPI `litellm[proxy]`, pinned below) runs as its own process
# (`litellm --config <yaml> --port <free port> --num_workers N`, no database, no master key)
# with model `gpt-4o` routed to `openai/gpt-4o` at the bench's stand-in (api_base); the bench
# starts it once the stand-in listens and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION=1.108.7
venv="${LITELLM_VENV:-${CARGO_TARGET_DIR:-$PWD/target}/litellm-venv}"
if [ ! -x "$venv/bin/litellm" ] ||
  [ "$("$venv/bin/python" -c "import importlib.metadata as m; print(m.version('litellm'))" 2>/dev/null)" != "$LITELLM_VERSION" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
    "litellm[proxy]==$LITELLM_VERSION"
fi

export BENCH_LITELLM=1
export LITELLM_BIN="$venv/bin/litellm"
# LiteLLM phones home for its model cost map unless told not to; keep the run local.
export LITELLM_LOCAL_MODEL_COST_MAP=True
# shellcheck disable=SC2086
exec ${BENCH_CMD:-cargo bench --bench proxy}

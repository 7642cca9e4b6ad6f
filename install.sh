#!/usr/bin/env bash
# Builds hoop and hoopd from source and installs them with the shell completions.
#   ./install.sh                 # into ~/.local (no root needed)
#   PREFIX=/usr/local ./install.sh
set -euo pipefail
cd "$(dirname "$0")"
PREFIX="${PREFIX:-$HOME/.local}"
command -v cargo >/dev/null 2>&1 || { echo "install.sh: cargo is required (https://rustup.rs)" >&2; exit 1; }
# hoopd embeds PostgreSQL's parser (libpg_query), compiled with a C compiler and bound with
# bindgen, which needs libclang.
if ! command -v clang >/dev/null 2>&1 || ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  echo "install.sh: building hoopd needs clang and libclang (Debian: sudo apt-get install clang libclang-dev)" >&2
  exit 1
fi

cargo build --release --locked --bins
install -d "$PREFIX/bin"
install -m 0755 target/release/hoop target/release/hoopd "$PREFIX/bin/"

# Completions: in the standard per-user or system locations under PREFIX.
share="$PREFIX/share"
install -d "$share/bash-completion/completions" "$share/zsh/site-functions" "$share/fish/vendor_completions.d"
install -m 0644 completions/hoop.bash "$share/bash-completion/completions/hoop"
install -m 0644 completions/_hoop "$share/zsh/site-functions/_hoop"
install -m 0644 completions/hoop.fish "$share/fish/vendor_completions.d/hoop.fish"

echo "installed hoop and hoopd into $PREFIX/bin" >&2
case ":$PATH:" in
  *":$PREFIX/bin:"*) ;;
  *) echo "note: $PREFIX/bin is not on your PATH; add it, e.g. export PATH=\"$PREFIX/bin:\$PATH\"" >&2 ;;
esac

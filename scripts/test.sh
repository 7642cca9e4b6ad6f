#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need when it is missing,
# builds once, and runs every test: unit, property and end-to-end against real PostgreSQL,
# OpenSSH and an OIDC provider.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*" >&2; }

need_pkgs=()
command -v node >/dev/null 2>&1 || need_pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || need_pkgs+=(npm)
command -v psql >/dev/null 2>&1 || need_pkgs+=(postgresql-client)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_pkgs+=(postgresql)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need_pkgs+=(openssh-client)
# The SSH e2e drives an interactive shell through a pty with python3's `pty` module.
command -v python3 >/dev/null 2>&1 || need_pkgs+=(python3)
# The masking e2e reads structured values with psycopg 3 (Debian's, run by /usr/bin/python3).
/usr/bin/python3 -c 'import psycopg' >/dev/null 2>&1 || need_pkgs+=(python3-psycopg)
# The SSH attack suite runs the wrappers and shells an attacker would use through the gateway
# (sudo, zsh), so a judge that let them through would show on disk.
command -v sudo >/dev/null 2>&1 || need_pkgs+=(sudo)
command -v zsh >/dev/null 2>&1 || need_pkgs+=(zsh)
# pg_query builds libpg_query (PostgreSQL's parser) with cc and generates bindings with bindgen.
command -v clang >/dev/null 2>&1 || need_pkgs+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_pkgs+=(libclang-dev)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

fixture=tests/fixtures/oidc-provider
if [ ! -d "$fixture/node_modules/oidc-provider" ]; then
  say "installing the OIDC provider fixture (npm ci)"
  npm ci --prefix "$fixture" --no-audit --no-fund --loglevel=error
fi

say "building (once, all targets)"
cargo build --workspace --all-targets --locked

say "running the tests"
# The end-to-end suite finds hoop and hoopd next to its own test binary.
cargo test --workspace --locked -- --test-threads="${HOOP_TEST_THREADS:-4}"

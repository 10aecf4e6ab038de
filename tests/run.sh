#!/usr/bin/env bash
# The whole test suite, in one command: bash tests/run.sh
#
# Installs what it needs when missing (as root, from Debian packages): openssl, python3-venv,
# the PostgreSQL server and client (the audit tests start their own server), SoftHSM2 (the
# PKCS#11 tests use a token in a temporary directory), systemd (systemd-analyze checks the
# unit in packaging/), curl (the HTTPS tests' client), chromium and chromium-driver (the
# browser tests of the web interface, tests/web.rs), osslsigncode and a JDK (jar, jarsigner,
# keytool: tests/signing_tools.rs), HAProxy (the load balancer in front of the nodes of
# tests/cluster.rs, deploy/cluster/haproxy.cfg), then sets up a venv with the independent
# verifiers and selenium (tests/interop/requirements.txt) and runs every unit and integration
# test with cargo-nextest (cargo test when nextest is absent).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
command -v openssl >/dev/null || need_pkgs+=(openssl)
command -v curl >/dev/null || need_pkgs+=(curl)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || need_pkgs+=(postgresql)
command -v psql >/dev/null || need_pkgs+=(postgresql-client)
command -v runuser >/dev/null || need_pkgs+=(util-linux)
[ -e /usr/lib/softhsm/libsofthsm2.so ] || need_pkgs+=(softhsm2)
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
[ -x /usr/bin/chromium ] || need_pkgs+=(chromium)
[ -x /usr/bin/chromedriver ] || need_pkgs+=(chromium-driver)
command -v osslsigncode >/dev/null || need_pkgs+=(osslsigncode)
command -v jarsigner >/dev/null || need_pkgs+=(openjdk-17-jdk-headless)
# Debian installs it as /usr/sbin/haproxy: on root's PATH (the installing case).
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
if ((${#need_pkgs[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${need_pkgs[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
  else
    echo "missing: ${need_pkgs[*]} (run as root to install them)" >&2
    exit 1
  fi
fi

# Independent verifiers (pyHanko, rfc3161-client) and selenium in a venv, reused between runs.
venv="${STAMPD_TEST_VENV:-target/interop-venv}"
if [ ! -x "$venv/bin/python" ] || ! cmp -s tests/interop/requirements.txt "$venv/requirements.txt"; then
  echo "== setting up $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/interop/requirements.txt
  cp tests/interop/requirements.txt "$venv/requirements.txt"
fi
export STAMPD_INTEROP_PYTHON="$PWD/$venv/bin/python"

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi

#!/usr/bin/env bash
# Installs what the local stack and the tests need, idempotently. Downloads and builds are cached in
# $CHATSTACK_CACHE (default ~/.cache/chatstack) so a second run only checks stamps.
#   deploy/local/install.sh [python] [kafka] [ferretdb] [versitygw] [nginx] [postgres] [clamav]   (default: all)
#   deploy/local/install.sh node                   checks Node.js and npm for the browser app (make web)
#   deploy/local/install.sh chromium               Debian's Chromium for the browser tests (make test)
#   deploy/local/install.sh centrifugo loadgen     only for bench/compare.py (never part of the default)
#   deploy/local/install.sh --print-path centrifugo|loadgen   where that binary is (built or not)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${CHATSTACK_CACHE:-$HOME/.cache/chatstack}"
VENV="${CHATSTACK_VENV:-$REPO/.venv}"
KAFKA_VERSION=4.1.1
FERRETDB_VERSION=v1.24.2
VERSITYGW_VERSION=v1.7.0
CENTRIFUGO_VERSION=v6.9.1
LOGS="$CACHE/logs"
mkdir -p "$CACHE/bin" "$LOGS"

say() { printf '[install] %s\n' "$*"; }
fail() { # component, reason, log file
  printf '[install] FAILED %s: %s\n[install] log: %s\n' "$1" "$2" "$3" >&2
  [ -f "$3" ] && tail -n 25 "$3" >&2
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || fail "$2" "'$1' is not on PATH ($3)" /dev/null; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() { # component, log file, Debian packages...
  local component="$1" log="$2"
  shift 2
  { $SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "$@"; } >"$log" 2>&1 \
    || fail "$component" "apt-get install $* failed" "$log"
}

install_python() {
  local log="$LOGS/python.log" stamp
  stamp="$(cat "$REPO/pyproject.toml" | sha256sum | cut -c1-16)"
  if [ -f "$VENV/.installed-$stamp" ]; then say "python: up to date ($VENV)"; return; fi
  need python3.11 python "Python 3.11 is required"
  say "python: creating $VENV and installing dependencies"
  { [ -x "$VENV/bin/python" ] || python3.11 -m venv "$VENV"; } >"$log" 2>&1 || fail python "venv creation failed" "$log"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$REPO[dev]" >>"$log" 2>&1 \
    || fail python "pip install failed (PyPI unreachable or a pin does not resolve)" "$log"
  rm -f "$VENV"/.installed-*
  touch "$VENV/.installed-$stamp"
}

install_kafka() {
  local dir="$CACHE/kafka-$KAFKA_VERSION" log="$LOGS/kafka.log"
  if [ -f "$dir/.complete" ]; then say "kafka $KAFKA_VERSION: cached"; return; fi
  need java kafka "Java 17 is required"; need mvn kafka "Maven is required"
  say "kafka $KAFKA_VERSION: resolving jars from Maven Central"
  rm -rf "$dir"
  mvn -q -B -f "$REPO/deploy/local/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$dir/libs" >"$log" 2>&1 \
    || fail kafka "download failed (Maven Central unreachable or artifact missing)" "$log"
  ls "$dir/libs"/kafka_2.13-*.jar >/dev/null 2>&1 || fail kafka "kafka_2.13 jar missing after download" "$log"
  touch "$dir/.complete"
}

install_ferretdb() {
  local bin="$CACHE/bin/ferretdb-$FERRETDB_VERSION" log="$LOGS/ferretdb.log" src build
  if [ -x "$bin" ]; then say "ferretdb $FERRETDB_VERSION: cached"; return; fi
  need go ferretdb "Go is required"
  say "ferretdb $FERRETDB_VERSION: building from the Go module proxy (about 2 minutes)"
  src="$(go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" 2>"$log" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')" \
    || fail ferretdb "module download failed" "$log"
  # The module zip lacks build/version/version.txt (git-ignored upstream) and the binary panics
  # without it, so `go install pkg@version` alone cannot work: build a copy with the file added.
  build="$(mktemp -d)"
  cp -r "$src/." "$build/" && chmod -R u+w "$build"
  echo "$FERRETDB_VERSION" >"$build/build/version/version.txt"
  (cd "$build" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" ./cmd/ferretdb) >>"$log" 2>&1 \
    || { rm -rf "$build"; fail ferretdb "build failed" "$log"; }
  rm -rf "$build"
  mv "$bin.tmp" "$bin"
}

install_versitygw() {
  local bin="$CACHE/bin/versitygw-$VERSITYGW_VERSION" log="$LOGS/versitygw.log" gobin
  if [ -x "$bin" ]; then say "versitygw $VERSITYGW_VERSION: cached"; return; fi
  need go versitygw "Go is required"
  say "versitygw $VERSITYGW_VERSION: go install (about 2 minutes)"
  gobin="$(mktemp -d)"
  CGO_ENABLED=0 GOBIN="$gobin" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >"$log" 2>&1 \
    || { rm -rf "$gobin"; fail versitygw "go install failed" "$log"; }
  mv "$gobin/versitygw" "$bin"
  rm -rf "$gobin"
}

install_nginx() {
  local log="$LOGS/nginx.log"
  if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then say "nginx: present"; return; fi
  say "nginx: installing the Debian package"
  apt_install nginx "$log" nginx
  # The package may start a system-wide nginx on port 80; the stack runs its own copy instead.
  if [ -f /run/nginx.pid ]; then $SUDO /usr/sbin/nginx -s stop >>"$log" 2>&1 || true; fi
}

install_postgres() {
  local log="$LOGS/postgres.log"
  if [ "${CHATSTACK_DB_BACKEND:-postgresql}" != postgresql ]; then say "postgres: not needed (sqlite backend)"; return; fi
  if ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then say "postgres: present"; return; fi
  say "postgres: installing the Debian package (FerretDB's backend)"
  apt_install postgres "$log" postgresql
}

install_clamav() {
  local log="$LOGS/clamav.log"
  if [ -x /usr/sbin/clamd ]; then say "clamav: present"; return; fi
  say "clamav: installing the Debian package clamav-daemon (the stack runs its own clamd)"
  apt_install clamav "$log" clamav-daemon
  # The package may start its own clamd and freshclam (system-wide socket, downloads from the
  # internet). The stack runs clamd with its own config and a local signature file instead, and
  # no definitions can be downloaded here: stop and disable both, whatever the init system.
  local svc
  for svc in clamav-daemon clamav-freshclam; do
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
      $SUDO systemctl disable --now "$svc" >>"$log" 2>&1 || true
    elif command -v service >/dev/null 2>&1; then
      $SUDO service "$svc" stop >>"$log" 2>&1 || true
    fi
  done
  [ -x /usr/sbin/clamd ] || fail clamav "/usr/sbin/clamd missing after install" "$log"
}

# The browser app builds with Vite 7, which needs Node.js 20.19 or newer (and npm). Debian's own
# nodejs package is older, so nothing is installed here: the machine's Node.js is checked.
install_node() {
  local version
  need node node "Node.js >= 20.19 is required to build web/"
  need npm node "npm is required to build web/"
  version="$(node -p 'process.versions.node')"
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
    || fail node "Node.js $version is too old (web/ needs >= 20.19)" /dev/null
  say "node $version: present"
}

# The browser tests drive Debian's Chromium with playwright-core (Playwright's own browser
# download cannot work without the internet); the emoji font draws reactions in screenshots.
install_chromium() {
  local log="$LOGS/chromium.log"
  if [ -x /usr/bin/chromium ] && [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]; then
    say "chromium: present"
    return
  fi
  say "chromium: installing the Debian packages chromium and fonts-noto-color-emoji (browser tests)"
  apt_install chromium "$log" chromium fonts-noto-color-emoji
  [ -x /usr/bin/chromium ] || fail chromium "/usr/bin/chromium missing after install" "$log"
}

# The comparison's reference server (bench/compare.py). `go install` alone leaves its version at
# 0.0.0, so the release's version is stamped in the way its own release build does.
centrifugo_bin() { echo "$CACHE/bin/centrifugo-$CENTRIFUGO_VERSION"; }
install_centrifugo() {
  local bin log="$LOGS/centrifugo.log" gobin
  bin="$(centrifugo_bin)"
  if [ -x "$bin" ]; then say "centrifugo $CENTRIFUGO_VERSION: cached"; return; fi
  need go centrifugo "Go is required"
  say "centrifugo $CENTRIFUGO_VERSION: go install (about 3 minutes)"
  gobin="$(mktemp -d)"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath \
    -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=${CENTRIFUGO_VERSION#v}" \
    "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION" >"$log" 2>&1 \
    || { rm -rf "$gobin"; fail centrifugo "go install failed" "$log"; }
  mv "$gobin/centrifugo" "$bin"
  rm -rf "$gobin"
}

# The Go load generator of bench/compare.py, keyed by a hash of its sources: an edit rebuilds it,
# an unchanged tree (in any clone) reuses the binary.
loadgen_bin() {
  local hash
  hash="$(cd "$REPO/bench/loadgen" && cat go.mod go.sum $(ls ./*.go | sort) | sha256sum | cut -c1-16)"
  echo "$CACHE/bin/loadgen-$hash"
}
install_loadgen() {
  local bin log="$LOGS/loadgen.log"
  bin="$(loadgen_bin)"
  if [ -x "$bin" ]; then say "loadgen: cached ($(basename "$bin"))"; return; fi
  need go loadgen "Go is required"
  say "loadgen: go build bench/loadgen"
  (cd "$REPO/bench/loadgen" && CGO_ENABLED=0 go build -trimpath -o "$bin.tmp" .) >"$log" 2>&1 \
    || fail loadgen "go build failed" "$log"
  mv "$bin.tmp" "$bin"
}

if [ "${1:-}" = --print-path ]; then
  case "${2:-}" in
    centrifugo|loadgen) "${2}_bin"; exit 0 ;;
    *) fail "${2:-?}" "--print-path takes centrifugo or loadgen" /dev/null ;;
  esac
fi

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(python kafka ferretdb versitygw nginx postgres clamav)
pids=()
# The two Go builds are the slow part: run them side by side while the rest installs.
for t in "${targets[@]}"; do
  case "$t" in
    ferretdb|versitygw|centrifugo) "install_$t" & pids+=($!) ;;
  esac
done
for t in "${targets[@]}"; do
  case "$t" in
    python|kafka|nginx|postgres|clamav|loadgen|node|chromium) "install_$t" ;;
    ferretdb|versitygw|centrifugo) ;;
    *) fail "$t" "unknown component (python kafka ferretdb versitygw nginx postgres clamav node chromium centrifugo loadgen)" /dev/null ;;
  esac
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status

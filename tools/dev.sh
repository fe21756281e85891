#!/bin/sh
# qterm developer entry: install (idempotent), run the simulator for a person, or run the tests.
#   sh tools/dev.sh install   - apt mosquitto if missing, .venv with pinned packages
#   sh tools/dev.sh run       - install, start a local mosquitto + one simulated terminal + console
#   sh tools/dev.sh test [pytest args] - install, run the whole test suite
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

say() { printf 'qterm: %s\n' "$*" >&2; }

install() {
  if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ] || ! command -v mosquitto_sub >/dev/null 2>&1; then
    say "installing mosquitto and mosquitto-clients (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
  fi
  if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    python3 -m venv .venv
  fi
  stamp=.venv/.qterm-requirements
  if ! cmp -s tools/requirements.txt "$stamp" 2>/dev/null; then
    say "installing pinned Python packages into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "$(grep '^pybind11==' tools/requirements.txt)"
    .venv/bin/pip install -q --disable-pip-version-check -r tools/requirements.txt
    cp tools/requirements.txt "$stamp"
  fi
}

free_port() {
  .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

run() {
  install
  PATH="/usr/sbin:$PATH"
  state=${QTERM_STATE:-$root/state}
  broker_port=${QTERM_BROKER_PORT:-$(free_port)}
  control_port=${QTERM_CONTROL_PORT:-7700}
  mkdir -p "$state"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$broker_port" > "$state/mosquitto.conf"
  mosquitto -c "$state/mosquitto.conf" >"$state/mosquitto.log" 2>&1 &
  mpid=$!
  trap 'kill $mpid $spid 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
  sleep 0.3
  sim/run --config "${QTERM_CONFIG:-sim/config.example.json}" --state "$state" \
          --broker "127.0.0.1:$broker_port" --control "$control_port" --echo &
  spid=$!
  say "broker 127.0.0.1:$broker_port  control 127.0.0.1:$control_port  state $state"
  say "watch events:  mosquitto_sub -h 127.0.0.1 -p $broker_port -v -t 'qterm/#'"
  if [ -t 0 ]; then
    .venv/bin/python -m sim.console --port "$control_port" --broker "127.0.0.1:$broker_port"
  else
    wait $spid
  fi
}

tests() {
  install
  PATH="/usr/sbin:$root/.venv/bin:$PATH"
  export PATH
  set +e
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then say "no tests ran - that is a failure"; exit 1; fi
  exit "$rc"
}

case "${1:-}" in
  install) install ;;
  run) run ;;
  test) shift; tests "$@" ;;
  *) echo "usage: sh tools/dev.sh install|run|test [pytest args]" >&2; exit 2 ;;
esac

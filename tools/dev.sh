#!/bin/sh
# qterm developer entry: install (idempotent), run the simulator for a person, or run the tests.
#   sh tools/dev.sh install   - apt mosquitto if missing, .venv with pinned packages
#   sh tools/dev.sh run       - install, start a local mosquitto + one simulated terminal + console
#                               + the browser panel on http://127.0.0.1:7780/ (QTERM_PANEL_PORT)
#   sh tools/dev.sh run --hall N - the same with a hall (kiosk, N counters, screen: sim/hall)
#   sh tools/dev.sh test [pytest args] - install (and chromium, unifont, zbar-tools), run the whole test suite
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

# stop_all: what this script started, politely (TERM), then for good after 5 s (a device busy
# under load may be slow to go; the command must end, not hang).
stop_all() {
  kill $pids 2>/dev/null || :
  n=0
  while [ "$n" -lt 10 ]; do
    alive=""
    for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break
    sleep 0.5
    n=$((n + 1))
  done
  kill -9 $pids 2>/dev/null || :
  wait 2>/dev/null || :
}

free_port() {
  .venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# port_taken PORT: true when something on this machine already listens on 127.0.0.1:PORT
# (a simulator left from another run would otherwise answer in place of ours).
port_taken() {
  ! .venv/bin/python -c 'import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))' "$1" 2>/dev/null
}

# wait_port PORT PID SECONDS: exit 0 once 127.0.0.1:PORT accepts a connection, 3 when PID
# ended first, 4 when SECONDS ran out. Polls; a fixed sleep races the device's boot.
wait_port() {
  .venv/bin/python - "$@" <<'PY'
import socket, sys, time
port, pid, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + limit
while True:
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        sys.exit(0)
    except OSError:
        pass
    try:  # an ended child stays a zombie (state Z) until the shell reaps it
        with open("/proc/%d/stat" % pid) as f:
            ended = f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except OSError:
        ended = True
    if ended:
        sys.exit(3)
    if time.monotonic() > end:
        sys.exit(4)
    time.sleep(0.05)
PY
}

# started NAME PID PORT SECONDS LOG: wait for PID to listen on PORT; else show LOG's tail and fail.
started() {
  rc=0
  wait_port "$3" "$2" "$4" || rc=$?
  [ "$rc" -eq 0 ] && return 0
  if [ "$rc" -eq 3 ]; then
    say "$1 exited before it opened 127.0.0.1:$3; its last output ($5):"
  else
    say "$1 did not open 127.0.0.1:$3 within $4 s; its last output ($5):"
  fi
  tail -n 20 "$5" >&2 || true
  exit 1
}

# wait_file FILE PID SECONDS: exit 0 once FILE exists, 3 when PID ended first, 4 on timeout.
wait_file() {
  .venv/bin/python - "$@" <<'PY'
import os, sys, time
path, pid, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
end = time.monotonic() + limit
while not os.path.exists(path):
    try:
        with open("/proc/%d/stat" % pid) as f:
            if f.read().rsplit(")", 1)[1].split()[0] in "ZX":
                sys.exit(3)
    except OSError:
        sys.exit(3)
    if time.monotonic() > end:
        sys.exit(4)
    time.sleep(0.1)
PY
}

# start_panel ARGS...: the browser panel (tools/panel.py) on 127.0.0.1:$QTERM_PANEL_PORT (7780).
# It is an aid, not the simulator: a port in use or a panel that does not come up is said, and
# the run goes on without it (the console and the devices work the same).
start_panel() {
  panel_port=${QTERM_PANEL_PORT:-7780}
  if port_taken "$panel_port"; then
    say "127.0.0.1:$panel_port is in use: no browser panel this run (choose another with QTERM_PANEL_PORT)"
    return 0
  fi
  .venv/bin/python -m tools.panel --port "$panel_port" "$@" >"$state/panel.log" 2>&1 &
  ppid_=$!
  pids="$pids $ppid_"
  rc=0
  wait_port "$panel_port" "$ppid_" 10 || rc=$?
  if [ "$rc" -eq 0 ]; then
    say "panel  http://127.0.0.1:$panel_port/  (every device: display, buttons, tickets, events)"
  else
    say "the browser panel did not start ($state/panel.log); going on without it"
    tail -n 5 "$state/panel.log" >&2 || true
  fi
}

run() {
  hall=""
  if [ "${1:-}" = "--hall" ]; then
    case "${2:-}" in
      [1-9]|[1-9][0-9]) hall=$2 ;;
      *) echo "usage: sh tools/dev.sh run [--hall N]  (N counters, 1..99)" >&2; exit 2 ;;
    esac
  elif [ $# -gt 0 ]; then
    echo "usage: sh tools/dev.sh run [--hall N]" >&2; exit 2
  fi
  install
  PATH="/usr/sbin:$PATH"
  state=${QTERM_STATE:-$root/state}
  broker_port=${QTERM_BROKER_PORT:-$(free_port)}
  control_port=${QTERM_CONTROL_PORT:-7700}
  ports="$broker_port"
  [ -n "$hall" ] || ports="$ports $control_port"   # a hall's devices take free ports of their own
  for p in $ports; do
    if port_taken "$p"; then
      say "127.0.0.1:$p is already in use (a simulator or broker still running from another run?)."
      say "stop it, or choose other ports with QTERM_CONTROL_PORT / QTERM_BROKER_PORT"
      exit 1
    fi
  done
  mkdir -p "$state"
  # Everything started below ends with this script: Ctrl-C, EOF, quit or an error.
  pids=""
  trap 'trap - EXIT; stop_all' EXIT
  trap 'echo >&2; exit 130' INT   # the console dies of ^C mid-line: end the line
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$broker_port" > "$state/mosquitto.conf"
  mosquitto -c "$state/mosquitto.conf" >"$state/mosquitto.log" 2>&1 &
  pids="$!"
  started mosquitto "$!" "$broker_port" 10 "$state/mosquitto.log"
  if [ -n "$hall" ]; then
    run_hall
    return
  fi
  say "starting the simulator (the first run builds the firmware image)"
  # Ctrl-C is for the console; this script stops the device. A background job ignores SIGINT,
  # but MicroPython installs its own handler over that, so the signal is blocked for it instead.
  .venv/bin/python -c 'import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
os.execv(sys.argv[1], sys.argv[1:])' \
  sim/run --config "${QTERM_CONFIG:-sim/config.example.json}" --state "$state" \
          --broker "127.0.0.1:$broker_port" --control "$control_port" --echo >"$state/sim.log" 2>&1 &
  spid=$!
  pids="$pids $spid"
  started simulator "$spid" "$control_port" 60 "$state/sim.log"
  # The device's own output (boot line, display and voice) follows in this terminal.
  tail -n +1 -f --pid="$spid" "$state/sim.log" &
  pids="$pids $!"
  start_panel --device "$control_port" --state "$state" --broker "127.0.0.1:$broker_port" \
              --config "${QTERM_CONFIG:-sim/config.example.json}"
  say "broker 127.0.0.1:$broker_port  control 127.0.0.1:$control_port  state $state"
  say "watch events:  mosquitto_sub -h 127.0.0.1 -p $broker_port -v -t 'qterm/#'"
  if [ -t 0 ]; then
    .venv/bin/python -m sim.console --port "$control_port" --broker "127.0.0.1:$broker_port"
  else
    wait "$spid"
  fi
}

# run_hall: the rest of `run --hall N` once the broker is up (sim/hall.py supervises the devices;
# started in the background it ignores SIGINT, so Ctrl-C is the console's and the EXIT trap's
# SIGTERM stops the hall and every device in it).
run_hall() {
  hdir="$state/hall"
  say "starting a hall of $hall counters (the first run builds the firmware image)"
  rm -f "$hdir/hall.json"   # one left by a hall killed outright would name dead ports
  sim/hall --counters "$hall" --state "$hdir" --broker "127.0.0.1:$broker_port" --echo \
           ${QTERM_CONFIG:+--config "$QTERM_CONFIG"} >"$state/hall.log" 2>&1 &
  hpid=$!
  pids="$pids $hpid"
  rc=0
  wait_file "$hdir/hall.json" "$hpid" 180 || rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -eq 3 ] && say "the hall did not come up; its output ($state/hall.log):" \
                    || say "the hall was not up within 180 s; its output ($state/hall.log):"
    tail -n 30 "$state/hall.log" >&2 || true
    exit 1
  fi
  # Every device's display, voice and printer, marked with its name, follow in this terminal.
  tail -n +1 -f --pid="$hpid" "$state/hall.log" &
  pids="$pids $!"
  start_panel --hall "$hdir/hall.json"
  say "broker 127.0.0.1:$broker_port  hall $hdir/hall.json  (devices and control ports: 'devices')"
  say "watch events:  mosquitto_sub -h 127.0.0.1 -p $broker_port -v -t 'qterm/#'"
  if [ -t 0 ]; then
    .venv/bin/python -m sim.console --hall "$hdir/hall.json" --broker "127.0.0.1:$broker_port"
  else
    wait "$hpid"
  fi
}

# test_packages: what the tests use beyond the simulator: headless Chromium (the pages the project
# serves, opened as a person's browser would), GNU Unifont (the source of the display font,
# regenerated and compared by a test; its OpenType face, a dependency, lets Chromium draw Chinese)
# and zbar-tools (an independent QR decoder: the panel's QR codes must scan).
test_packages() {
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
  [ -r /usr/share/unifont/unifont.hex ] || missing="$missing unifont"
  command -v zbarimg >/dev/null 2>&1 || missing="$missing zbar-tools"
  if [ -n "$missing" ]; then
    say "installing$missing (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq $missing >/dev/null
  fi
}

tests() {
  install
  test_packages
  PATH="/usr/sbin:$root/.venv/bin:$PATH"
  export PATH
  set +e
  # several workers: the end-to-end tests mostly wait on devices and brokers (load stays
  # low), so 3 workers on 2 cores finish in about half the time one worker takes
  .venv/bin/python -m pytest -q -p no:cacheprovider -n "${QTERM_TEST_WORKERS:-3}" "$@"
  rc=$?
  set -e
  if [ "$rc" -eq 5 ]; then say "no tests ran - that is a failure"; exit 1; fi
  exit "$rc"
}

case "${1:-}" in
  install) install ;;
  run) shift; run "$@" ;;
  test) shift; tests "$@" ;;
  *) echo "usage: sh tools/dev.sh install|run [--hall N]|test [pytest args]" >&2; exit 2 ;;
esac

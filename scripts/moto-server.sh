#!/usr/bin/env bash
# moto's EC2 emulator on 127.0.0.1, for the aws provider's tests and for
# trying `btrfsqa provision --provider aws` without an AWS account. The
# virtualenv is made on first use (pip install 'moto[server]').
#
#   scripts/moto-server.sh [PORT]               start in the background, wait until it
#                                               answers, print its endpoint on stdout
#   scripts/moto-server.sh --foreground [PORT]  run in the foreground
#   scripts/moto-server.sh --stop [PORT]        stop the one started in the background
#   scripts/moto-server.sh --install-only       make the virtualenv, print moto_server's path
#
# Between tests, `curl -X POST $ENDPOINT/moto-api/reset` forgets every resource.
#
# PORT defaults to 5000. BTRFSQA_MOTO_VENV overrides the virtualenv's place
# (default /var/tmp/btrfsqa-moto, where the integration tests look; they
# start servers of their own and need only the virtualenv).
#
# The emulator accepts any credentials; point the SDK at it with e.g.
#   export AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_REGION=us-east-1 \
#          AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
set -euo pipefail

venv=${BTRFSQA_MOTO_VENV:-/var/tmp/btrfsqa-moto}
mode=background
case "${1:-}" in
  --foreground|--stop|--install-only) mode=${1#--}; shift ;;
  -h|--help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
esac
port=${1:-5000}
case "$port" in
  ''|*[!0-9]*) echo "moto-server.sh: PORT must be a number, not \`$port'" >&2; exit 2 ;;
esac
state_dir=${XDG_RUNTIME_DIR:-/tmp}
pidfile=$state_dir/btrfsqa-moto-$port.pid
logfile=$state_dir/btrfsqa-moto-$port.log
endpoint=http://127.0.0.1:$port

install() {
  if [ -x "$venv/bin/moto_server" ]; then
    return
  fi
  echo "moto-server.sh: installing moto[server] into $venv (about two minutes)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]'
}

# Any HTTP answer will do; a reset would wipe a server already in use.
answers() {
  "$venv/bin/python" - "$endpoint" <<'EOF' 2>/dev/null
import sys, urllib.error, urllib.request
try:
    urllib.request.urlopen(sys.argv[1] + "/moto-api/", timeout=2).read()
except urllib.error.HTTPError:
    pass
EOF
}

case "$mode" in
  install-only)
    install
    echo "$venv/bin/moto_server"
    ;;
  foreground)
    install
    exec "$venv/bin/moto_server" -H 127.0.0.1 -p "$port"
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
    ;;
  background)
    install
    if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "moto-server.sh: already running on $endpoint (pid $(cat "$pidfile"))" >&2
    else
      nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$logfile" 2>&1 </dev/null &
      echo $! >"$pidfile"
    fi
    for _ in $(seq 1 300); do
      if answers; then
        echo "moto-server.sh: EC2 emulator on $endpoint (pid $(cat "$pidfile"), log $logfile)" >&2
        echo "$endpoint"
        exit 0
      fi
      if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        echo "moto-server.sh: moto_server exited; its log:" >&2
        cat "$logfile" >&2
        rm -f "$pidfile"
        exit 1
      fi
      sleep 0.1
    done
    echo "moto-server.sh: no answer on $endpoint after 30 s; see $logfile" >&2
    exit 1
    ;;
esac

#!/usr/bin/env bash
# Redis for make run and the tests: Debian's redis-server.
#   hack/redis.sh install                   install the packages when redis-server (or chromium) is missing
#   hack/redis.sh start DIR [ADDRESS]       start one on a free loopback port, AOF on, with a password
#                                           (and on ADDRESS too: the local cluster's host address,
#                                           where worker pods in their own network reach it)
#   hack/redis.sh stop DIR                  stop the one started in DIR
# `start` writes DIR/redis.env with TREADLE_REDIS_URL (password included) and keeps data in DIR.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$here/versions.env"

install() {
  # redis-server, what kube-proxy needs in the local cluster (nft for its nftables mode,
  # conntrack to flush UDP flows when a Service's endpoints change), and the headless browser
  # the UI tests drive (chromium).
  local missing=()
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v chromium >/dev/null || missing+=(chromium)
  [[ -x /usr/sbin/nft ]] || missing+=(nftables)
  [[ -x /usr/sbin/conntrack ]] || missing+=(conntrack)
  if ((${#missing[@]})); then
    echo "[redis] installing Debian's ${missing[*]}" >&2
    if [[ $(id -u) -ne 0 ]]; then sudo=sudo; else sudo=; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  local version
  version=$(redis-server --version | sed -n 's/.*v=\([0-9.]*\).*/\1/p')
  if [[ "$(printf '%s\n%s\n' "$REDIS_MIN_VERSION" "$version" | sort -V | head -1)" != "$REDIS_MIN_VERSION" ]]; then
    echo "[redis] redis-server $version is older than $REDIS_MIN_VERSION (XAUTOCLAIM fixes)" >&2
    exit 1
  fi
}

start() {
  local dir=$1 also=${2:-}
  mkdir -p "$dir"
  if [[ -f $dir/redis.pid ]] && kill -0 "$(cat "$dir/redis.pid")" 2>/dev/null; then
    echo "[redis] already running (pid $(cat "$dir/redis.pid"))" >&2
    return
  fi
  local port password
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [[ -f $dir/password ]]; then password=$(cat "$dir/password"); else
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    (umask 077 && echo "$password" >"$dir/password")
  fi
  redis-server --bind "127.0.0.1${also:+ $also}" --port "$port" --dir "$dir" --appendonly yes --appendfsync everysec \
    --requirepass "$password" --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
    --save ""
  for _ in $(seq 50); do
    redis-cli -p "$port" -a "$password" --no-auth-warning ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  (umask 077 && {
    echo "TREADLE_REDIS_URL=redis://:$password@127.0.0.1:$port/0"
    echo "TREADLE_WORKER_REDIS_URL=redis://:$password@${also:-127.0.0.1}:$port/0"
  } >"$dir/redis.env")
  echo "[redis] running on 127.0.0.1:$port (AOF on, password in $dir/password)" >&2
}

stop() {
  local dir=$1
  [[ -f $dir/redis.pid ]] || return 0
  local pid
  pid=$(cat "$dir/redis.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/redis.pid"
}

"$@"

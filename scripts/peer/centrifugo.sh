#!/usr/bin/env bash
# scripts/peer/centrifugo.sh measures Centrifugo v6 (the peer of our performance issue) on
# this machine under the conditions of scripts/bench: its own redis-server, Centrifugo and
# Redis pinned to CPU 0, the load driver (scripts/peer/centrifugo) and redis-benchmark to CPU 1.
# It runs the dm scenario 3 times (1,000 users on their server-side personal channels with
# history and recovery, 16 HTTP publishers, 10 s), then the connect storm once on a fresh
# Centrifugo (10,000 connections, 400 dialers), measures the Redis ceiling as scripts/bench
# does, and prints the medians as a markdown table.
#
# Usage: scripts/peer/centrifugo.sh [--quick]   (--quick: one dm run of 4 s)
# Env:   CENTRIFUGO_PERSONAL=client  subscribe to personal:#<user> from the client instead of
#                                    Centrifugo's automatic server-side personal channel
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

version=v6.9.1
runs=3
dur=10s
[[ ${1:-} == --quick ]] && { runs=1; dur=4s; }
personal=${CENTRIFUGO_PERSONAL:-server}
[[ $personal == server || $personal == client ]] || { echo "CENTRIFUGO_PERSONAL must be server or client" >&2; exit 1; }

command -v redis-server >/dev/null || { echo "redis-server is missing: run scripts/test once" >&2; exit 1; }
command -v redis-benchmark >/dev/null || { echo "redis-benchmark is missing (redis-tools)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is missing" >&2; exit 1; }

tmp=$(mktemp -d)
lock=/tmp/bench.lock
own_lock=
stop_centrifugo() {
	if [[ -n ${cpid:-} ]]; then kill "$cpid" 2>/dev/null || true; wait "$cpid" 2>/dev/null || true; fi
	cpid=
}
cleanup() {
	if [[ -n ${holder:-} ]]; then kill "$holder" 2>/dev/null || true; fi
	stop_centrifugo
	if [[ -n ${rpid:-} ]]; then kill "$rpid" 2>/dev/null || true; fi
	if [[ -n $own_lock ]]; then rm -f "$lock"; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Build first (CPU-heavy, before taking the lock): Centrifugo, cached across runs, and the driver.
cache=${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-peer
bin=$cache/centrifugo-$version
if [[ ! -x $bin ]]; then
	echo "building Centrifugo $version (once; cached in $bin)" >&2
	mkdir -p "$cache" "$tmp/gobin"
	GOBIN="$tmp/gobin" go install "github.com/centrifugal/centrifugo/v6@$version"
	mv "$tmp/gobin/centrifugo" "$bin"
fi
go build -o "$tmp/driver" ./scripts/peer/centrifugo

# The machine is shared: wait for whoever is measuring, then hold the lock while we measure.
until (set -C; echo centrifugo >"$lock") 2>/dev/null; do
	echo "waiting for $lock ($(cat "$lock" 2>/dev/null || true))" >&2
	sleep 10
done
own_lock=1

# Another benchmark running without the lock would skew ours: before each measurement wait
# (up to 5 minutes, then go on with a warning) until the machine is idle apart from us.
busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
wait_quiet() {
	local a b
	for _ in $(seq 100); do
		a=$(busy_ticks); sleep 3; b=$(busy_ticks)
		(( b - a < 45 )) && return 0 # under 0.15 cores
		echo "the machine is busy ($(( (b - a) / 3 ))% of a core outside us): waiting" >&2
	done
	echo "warning: measuring on a busy machine" >&2
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$tmp" >"$tmp/redis.log" 2>&1 &
rpid=$!
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done

secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
apikey=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
cport=$(free_port)
server_sub=true
[[ $personal == client ]] && server_sub=false
# The personal channel of user u is "personal:#u": namespace "personal" keeps 1,000 messages
# for 24 h per channel and forces recovery (positioning included), like our per-user streams.
cat >"$tmp/config.json" <<JSON
{
  "log": {"level": "warn"},
  "http_server": {"address": "127.0.0.1", "port": $cport},
  "engine": {"type": "redis", "redis": {"address": ["redis://127.0.0.1:$rport"], "prefix": "centrifugo"}},
  "client": {
    "token": {"hmac_secret_key": "$secret"},
    "allowed_origins": ["*"],
    "subscribe_to_user_personal_channel": {"enabled": $server_sub, "personal_channel_namespace": "personal"}
  },
  "channel": {
    "namespaces": [{
      "name": "personal",
      "history_size": 1000,
      "history_ttl": "24h",
      "force_recovery": true,
      "allow_user_limited_channels": true
    }]
  },
  "http_api": {"key": "$apikey"},
  "health": {"enabled": true},
  "usage_stats": {"disabled": true}
}
JSON
"$bin" checkconfig -c "$tmp/config.json" >/dev/null
url="http://127.0.0.1:$cport"
start_centrifugo() {
	taskset -c 0 "$bin" -c "$tmp/config.json" >>"$tmp/centrifugo.log" 2>&1 &
	cpid=$!
	for _ in $(seq 200); do
		curl -sf "$url/health" >/dev/null && return 0
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.05
	done
	echo "Centrifugo did not start:" >&2; cat "$tmp/centrifugo.log" >&2; exit 1
}
start_centrifugo

driver_flags=(--url "$url" --secret "$secret" --api-key "$apikey")
[[ $personal == client ]] && driver_flags+=(--client-sub)
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }
pick() { for i in $(seq "$runs"); do field "$1" <"$tmp/dm-$i.json"; done | median; }

# The Redis ceiling, exactly as scripts/bench: the XADD+PUBLISH script as EVAL, one call per
# round trip (-c 50) and pipelined (-P 16), with 1,000 users' channels subscribed (here
# through Centrifugo).
script="local id = redis.call('XADD', KEYS[1], 'MAXLEN', '1000', '*', 'e', ARGV[1]) redis.call('PUBLISH', KEYS[2], id) return id"
ceiling() { # run-tag calls [redis-benchmark options]; each run on 1,000 fresh streams
	taskset -c 1 redis-benchmark -p "$rport" -c 50 -r 1000 -n "$2" ${3:-} --csv EVAL "$script" 2 \
		"bench:$1:s:__rand_int__" "bench:$1:c:__rand_int__" "payload-of-one-hundred-bytes-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" |
		tail -1 | python3 -c 'import csv,sys; print(round(float(next(csv.reader(sys.stdin))[1])))'
}
taskset -c 1 "$tmp/driver" "${driver_flags[@]}" --conns --conn-count 1000 --hold 60s 2>"$tmp/holder.err" >/dev/null &
holder=$!
sleep 3
wait_quiet
single=$(for i in 1 2 3; do ceiling "one$i" 200000; done | median)
piped=$(for i in 1 2 3; do ceiling "piped$i" 400000 "-P 16"; done | median)
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
holder=

for i in $(seq "$runs"); do
	wait_quiet
	echo "dm run $i of $runs" >&2
	taskset -c 1 "$tmp/driver" "${driver_flags[@]}" --users 1000 --publishers 16 --duration "$dur" \
		--pid "$cpid" --redis-pid "$rpid" --json >"$tmp/dm-$i.json" 2>"$tmp/dm-$i.err" || {
		echo "dm run $i failed:" >&2; cat "$tmp/dm-$i.err" >&2; exit 1; }
	sed 's/^/  /' "$tmp/dm-$i.err" >&2
done
dm_rate=$(pick "['delivery']['per_second']")
dm_p50=$(pick "['delivery']['latency']['p50_ms']"); dm_p99=$(pick "['delivery']['latency']['p99_ms']")
dm_lost=$(pick "['delivery']['lost']"); dm_dup=$(pick "['delivery']['duplicated']")
dm_srv=$(pick "['server']['cpu_us_per_op']"); dm_redis=$(pick "['redis']['cpu_us_per_op']")
dm_srv_cores=$(pick "['server']['cpu_cores']"); dm_redis_cores=$(pick "['redis']['cpu_cores']")
dm_tool_cores=$(pick "['tool']['cpu_cores']")
dm_other=$(for i in $(seq "$runs"); do field "['other_cores']" <"$tmp/dm-$i.json"; done | sort -n | tail -1)

# The connect storm on a fresh Centrifugo (RSS per connection means something only there).
stop_centrifugo
start_centrifugo
wait_quiet
echo "conns run" >&2
taskset -c 1 "$tmp/driver" "${driver_flags[@]}" --conns --conn-count 10000 --dialers 400 \
	--pid "$cpid" --redis-pid "$rpid" --json >"$tmp/conns.json" 2>"$tmp/conns.err" || {
	echo "conns run failed:" >&2; cat "$tmp/conns.err" >&2; exit 1; }
sed 's/^/  /' "$tmp/conns.err" >&2
cn_rate=$(field "['connect']['per_second']" <"$tmp/conns.json")
cn_rss=$(field "['server']['rss_per_conn_kb']" <"$tmp/conns.json")
cn_cpu=$(field "['server']['cpu_us_per_op']" <"$tmp/conns.json")
cn_redis=$(field "['redis']['cpu_us_per_op']" <"$tmp/conns.json")
cn_other=$(field "['other_cores']" <"$tmp/conns.json")

stop_centrifugo
kill "$rpid" 2>/dev/null || true
wait "$rpid" 2>/dev/null || true
rpid=
rm -f "$lock"
own_lock=

ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.2f}')"; }
if [[ $personal == server ]]; then
	how="server-side personal channel \`personal:#<user>\` (\`client.subscribe_to_user_personal_channel\`)"
else
	how="client-side subscription to the user-limited channel \`personal:#<user>\`"
fi
cat <<MD
## Centrifugo $version on this machine

Measured by \`scripts/peer/centrifugo.sh\` on $(date -u +%Y-%m-%d) — $(nproc) cores, Linux $(uname -r), $(go version | cut -d' ' -f3), Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/').
Redis engine, $how, history 1,000 messages / 24 h with forced recovery.
Centrifugo and Redis pinned to CPU 0, the driver and redis-benchmark to CPU 1; dm rows are medians of $runs runs of $dur.

| measure | Centrifugo |
| --- | --- |
| DMs by HTTP (\`POST /api/publish\`): 1,000 users, 16 publishers | $dm_rate delivered/s |
| latency p50 / p99 | $dm_p50 ms / $dm_p99 ms |
| lost / duplicated | $dm_lost / $dm_dup |
| Centrifugo µs CPU per DM | $dm_srv ($dm_srv_cores cores) |
| Redis µs CPU per DM | $dm_redis ($dm_redis_cores cores) |
| the driver's own CPU (CPU 1) | $dm_tool_cores cores |
| CPU of other processes during the runs (should be ~0) | dm at most $dm_other cores, conns $cn_other cores |
| connect storm: 10,000 connections, 400 dialers, personal channel confirmed | $cn_rate connections/s ($cn_cpu µs Centrifugo CPU, $cn_redis µs Redis CPU per connection) |
| RSS per idle connection (fresh Centrifugo) | $cn_rss KB |

Redis ceiling of this run (XADD+PUBLISH script as EVAL, \`redis-benchmark -c 50 -r 1000\`, 1,000 users connected):
one call per round trip $single calls/s, pipelined (\`-P 16\`) $piped calls/s.
Centrifugo's DM rate is $(ratio "$dm_rate" "$single") of the one-call ceiling ($(ratio "$dm_rate" "$piped") of pipelined).
MD

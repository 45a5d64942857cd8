#!/usr/bin/env bash
# scripts/peer/fanout.sh measures room fan-out side by side with Centrifugo v6 (the peer of
# the rooms issue) under the conditions of scripts/bench: each server with its own
# redis-server, both pinned to CPU 0, the load drivers on CPU 1, one run at a time under
# /tmp/bench.lock, each run after the machine has gone quiet.
#
# For each point (members, posts/s offered; rate 0 = saturation, as fast as 4 publishers go):
#   a) Switchboard with its defaults (a room from --big-room-threshold members up, 500 by
#      default, is delivered by fan-out on read): `switchboard-load fanout`;
#   b) Centrifugo, the room one channel with one history (namespace "room": 1,000 messages,
#      24 h, forced recovery, client subscriptions allowed): scripts/peer/centrifugo --fanout,
#      which counts every delivery the way switchboard-load does;
# then c) Switchboard with --big-room-threshold off (every room on the per-member path) at
# saturation for 100 and 1,000 members, against the issue's baseline of that path.
# Both drivers send the same payload (--payload-bytes, default switchboard-load's 100) from
# 4 HTTP publishers for the same duration, and both count lost, duplicated and reordered
# deliveries per member. The result is a markdown table on stdout (and in --out).
#
# Both wait up to 15 s (--grace) for late deliveries before counting them lost: at 10,000
# members on a busy machine deliveries can lag by seconds.
#
# Usage: scripts/peer/fanout.sh [--quick] [--out FILE] [--payload-bytes N] [--latency N]
#   --quick  4 s per point and at most ~10 s of waiting for a quiet machine (a smoke check);
#            the default is 10 s per point, ~12 minutes in all on a quiet machine
#   --out    also write the table to FILE, and every run's JSON to FILE.runs/
#   --latency N  only the latency point instead (1,000 members, 50 posts/s), N rounds, each
#            round one run of each server on a fresh server and Redis; prints every run's
#            p50 / p99 and their medians (one 10 s run varies by a few ms)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

version=v6.9.1
dur=10s
quiet_tries=100 # × 3 s: wait up to 5 minutes for a quiet machine before each run
out= quick= latency=
payload=100 # cmd/switchboard-load's default (defaultPayloadBytes), passed to both drivers
grace=15s   # how long both drivers wait for late deliveries before counting them lost
while (($#)); do
	case $1 in
	--quick) quick=1; dur=4s; quiet_tries=3 ;;
	--out) out=${2:?--out needs a file}; shift ;;
	--payload-bytes) payload=${2:?--payload-bytes needs a number}; shift ;;
	--latency) latency=${2:?--latency needs a number of rounds}; shift ;;
	*) echo "usage: scripts/peer/fanout.sh [--quick] [--out FILE] [--payload-bytes N] [--latency N]" >&2; exit 2 ;;
	esac
	shift
done
# The points: members and the posts/s offered (0 = saturation).
rates_1k=(20 50 100 200 400 0)
rates_10k=(5 20 50 0)
small_members=(100 1000) # the per-member path, at saturation

command -v redis-server >/dev/null || { echo "redis-server is missing: run scripts/test once" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset (util-linux) is missing" >&2; exit 1; }
# 10,000 members: the servers and drivers each hold 10,000+ sockets.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 10400)) || { echo "the file descriptor limit ($(ulimit -n)) is below 10,400" >&2; exit 1; }

tmp=$(mktemp -d)
lock=/tmp/bench.lock
own_lock=
stop_servers() {
	local p
	for p in ${spid:-} ${cpid:-} ${rpid:-}; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	spid= cpid= rpid=
}
cleanup() {
	stop_servers
	if [[ -n $own_lock ]]; then rm -f "$lock"; fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Build first (CPU-heavy, before taking the lock).
cache=${XDG_CACHE_HOME:-$HOME/.cache}/switchboard-peer
cbin=$cache/centrifugo-$version
if [[ ! -x $cbin ]]; then
	echo "building Centrifugo $version (once; cached in $cbin)" >&2
	mkdir -p "$cache" "$tmp/gobin"
	GOBIN="$tmp/gobin" go install "github.com/centrifugal/centrifugo/v6@$version"
	mv "$tmp/gobin/centrifugo" "$cbin"
fi
go build -o "$tmp/switchboard" ./cmd/switchboard
go build -o "$tmp/load" ./cmd/switchboard-load
go build -o "$tmp/driver" ./scripts/peer/centrifugo

until (set -C; echo peer-fanout >"$lock") 2>/dev/null; do
	echo "waiting for $lock ($(cat "$lock" 2>/dev/null || true))" >&2
	sleep 10
done
own_lock=1

busy_ticks() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
wait_quiet() { # until the machine (our idle servers included) is under 0.15 cores busy
	local a b
	for _ in $(seq "$quiet_tries"); do
		a=$(busy_ticks); sleep 3; b=$(busy_ticks)
		(( b - a < 45 )) && return 0
		echo "the machine is busy ($(( (b - a) / 3 ))% of a core): waiting" >&2
	done
	echo "warning: measuring on a busy machine" >&2
	echo busy >>"$tmp/busy"
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_redis() {
	rport=$(free_port)
	mkdir -p "$tmp/redis-$rport"
	taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --daemonize no --dir "$tmp/redis-$rport" >"$tmp/redis.log" 2>&1 &
	rpid=$!
	until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
}
start_switchboard() { # extra server flags
	start_redis
	sport=$(free_port)
	taskset -c 0 "$tmp/switchboard" --addr "127.0.0.1:$sport" --redis "redis://127.0.0.1:$rport/0" --log-level warn \
		--ip-connect-limit off --user-connect-limit off "$@" >>"$tmp/server.log" 2>&1 &
	spid=$!
	for _ in $(seq 400); do
		curl -sf "http://127.0.0.1:$sport/readyz" >/dev/null && return 0
		kill -0 "$spid" 2>/dev/null || break
		sleep 0.05
	done
	echo "Switchboard did not start:" >&2; cat "$tmp/server.log" >&2; exit 1
}
secret=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
apikey=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
start_centrifugo() {
	start_redis
	cport=$(free_port)
	# The room is one channel in namespace "room", with the history Switchboard keeps per room
	# stream by default (--room-history-size 1000, --history-ttl 24h) and forced recovery.
	cat >"$tmp/centrifugo.json" <<JSON
{
  "log": {"level": "warn"},
  "http_server": {"address": "127.0.0.1", "port": $cport},
  "engine": {"type": "redis", "redis": {"address": ["redis://127.0.0.1:$rport"], "prefix": "centrifugo"}},
  "client": {"token": {"hmac_secret_key": "$secret"}, "allowed_origins": ["*"]},
  "channel": {
    "namespaces": [{
      "name": "room",
      "history_size": 1000,
      "history_ttl": "24h",
      "force_recovery": true,
      "allow_subscribe_for_client": true
    }]
  },
  "http_api": {"key": "$apikey"},
  "health": {"enabled": true},
  "usage_stats": {"disabled": true}
}
JSON
	"$cbin" checkconfig -c "$tmp/centrifugo.json" >/dev/null
	taskset -c 0 "$cbin" -c "$tmp/centrifugo.json" >>"$tmp/centrifugo.log" 2>&1 &
	cpid=$!
	for _ in $(seq 400); do
		curl -sf "http://127.0.0.1:$cport/health" >/dev/null && return 0
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.05
	done
	echo "Centrifugo did not start:" >&2; cat "$tmp/centrifugo.log" >&2; exit 1
}

# measure name cmd...: one run; its JSON in $tmp/name.json. A run that fails its checks
# (exit 1: something lost, a connection dropped) still has its JSON and goes in the table.
measure() {
	local name=$1; shift
	wait_quiet
	echo "$name" >&2
	local rc=0
	taskset -c 1 "$@" >"$tmp/$name.json" 2>"$tmp/$name.err" || rc=$?
	if ((rc > 1)) || [[ ! -s $tmp/$name.json ]]; then
		echo "  run $name did not complete (exit $rc):" >&2; tail -5 "$tmp/$name.err" >&2
		rm -f "$tmp/$name.json"
	fi
}
sb_run() { # members rate
	measure "sb-$1-$2" "$tmp/load" fanout --url "http://127.0.0.1:$sport" --members "$1" --rate "$2" --duration "$dur" \
		--publishers 4 --payload-bytes "$payload" --grace "$grace" --json --quiet --pid "$spid" --redis-pid "$rpid"
}
cf_run() { # members rate
	measure "cf-$1-$2" "$tmp/driver" --fanout --url "http://127.0.0.1:$cport" --secret "$secret" --api-key "$apikey" \
		--members "$1" --rate "$2" --duration "$dur" --publishers 4 --payload-bytes "$payload" --grace "$grace" --json \
		--pid "$cpid" --redis-pid "$rpid"
}

if [[ -n $latency ]]; then
	for i in $(seq "$latency"); do
		start_switchboard
		sb_run 1000 50
		[[ ! -s $tmp/sb-1000-50.json ]] || mv "$tmp/sb-1000-50.json" "$tmp/lat-sb-$i.json"
		stop_servers
		start_centrifugo
		cf_run 1000 50
		[[ ! -s $tmp/cf-1000-50.json ]] || mv "$tmp/cf-1000-50.json" "$tmp/lat-cf-$i.json"
		stop_servers
	done
	python3 - "$tmp" "$latency" "$payload" <<'PY' | tee ${out:+"$out"}
import json, os, statistics, sys
tmp, n, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3]
print(f"1,000 members, 50 posts/s offered, payload {payload} bytes, {n} rounds (each: Switchboard, then Centrifugo):")
print()
print("| server | p50 ms per run | p99 ms per run | median p50 / p99 ms | to last member p99, median | lost |")
print("| --- | --- | --- | --- | --- | --- |")
for key, name in (("sb", "Switchboard"), ("cf", "Centrifugo")):
    runs = []
    for i in range(1, n + 1):
        try:
            with open(os.path.join(tmp, f"lat-{key}-{i}.json")) as f:
                runs.append(json.load(f)["delivery"])
        except (OSError, ValueError):
            pass
    if not runs:
        print(f"| {name} | no run completed | | | | |")
        continue
    p50 = [r["latency"]["p50_ms"] for r in runs]
    p99 = [r["latency"]["p99_ms"] for r in runs]
    last = [r.get("complete", {}).get("p99_ms", 0) for r in runs]
    print(f"| {name} | {', '.join(f'{x:.1f}' for x in p50)} | {', '.join(f'{x:.1f}' for x in p99)} | "
          f"{statistics.median(p50):.1f} / {statistics.median(p99):.1f} | {statistics.median(last):.1f} | {sum(r['lost'] for r in runs)} |")
PY
	exit 0
fi

start_switchboard
for r in "${rates_1k[@]}"; do sb_run 1000 "$r"; done
for r in "${rates_10k[@]}"; do sb_run 10000 "$r"; done
stop_servers

start_centrifugo
for r in "${rates_1k[@]}"; do cf_run 1000 "$r"; done
for r in "${rates_10k[@]}"; do cf_run 10000 "$r"; done
stop_servers

start_switchboard --big-room-threshold off
for m in "${small_members[@]}"; do
	measure "pm-$m-0" "$tmp/load" fanout --url "http://127.0.0.1:$sport" --members "$m" --rate 0 --duration "$dur" \
		--publishers 4 --payload-bytes "$payload" --grace "$grace" --json --quiet --pid "$spid" --redis-pid "$rpid"
done
stop_servers
rm -f "$lock"
own_lock=

busy=no
[[ -s $tmp/busy ]] && busy="yes ($(wc -l <"$tmp/busy") runs started without a quiet machine)"
header="## Room fan-out side by side with Centrifugo $version

Measured by \`scripts/peer/fanout.sh${quick:+ --quick}\` on $(date -u +%Y-%m-%d) — $(nproc) cores, Linux $(uname -r), $(go version | cut -d' ' -f3), Redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/').
Each server with its own redis-server, both pinned to CPU 0; the drivers on CPU 1. One run of $dur per point,
4 HTTP publishers, payload $payload bytes; rate 0 = saturation (as fast as the publishers go). Busy machine during some run: $busy."
python3 - "$tmp" "$header" "${rates_1k[*]}" "${rates_10k[*]}" "${small_members[*]}" <<'PY' | tee "$tmp/table.md"
import json, os, sys
tmp, header = sys.argv[1], sys.argv[2]
rates = {1000: [int(x) for x in sys.argv[3].split()], 10000: [int(x) for x in sys.argv[4].split()]}
small = [int(x) for x in sys.argv[5].split()]

def load(name):
    try:
        with open(os.path.join(tmp, name + ".json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def g(d, *path, default=0):
    for p in path:
        if not isinstance(d, dict) or d.get(p) is None:
            return default
        d = d[p]
    return d

def tool(d):  # the driver's own CPU: switchboard-load says load_tool, the peer driver tool
    return g(d, "load_tool", "cpu_cores") or g(d, "tool", "cpu_cores")

def failed(d):
    return bool(g(d, "failures", default=None) or g(d, "failed", default=""))

def ms(v):  # 0: no sample (no post reached every member, say)
    return f"{v:.1f}" if v else "—"

def cells(d):
    if d is None:
        return ["did not run"] + [""] * 5
    dl = d["delivery"]
    return [
        f"{dl['per_second']:,.0f}",
        f"{g(d, 'send', 'accepted_per_second'):,.0f}",
        f"{ms(g(dl, 'latency', 'p50_ms'))} / {ms(g(dl, 'latency', 'p99_ms'))}",
        ms(g(dl, 'complete', 'p99_ms')),
        f"{100 * g(d, 'server', 'cpu_cores'):.0f} / {100 * g(d, 'redis', 'cpu_cores'):.0f} / {100 * tool(d):.0f}",
        f"{dl['lost']}/{dl['duplicated']}/{dl['out_of_order']}" + (" FAIL" if failed(d) else ""),
    ]

print(header)
print()
cols = ["deliveries/s", "posts/s", "p50 / p99 ms", "to last member p99 ms", "CPU % server / Redis / driver", "lost/dup/reorder"]
print("| members | posts/s offered | " + " | ".join("Switchboard " + c for c in cols) + " | " + " | ".join("Centrifugo " + c for c in cols) + " |")
print("|" + " --- |" * (2 + 2 * len(cols)))
notes = []
for members in (1000, 10000):
    for r in rates[members]:
        sb, cf = load(f"sb-{members}-{r}"), load(f"cf-{members}-{r}")
        print(f"| {members:,} | {'saturation' if r == 0 else r} | " + " | ".join(cells(sb)) + " | " + " | ".join(cells(cf)) + " |")
        for who, d in (("Switchboard", sb), ("Centrifugo", cf)):
            if d is None:
                continue
            why = g(d, "failures", default=None) or ([d["failed"]] if d.get("failed") else [])
            if why:
                notes.append(f"{who}, {members:,} members, rate {r}: " + "; ".join(why))
            if tool(d) > 0.85:
                notes.append(f"{who}, {members:,} members, rate {r}: the driver used {tool(d):.2f} cores of its 1 (it may be the limit)")
            if g(d, "sessions", "closes", default=None):
                notes.append(f"{who}, {members:,} members, rate {r}: the server closed connections (" +
                             ", ".join(f"{k} ×{v}" for k, v in d["sessions"]["closes"].items()) + "); they resumed")
            if g(d, "other_cores") > 0.15:
                notes.append(f"{who}, {members:,} members, rate {r}: other processes used {g(d, 'other_cores'):.2f} cores")
print()
for members in (1000, 10000):
    sb, cf = load(f"sb-{members}-0"), load(f"cf-{members}-0")
    if sb and cf and cf["delivery"]["per_second"]:
        print(f"- saturation, {members:,} members: Switchboard/Centrifugo deliveries/s = "
              f"{sb['delivery']['per_second']:,.0f} / {cf['delivery']['per_second']:,.0f} = **{sb['delivery']['per_second'] / cf['delivery']['per_second']:.2f}**")
print()
print("Small rooms: Switchboard with `--big-room-threshold off` (every room on the per-member path), saturation:")
print()
print("| members | deliveries/s | posts/s | p50 / p99 ms | to last member p99 ms | CPU % server / Redis / driver | lost/dup/reorder | vs the issue's baseline |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for m in small:
    d = load(f"pm-{m}-0")
    base = ""
    if d and m == 1000:
        base = f"{d['delivery']['per_second'] / 94700:.2f}× of 94,700"
    print(f"| {m:,} | " + " | ".join(cells(d)) + f" | {base} |")
    if d and (g(d, "failures", default=None)):
        notes.append(f"per-member path, {m:,} members: " + "; ".join(d["failures"]))
    if d and tool(d) > 0.85:
        notes.append(f"per-member path, {m:,} members: the driver used {tool(d):.2f} cores of its 1 (it may be the limit)")
if notes:
    print()
    print("Notes:")
    for n in notes:
        print("- " + n)
PY
if [[ -n $out ]]; then
	cp "$tmp/table.md" "$out"
	mkdir -p "$out.runs"
	cp "$tmp"/*.json "$tmp"/*.err "$out.runs/" 2>/dev/null || true
	echo "wrote $out and $out.runs/" >&2
fi

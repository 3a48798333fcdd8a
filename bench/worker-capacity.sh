#!/usr/bin/env bash
# How many calls one `ctmflow worker` process handles: the production
# topology on this machine — a Temporal server (`ctmflow dev`'s, its own
# worker idle on another task queue), Postgres, one `ctmflow webhook`, one
# `ctmflow worker` — driven by `ctmflow bench --url` at saturation. The
# worker's CPU comes from its own /metrics (process_cpu_seconds_total), so
# the report gives both what the whole box sustained and what one call
# costs the worker alone.
#
#   bench/worker-capacity.sh [duration] [clients]     (default 60s 16)
#
# Needs Postgres at $PGURL (default the local one, trust auth), curl, jq.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${1:-60s}
clients=${2:-16}
pgurl=${PGURL:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
work=$(mktemp -d)
bin=$work/ctmflow
db=ctmflow_capacity_$$
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pgurl" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

wait_for() { # url
  for _ in $(seq 1 120); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.5; done
  echo "capacity: $1 never answered" >&2
  return 1
}
cpu() { # seconds of CPU the worker has used
  curl -fsS http://127.0.0.1:39090/metrics | awk '$1 == "process_cpu_seconds_total" { print $2 }'
}

go build -o "$bin" ./cmd/ctmflow
psql "$pgurl" -qc "CREATE DATABASE $db" >/dev/null

"$bin" dev --data-dir "$work/dev" --http-addr 127.0.0.1:38080 --temporal-port 37233 --ui-port 0 \
  >"$work/dev.log" 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:38080/readyz

export DATABASE_URL=${pgurl%/*}/$db?sslmode=disable
export TEMPORAL_ADDRESS=127.0.0.1:37233 TEMPORAL_TASK_QUEUE=capacity
export CTM_WEBHOOK_SECRETS=1=capacity_secret API_TOKEN=capacity_token_0123456789
export LOG_LEVEL=warn
"$bin" migrate
HTTP_ADDR=127.0.0.1:38081 "$bin" webhook 2>"$work/webhook.log" &
pids+=($!)
METRICS_ADDR=127.0.0.1:39090 "$bin" worker 2>"$work/worker.log" &
pids+=($!)
wait_for http://127.0.0.1:38081/readyz
wait_for http://127.0.0.1:39090/readyz

# The saturation scenario first runs bare Temporal lifecycles (workers
# inside the bench process, on another queue) for the same duration, then
# ctmflow's; the worker's CPU over both is nearly all the second half.
before=$(cpu)
"$bin" bench --url http://127.0.0.1:38081 --token "$API_TOKEN" --account 1 --secret capacity_secret \
  --temporal 127.0.0.1:37233 --scenarios saturation --concurrency "$clients" \
  --duration "$duration" --json >"$work/report.json"
after=$(cpu)

jq -r --argjson cpu "$(echo "$after - $before" | bc -l)" --argjson cores "$(nproc)" \
  --arg d "$duration" --arg c "$clients" '
  def r2: . * 100 | round / 100;
  def ms: . / 1e6 | r2;
  .saturation as $s | $s.ours as $l |
  "worker capacity — \(.machine) — \($d), \($c) back-to-back clients\n" +
  "  bare Temporal lifecycles   \($s.bare_lifecycles_per_second | r2)/s (same server, same run)\n" +
  "  ctmflow lifecycles         \($l.completed) completed, \($l.throughput | r2)/s, errors \($l.errors)\n" +
  "  call-start ack → lead      p50 \($l.start_to_lead.p50 | ms) ms, p99 \($l.start_to_lead.p99 | ms) ms\n" +
  "  worker CPU                 \($cpu | r2) s, \($cpu / $l.completed * 1000 | r2) ms per lifecycle\n" +
  "  one worker, CPU-bound on \($cores) dedicated cores: ≈ \($cores / ($cpu / $l.completed) | round) lifecycles/s"
' "$work/report.json"

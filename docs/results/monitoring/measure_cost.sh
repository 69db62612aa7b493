#!/usr/bin/env bash
# Monitoring's cost, side by side in one run: Ray runs of one recipe, each on a fresh local
# cluster, alternately set up as MONITORING=1 sets it up (the nodes exporting their metrics
# every PROMETHEUS_SCRAPE_SECONDS, Prometheus scraping them that often, through the functions
# of scripts/lib/monitoring.sh) and as MONITORING=0 leaves it (Ray's defaults, no Prometheus), in
# the order on, off, off, on. Prints one line per run: images/s and Prometheus' CPU time.
#
# Usage: docs/results/monitoring/measure_cost.sh   (about 8 minutes on 2 cores)
#   PROMETHEUS_SCRAPE_SECONDS=5  the interval measured (the committed figures: 5 and 2)
#   OUT=/tmp/monitoring-cost     where the runs go
set -o errexit -o nounset -o pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/monitoring.sh
source scripts/lib/monitoring.sh

OUT="${OUT:-/tmp/monitoring-cost}"
export RAY_PORT=6393 DASHBOARD_PORT=8273 CLUSTER_DIR=/tmp/ray-demo-6393 NUM_WORKERS=2 CPUS_PER_WORKER=1
PROMETHEUS_PORT=9193

# One Ray run of the recipe on the cluster at RAY_ADDRESS, into folder $1.
train() {
  .venv/bin/python -m lesson.ray_training --dataset synthetic --train-size 2048 --test-size 512 --epochs 3 \
    --batch-size 64 --num-workers 2 --cpus-per-worker 1 --results-dir "$1" --address "$RAY_ADDRESS" >"$1.log" 2>&1
}

main() {
  local index=0 arm prometheus_cpu stat
  rm -rf "$OUT"
  mkdir -p "$OUT"
  trap 'stop_monitoring; ./scripts/local-cluster.sh stop >/dev/null' EXIT
  for arm in on off off on; do
    index=$((index + 1))
    unset RAY_PROMETHEUS_HOST RAY_metrics_report_interval_ms
    if [[ "$arm" == on ]]; then
      MONITORING=1
      prepare_monitoring "$OUT/$index-$arm"
    fi
    ./scripts/local-cluster.sh start >"$OUT/$index-$arm-cluster.log" 2>&1
    eval "$(./scripts/local-cluster.sh env)"
    [[ "$arm" == off ]] || start_monitoring
    train "$OUT/$index-$arm"
    prometheus_cpu=""
    if [[ "$arm" == on ]]; then
      read -r -a stat <"/proc/$PROMETHEUS_PID/stat"
      prometheus_cpu=" prometheus_cpu_seconds=$(awk -v ticks=$((stat[13] + stat[14])) -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", ticks / hz }')"
      stop_monitoring
    fi
    ./scripts/local-cluster.sh stop >/dev/null
    echo "$index $arm$prometheus_cpu $(.venv/bin/python -c "import json, sys; r = json.load(open(sys.argv[1])); print('images/s %.2f, epochs %s' % (r['images_per_second'], [round(t, 1) for t in r['epoch_times_seconds']]))" "$OUT/$index-$arm/ray_results_2workers.json")"
  done
}

main "$@"

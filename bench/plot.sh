#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Draws the bench plots from what `plexus-bench --csv DIR/table.csv
# --data-dir DIR` wrote into DIR (make bench does):
#   throughput-vs-size.png  pubsub msgs/s by payload size: plexus, zmq, nats
#   fanout.png              fanout msgs/s per subscriber by subscribers
#   reqrep-latency-cdf.png  reqrep latency distribution at 10k req/s
#   scaling.png             scaling msgs/s by instances
#   failover-timeline.png   confirmed msgs/ms around each kill -9
# A plot whose data is missing (scenario not run) is skipped with a note.
# Needs gnuplot (Debian: gnuplot-nox, installed by scripts/install-deps.sh).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
  echo "usage: bench/plot.sh RESULTS_DIR" >&2
  exit 2
fi
dir=$1
csv=$dir/table.csv
if ! command -v gnuplot >/dev/null 2>&1; then
  echo "plot.sh: gnuplot not found; scripts/install-deps.sh installs it (gnuplot-nox)" >&2
  exit 1
fi
if [ ! -f "$csv" ]; then
  echo "plot.sh: $csv not found (plexus-bench --csv writes it)" >&2
  exit 1
fi

# series SCENARIO METRIC OUT: one gnuplot block per system ("x median min
# max"; x = the leading number of the case name: 128B -> 128, 4inst -> 4,
# 128B-16sub -> 16 with XFIELD=last); prints the systems in order.
series() {
  local scenario=$1 metric=$2 out=$3 xfield=${4:-first}
  awk -F, -v sc="$scenario" -v m="$metric" -v xf="$xfield" '
    /^#/ || $1 == "scenario" { next }
    $1 == sc && $4 == m && $2 !~ /-(ipc|inproc)$/ {
      x = $2
      if (xf == "last") sub(/^.*-/, "", x)
      sub(/[^0-9.].*$/, "", x)
      if (!($3 in rows)) order[++n] = $3
      rows[$3] = rows[$3] x " " $5 " " $7 " " $8 "\n"
    }
    END {
      for (i = 1; i <= n; i++) printf "# %s\n%s\n\n", order[i], rows[order[i]]
      for (i = 1; i <= n; i++) printf "%s ", order[i] > "/dev/stderr"
    }' "$csv" 2>&1 >"$out"
}

common='set terminal pngcairo size 900,560 noenhanced font ",10"
set grid
set key top right'

plot_series() { # NAME SCENARIO METRIC XLABEL YLABEL XFIELD EXTRA
  local name=$1 scenario=$2 metric=$3 xlabel=$4 ylabel=$5 xfield=$6 extra=${7:-}
  local data=$dir/$name.dat systems
  systems=$(series "$scenario" "$metric" "$data" "$xfield")
  if [ -z "$systems" ]; then
    echo "plot.sh: no $scenario $metric rows in $csv; $name.png skipped"
    rm -f "$data"
    return
  fi
  gnuplot <<GP
$common
set output '$dir/$name.png'
systems = '$systems'
$extra
set title '$scenario: $metric (median, bars: min..max)'
set xlabel '$xlabel'
set ylabel '$ylabel'
set logscale x 2
set yrange [0:*]
plot for [i=1:words(systems)] '$data' index (i-1) using 1:2:3:4 with yerrorlines title word(systems, i)
GP
  echo "plot.sh: $dir/$name.png"
}

plot_series throughput-vs-size pubsub msgs_per_s 'payload (bytes)' 'msgs/s' first
plot_series fanout fanout msgs_per_s 'subscribers' 'msgs/s per subscriber' last
plot_series scaling scaling msgs_per_s 'instances' 'msgs/s' first

cdf=$dir/reqrep-cdf.dat
if [ -f "$cdf" ]; then
  systems=$(awk '/^# / { sub(/^# /, ""); sub(/:.*/, ""); printf "%s ", $0 }' "$cdf")
  gnuplot <<GP
$common
set output '$dir/reqrep-latency-cdf.png'
systems = '$systems'
set title 'reqrep: round-trip latency at 10k requests/s, 128 B (all runs)'
set xlabel 'latency (us)'
set ylabel 'percentile'
set logscale xy
set key top left
set ytics ('50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)
plot for [i=1:words(systems)] '$cdf' index (i-1) using 1:(\$2 < 1 ? 1/(1-\$2) : 1/0) with lines lw 2 title word(systems, i)
GP
  echo "plot.sh: $dir/reqrep-latency-cdf.png"
else
  echo "plot.sh: $cdf not found (reqrep with --data-dir); reqrep-latency-cdf.png skipped"
fi

timeline=$dir/failover-timeline.dat
if [ -f "$timeline" ]; then
  cases=$(awk '/^# / { sub(/^# /, ""); sub(/:.*/, ""); printf "%s ", $0 }' "$timeline")
  gnuplot <<GP
$common
set output '$dir/failover-timeline.png'
cases = '$cases'
set title 'failover: confirmed msgs/ms around kill -9 (t = 0), 5000 msgs/s offered, first run'
set xlabel 'ms from the kill'
set ylabel 'confirmed msgs/ms (10 ms bins)'
set arrow from 0, graph 0 to 0, graph 1 nohead dt 2
plot for [i=1:words(cases)] '$timeline' index (i-1) using 1:2 with steps lw 2 title word(cases, i)
GP
  echo "plot.sh: $dir/failover-timeline.png"
else
  echo "plot.sh: $timeline not found (failover with --data-dir); failover-timeline.png skipped"
fi

set terminal pngcairo size 900,560 noenhanced
set grid

set output 'bench/results/latency-signed/latency_vs_instances.png'
set title 'request.json rename -> claim / durable publish (events), embedded backend'
set xlabel 'provider instances'; set ylabel 'ms'; set logscale x; set key outside right top
plot 'bench/results/latency-signed/latency.dat' u 1:2 w lp t 'claim p50', '' u 1:3 w lp t 'claim p99', '' u 1:5 w lp t 'publish p50', '' u 1:6 w lp t 'publish p99', '' u 1:7 w lp t 'publish max'
unset logscale
set output 'bench/results/latency-signed/memory_vs_instances.png'
set title 'carsyncd memory vs instances'
set xlabel 'provider instances'; set ylabel 'MiB'; set logscale x
plot 'bench/results/latency-signed/latency.dat' u 1:8 w lp t 'VmRSS after the requests', '' u 1:9 w lp t 'VmHWM'
unset logscale

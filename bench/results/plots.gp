set terminal pngcairo size 900,560 noenhanced
set grid

set output '/work/main/bench/results/latency_vs_instances.png'
set title 'request.json rename -> claim / durable publish (events), embedded backend'
set xlabel 'provider instances'; set ylabel 'ms'; set logscale x; set key outside right top
plot '/work/main/bench/results/latency.dat' u 1:2 w lp t 'claim p50', '' u 1:3 w lp t 'claim p99', '' u 1:5 w lp t 'publish p50', '' u 1:6 w lp t 'publish p99', '' u 1:7 w lp t 'publish max'
unset logscale
set output '/work/main/bench/results/memory_vs_instances.png'
set title 'carsyncd memory vs instances'
set xlabel 'provider instances'; set ylabel 'MiB'; set logscale x
plot '/work/main/bench/results/latency.dat' u 1:8 w lp t 'VmRSS after the requests', '' u 1:9 w lp t 'VmHWM'
unset logscale

set output '/work/main/bench/results/applied_vs_size.png'
set title 'publish -> applied vs snapshot size (events)'
set xlabel 'snapshot MiB'; set ylabel 's'; set logscale xy; set key outside right top
plot '/work/main/bench/results/sizes-0.dat' u 1:2 w lp t 'tar.gz devnode', '/work/main/bench/results/sizes-1.dat' u 1:2 w lp t 'tar.gz embedded', '/work/main/bench/results/sizes-2.dat' u 1:2 w lp t 'tar.zst devnode', '/work/main/bench/results/sizes-3.dat' u 1:2 w lp t 'tar.zst embedded'
unset logscale

set output '/work/main/bench/results/fanout_vs_consumers.png'
set title 'one provider to N consumers through carsync-devnode'
set xlabel 'consumers'; set ylabel 's from the request'; set key outside right top
plot '/work/main/bench/results/fanout.dat' u 1:2 w lp t 'first applied', '' u 1:3 w lp t 'last applied'

set output '/work/main/bench/results/delta_fetched.png'
set title 'delta transfer: bytes the consumer fetched vs the full archive (received history)'
set xlabel 'case'; set ylabel 'MB'; set logscale y; set key outside right top
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
plot '/work/main/bench/results/delta.dat' u 2:xtic(1) t 'fetched', '' u 3 t 'full archive'
unset logscale; set style data lines

set output '/work/main/bench/results/delta_consumer_rss.png'
set title 'delta section: the consumer carsyncd VmRSS over the run (all its applies)'
set xlabel 's'; set ylabel 'MiB'; set key off
plot '/work/main/bench/results/delta-rss.dat' u 1:2 w l

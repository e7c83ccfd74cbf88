set terminal pngcairo size 900,560 noenhanced
set grid

set output 'bench/results/delta/delta_fetched.png'
set title 'delta transfer: bytes the consumer fetched vs the full archive (received history)'
set xlabel 'case'; set ylabel 'MB'; set logscale y; set key outside right top
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
plot 'bench/results/delta/delta.dat' u 2:xtic(1) t 'fetched', '' u 3 t 'full archive'
unset logscale; set style data lines

set output 'bench/results/delta/delta_consumer_rss.png'
set title 'delta section: the consumer carsyncd VmRSS over the run (all its applies)'
set xlabel 's'; set ylabel 'MiB'; set key off
plot 'bench/results/delta/delta-rss.dat' u 1:2 w l

# Throughput of the example server against chunk size and chunks in flight (scripts/bench.sh).
#   gnuplot -e "datafile='sweep.dat'; outfile='chart.svg'" chart.gp
# datafile columns: chunk MiB, MB/s with 1, 2 and 4 chunks in flight, then the simple PUT's
# MB/s for the example server and for the bare hyper baseline (the same on every line).
set terminal svg size 760,440 dynamic enhanced font 'sans,12' background rgb 'white'
set output outfile
set title 'Chunked uploads to the example server (FsStorage), 127.0.0.1'
set xlabel 'chunk size (MiB)'
set ylabel 'MB/s (10^6 bytes per second)'
set logscale x 2
set xtics ('4' 4, '8' 8, '16' 16, '32' 32)
set xrange [3.4:38]
set yrange [0:*]
set grid ytics
set key bottom right
plot datafile using 1:2 with linespoints lw 2 pt 7 title '1 in flight', \
     '' using 1:3 with linespoints lw 2 pt 5 title '2 in flight', \
     '' using 1:4 with linespoints lw 2 pt 9 title '4 in flight', \
     '' using 1:5 with lines dt 2 lw 2 lc rgb '#444444' title 'simple PUT (example server)', \
     '' using 1:6 with lines dt 3 lw 2 lc rgb '#aa4400' title 'simple PUT (bare hyper baseline)'

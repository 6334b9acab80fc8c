# gnuplot script for bench/run.sh: two panels from plot.dat (summarize.py --plot)
#   gnuplot -e "datafile='plot.dat'; outfile='docs/bench.png'" bench/plot.gp
if (!exists("datafile")) datafile = 'plot.dat'
if (!exists("outfile")) outfile = 'bench.png'

set terminal pngcairo size 1400,900 font "DejaVu Sans,10" noenhanced
set output outfile
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key outside right top vertical font ",9"
set xtics rotate by -25 font ",9"
set format y "%g"

set multiplot layout 2,1 title "uvws echo benchmark (wsbench, loopback, server on core 0, client on core 1; medians)"

set title "messages echoed per second (higher is better)"
set ylabel "msgs/s"
set yrange [1000:*]
plot datafile using 2:xtic(1) title "tcpecho (ceiling)" lc rgb "#999999", \
     '' using 3 title "uvws" lc rgb "#1f77b4", \
     '' using 4 title "uvws --deflate (no extension negotiated)" lc rgb "#aec7e8", \
     '' using 5 title "node ws 8" lc rgb "#2ca02c", \
     '' using 6 title "python websockets 10.4" lc rgb "#d62728"

set title "server CPU per message, µs (lower is better; uWS from the wsbench anchor run)"
set ylabel "µs CPU / msg"
set yrange [0.1:*]
plot datafile using 7:xtic(1) title "uvws" lc rgb "#1f77b4", \
     '' using 8 title "uvws --deflate" lc rgb "#aec7e8", \
     '' using 9 title "node ws 8" lc rgb "#2ca02c", \
     '' using 10 title "python websockets 10.4" lc rgb "#d62728", \
     '' using 11 title "uWS (anchor run)" lc rgb "#ff7f0e"

unset multiplot

# gnuplot script for bench/run.sh: two panels from plot.dat (summarize.py --plot)
#   gnuplot -e "datafile='plot.dat'; outfile='docs/bench.png'" bench/plot.gp
# plot.dat columns: 1 label, 2-6 msgs/s (tcpecho uvws uvws_deflate node_ws
# py_websockets), 7-11 µs CPU/msg (same order), 12 uWS µs/msg (anchor run).
if (!exists("datafile")) datafile = 'plot.dat'
if (!exists("outfile")) outfile = 'bench.png'

set terminal pngcairo size 1400,950 font "DejaVu Sans,10" noenhanced
set output outfile
set datafile missing "?"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set grid ytics
set key outside right top vertical font ",9" width -1
set xtics rotate by -25 font ",9"
set format y "%g"
set lmargin at screen 0.07
set rmargin at screen 0.80

set multiplot layout 2,1 title "uvws echo benchmark: wsbench on loopback, server on core 0, client on core 1; medians.\nOther jobs shared the machine (foreign_cpu up to ~1 core): compare bars within a group, not with other runs."

set title "messages echoed per second (higher is better)"
set ylabel "msgs/s"
set yrange [1000:*]
plot datafile using 2:xtic(1) title "tcpecho (libuv ceiling)" lc rgb "#999999", \
     '' using 3 title "uvws (Lua handler)" lc rgb "#1f77b4", \
     '' using 4 title "uvws --deflate (none negotiated)" lc rgb "#aec7e8", \
     '' using 5 title "node ws 8" lc rgb "#2ca02c", \
     '' using 6 title "python websockets 10.4" lc rgb "#d62728"

set title "server CPU per message, µs (lower is better)"
set ylabel "µs CPU / msg"
set yrange [0.1:*]
plot datafile using 7:xtic(1) title "tcpecho (libuv floor)" lc rgb "#999999", \
     '' using 8 title "uvws (Lua handler)" lc rgb "#1f77b4", \
     '' using 9 title "uvws --deflate" lc rgb "#aec7e8", \
     '' using 10 title "node ws 8" lc rgb "#2ca02c", \
     '' using 11 title "python websockets 10.4" lc rgb "#d62728", \
     '' using 12 title "uWS (RESULTS.md anchor run)" lc rgb "#ff7f0e"

unset multiplot

reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal pngcairo size 1200,500 noenhanced
set output 'tokens_vs_ranks.png'

set multiplot layout 1,2 title 'tokens/s vs worker ranks, link none, no emulated delay'
set xlabel 'expert worker ranks'; set xtics 1; set xrange [0.5:2.5]
set ylabel 'prefill tokens/s'; unset key
plot for [i=0:7] 'tokens_vs_ranks.dat' index i using 1:2 with linespoints lw 2 title columnheader(1)
set ylabel 'decode tokens/s'; set key outside right top font ',8'
plot for [i=0:7] 'tokens_vs_ranks.dat' index i using 1:3 with linespoints lw 2 title columnheader(1)
unset multiplot
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal svg size 1200,500 noenhanced
set output 'tokens_vs_ranks.svg'

set multiplot layout 1,2 title 'tokens/s vs worker ranks, link none, no emulated delay'
set xlabel 'expert worker ranks'; set xtics 1; set xrange [0.5:2.5]
set ylabel 'prefill tokens/s'; unset key
plot for [i=0:7] 'tokens_vs_ranks.dat' index i using 1:2 with linespoints lw 2 title columnheader(1)
set ylabel 'decode tokens/s'; set key outside right top font ',8'
plot for [i=0:7] 'tokens_vs_ranks.dat' index i using 1:3 with linespoints lw 2 title columnheader(1)
unset multiplot
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal pngcairo size 1020,560 noenhanced
set output 'step_breakdown.png'

set title 'decode step, coordinator time split (ms per step), link none'
set style data histograms; set style histogram rowstacked; set style fill solid 0.8 border -1
set boxwidth 0.75; set xtics rotate by -60 font ',8'; set ylabel 'ms per decode step'
plot for [c=2:7] 'step_breakdown.dat' using c:xtic(1) title columnheader(c)
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal svg size 1020,560 noenhanced
set output 'step_breakdown.svg'

set title 'decode step, coordinator time split (ms per step), link none'
set style data histograms; set style histogram rowstacked; set style fill solid 0.8 border -1
set boxwidth 0.75; set xtics rotate by -60 font ',8'; set ylabel 'ms per decode step'
plot for [c=2:7] 'step_breakdown.dat' using c:xtic(1) title columnheader(c)
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal pngcairo size 900,500 noenhanced
set output 'bytes_per_token.png'

set title 'wire bytes per decoded token, all MoE layers'
set style data histograms; set style histogram rowstacked; set style fill solid 0.8 border -1
set boxwidth 0.75; set xtics rotate by -45 font ',9'; set ylabel 'bytes / token'
plot 'bytes_per_token.dat' using 2:xtic(1) title 'dispatch', '' using 3 title 'combine'
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal svg size 900,500 noenhanced
set output 'bytes_per_token.svg'

set title 'wire bytes per decoded token, all MoE layers'
set style data histograms; set style histogram rowstacked; set style fill solid 0.8 border -1
set boxwidth 0.75; set xtics rotate by -45 font ',9'; set ylabel 'bytes / token'
plot 'bytes_per_token.dat' using 2:xtic(1) title 'dispatch', '' using 3 title 'combine'
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal pngcairo size 900,500 noenhanced
set output 'speedup_vs_rate.png'

set title 'decode tokens/s relative to unshaped links (geometric mean over ranks, batch, K)'
set xlabel 'link rate (tc tbf on every host)'; set ylabel 'relative decode tokens/s'
set yrange [0:*]; set xrange [-0.3:2.3]
plot for [i=0:1] 'speedup_vs_rate.dat' index i using 1:2:xtic(3) with linespoints lw 2 title columnheader(1)
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal svg size 900,500 noenhanced
set output 'speedup_vs_rate.svg'

set title 'decode tokens/s relative to unshaped links (geometric mean over ranks, batch, K)'
set xlabel 'link rate (tc tbf on every host)'; set ylabel 'relative decode tokens/s'
set yrange [0:*]; set xrange [-0.3:2.3]
plot for [i=0:1] 'speedup_vs_rate.dat' index i using 1:2:xtic(3) with linespoints lw 2 title columnheader(1)
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal pngcairo size 900,500 noenhanced
set output 'latency.png'

set title 'decode tokens/s vs emulated per-message delay (geometric mean; unshaped)'
set xlabel 'emulated link delay per message (ms), --link-delay-ms'; set ylabel 'decode tokens/s'; set logscale y
plot for [i=0:1] 'latency.dat' index i using 1:2 with linespoints lw 2 title columnheader(1)
unset output
reset
set datafile separator whitespace
set key outside right top font ',9'
set grid ytics
set style data linespoints
set terminal svg size 900,500 noenhanced
set output 'latency.svg'

set title 'decode tokens/s vs emulated per-message delay (geometric mean; unshaped)'
set xlabel 'emulated link delay per message (ms), --link-delay-ms'; set ylabel 'decode tokens/s'; set logscale y
plot for [i=0:1] 'latency.dat' index i using 1:2 with linespoints lw 2 title columnheader(1)
unset output

# Reads `ping -D -n` output; prints one line:
#   sent=N received=N lost=N dup=N max_gap_ms=G [missing=S,S...]
# where max_gap_ms is the longest interval between consecutive replies
# (the guest-observed network outage, at the ping interval's resolution)
# and missing lists the sequence numbers that got no reply.
/bytes from/ {
	ts = $1; gsub(/[\[\]]/, "", ts)
	if (index($0, "DUP!")) { dup++; next }
	if (last != "" && (ts - last) * 1000 > gap) gap = (ts - last) * 1000
	last = ts; rcv++
	if (match($0, /icmp_seq=[0-9]+/)) got[substr($0, RSTART + 9, RLENGTH - 9) + 0] = 1
}
/packets transmitted/ { sent = $1 }
END {
	miss = ""
	for (i = 1; i <= sent; i++)
		if (!(i in got)) miss = miss (miss == "" ? "" : ",") i
	printf "sent=%d received=%d lost=%d dup=%d max_gap_ms=%.1f%s\n",
		sent, rcv, sent - rcv, dup, gap, miss == "" ? "" : " missing=" miss
}

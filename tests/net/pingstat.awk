# Reads `ping -D` output; prints one line:
#   sent=N received=N lost=N dup=N max_gap_ms=G
# where max_gap_ms is the longest interval between consecutive replies
# (the guest-observed network outage, at the ping interval's resolution).
/bytes from/ {
	ts = $1; gsub(/[\[\]]/, "", ts)
	if (index($0, "DUP!")) { dup++; next }
	if (last != "" && (ts - last) * 1000 > gap) gap = (ts - last) * 1000
	last = ts; rcv++
}
/packets transmitted/ { sent = $1 }
END {
	printf "sent=%d received=%d lost=%d dup=%d max_gap_ms=%.1f\n",
		sent, rcv, sent - rcv, dup, gap
}

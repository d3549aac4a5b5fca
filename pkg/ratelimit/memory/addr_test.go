package memory_test

import "net/netip"

// netipFrom returns a distinct IPv6 address per i, each in its own /64.
func netipFrom(i int) netip.Addr {
	var b [16]byte
	b[0], b[1] = 0x20, 0x01
	b[4], b[5], b[6], b[7] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
	b[15] = 1
	return netip.AddrFrom16(b)
}

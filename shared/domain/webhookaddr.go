package domain

import "net/netip"

// Sign-up is open, so a webhook URL is chosen by anybody: the service must
// not become a way to reach what only it can reach (its own ports, the
// cloud's instance metadata, the private network it runs in). These are the
// ranges a webhook may never be sent to, from IANA's IPv4 and IPv6
// Special-Purpose Address Registries (RFC 6890 and its updates) plus
// multicast and the reserved 240.0.0.0/4, and Azure's platform address.
var refusedRanges = []struct {
	prefix netip.Prefix
	why    string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared (carrier-grade NAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private"},
	{netip.MustParsePrefix("192.0.0.0/24"), "protocol-assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved or broadcast"},
	// A public address that only Azure's own hosts answer from inside
	// Azure: its DNS, health probes and the agent's wire server
	// (https://learn.microsoft.com/azure/virtual-network/what-is-ip-address-168-63-129-16).
	{netip.MustParsePrefix("168.63.129.16/32"), "Azure platform"},

	// IPv4-mapped addresses (::ffff:0:0/96) are judged by their IPv4 part
	// before this list is read; the IPv4-compatible ones in ::/96 are
	// deprecated (RFC 4291) and refused whole, with :: and ::1.
	{netip.MustParsePrefix("::/96"), "unspecified, loopback or IPv4-compatible"},
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "IPv4-translated"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/23"), "protocol-assignment (Teredo, benchmarking, ORCHID)"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("3fff::/20"), "documentation"},
	// Segment Routing (SRv6) SIDs, not globally reachable (RFC 9602).
	{netip.MustParsePrefix("5f00::/16"), "SRv6 SIDs"},
	{netip.MustParsePrefix("fc00::/7"), "unique-local"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// Ranges that carry an IPv4 address inside an IPv6 one: the well-known
// NAT64 prefix (RFC 6052), whose last 32 bits are the IPv4 address a NAT64
// gateway connects to, and 6to4 (RFC 3056), whose bits 16 to 48 are.
var (
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
)

// WebhookAddrRefused returns why a webhook may not be sent to a (such as
// "loopback" or "private"), or "" when it may. An IPv6 address that
// carries an IPv4 one (mapped, NAT64, 6to4) is judged by the IPv4 address.
func WebhookAddrRefused(a netip.Addr) string {
	a = a.WithZone("").Unmap()
	if a.Is6() {
		b := a.As16()
		switch {
		case nat64.Contains(a):
			return WebhookAddrRefused(netip.AddrFrom4([4]byte(b[12:16])))
		case sixTo4.Contains(a):
			return WebhookAddrRefused(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, r := range refusedRanges {
		if r.prefix.Contains(a) {
			return r.why
		}
	}
	if !a.IsValid() {
		return "invalid"
	}
	return ""
}

package netcap

import (
	"net"
	"testing"
)

func TestClientKey(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::ffff:10.1.2.3]:80", "10.1.2.3"},
		// One host commonly has a whole /64: its addresses are one client.
		{"[2001:db8:1:2:aaaa::1]:80", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{"not an address", "not an address"},
	} {
		if got := ClientKeyOf(c.addr); got != c.want {
			t.Errorf("ClientKeyOf(%q) = %q, want %q", c.addr, got, c.want)
		}
	}
	if got := ClientKey(&net.UnixAddr{Name: "@", Net: "unix"}); got != "" {
		t.Errorf("unix address key %q, want \"\"", got)
	}
	if got := ClientKey(&net.TCPAddr{IP: net.ParseIP("127.0.0.2"), Port: 5}); got != "127.0.0.2" {
		t.Errorf("TCP address key %q", got)
	}
}

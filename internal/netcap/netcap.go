// Package netcap caps the connections a listener holds open: in all, and
// per client address. A connection over a cap is closed as soon as it is
// accepted, never queued, so a client that opens connections and sends
// nothing can hold no more than its share of the server's descriptors, and
// other clients still get in.
package netcap

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Listener is a net.Listener that enforces the caps.
type Listener struct {
	net.Listener
	max, perClient int
	// refused is told of each connection closed at accept, e.g. to log it.
	refused func(client string, perClient bool)

	mu       sync.Mutex
	open     int
	byClient map[string]int
	refusals atomic.Int64
}

// Wrap caps ln at max connections in all and perClient from one client
// address; 0 means no cap. refused, if not nil, is called for each
// connection closed over a cap (outside any lock).
func Wrap(ln net.Listener, max, perClient int, refused func(client string, perClient bool)) *Listener {
	return &Listener{Listener: ln, max: max, perClient: perClient, refused: refused, byClient: map[string]int{}}
}

// Accept returns the next connection within the caps; those over a cap are
// closed and skipped.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := ClientKey(c.RemoteAddr())
		l.mu.Lock()
		overAll := l.max > 0 && l.open >= l.max
		overClient := l.perClient > 0 && l.byClient[key] >= l.perClient
		if !overAll && !overClient {
			l.open++
			l.byClient[key]++
			l.mu.Unlock()
			return &conn{Conn: c, l: l, key: key}, nil
		}
		l.mu.Unlock()
		// Closing at once, rather than leaving it in the backlog, tells
		// the client now and costs the server nothing more.
		c.Close()
		l.refusals.Add(1)
		if l.refused != nil {
			l.refused(key, !overAll)
		}
	}
}

// Open is the number of connections accepted and not yet closed.
func (l *Listener) Open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

// Refused is the number of connections closed over a cap so far.
func (l *Listener) Refused() int64 { return l.refusals.Load() }

func (l *Listener) release(key string) {
	l.mu.Lock()
	l.open--
	if l.byClient[key]--; l.byClient[key] <= 0 {
		delete(l.byClient, key)
	}
	l.mu.Unlock()
}

type conn struct {
	net.Conn
	l    *Listener
	key  string
	once sync.Once
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.key) })
	return err
}

// ClientKey names the client a remote address stands for: its IP, or for
// IPv6 its /64, since one host commonly holds a whole /64. Addresses that
// are not IP (unix sockets) are all one client, "".
func ClientKey(a net.Addr) string {
	if a == nil {
		return ""
	}
	var ip netip.Addr
	switch v := a.(type) {
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(v.IP)
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return ""
		}
		ip = ap.Addr()
	}
	return keyOf(ip)
}

// ClientKeyOf is ClientKey for an "ip:port" string such as
// http.Request.RemoteAddr.
func ClientKeyOf(hostport string) string {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return hostport
	}
	return keyOf(ap.Addr())
}

func keyOf(ip netip.Addr) string {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return ""
	}
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

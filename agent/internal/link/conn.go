package link

import (
	"crypto/tls"
	"net"
	"net/url"
	"sync/atomic"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// countingConn counts the bytes of a connection both ways: what the
// courier's data plan pays for, every MQTT packet included (CONNECT,
// SUBSCRIBE, PINGREQ, PUBLISH, PUBACK, ...), TLS records included on a
// TLS link, TCP/IP headers excluded.
type countingConn struct {
	net.Conn
	in, out *atomic.Uint64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(uint64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(uint64(n))
	return n, err
}

// dialer opens the link's connection as paho would for tcp:// and tls://
// brokers, counting its bytes.
func (l *Link) dialer(tlsConf *tls.Config) mqtt.OpenConnectionFunc {
	return func(u *url.URL, o mqtt.ClientOptions) (net.Conn, error) {
		host := u.Host
		if u.Port() == "" {
			port := "1883"
			if tlsConf != nil {
				port = "8883"
			}
			host = net.JoinHostPort(u.Hostname(), port)
		}
		d := &net.Dialer{Timeout: o.ConnectTimeout}
		var c net.Conn
		var err error
		if tlsConf != nil {
			c, err = tls.DialWithDialer(d, "tcp", host, tlsConf)
		} else {
			c, err = d.Dial("tcp", host)
		}
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, in: &l.stats.connIn, out: &l.stats.connOut}, nil
	}
}

// Package deadlines is what registry TestNoNetDeadlineOnConnections first
// searches, to show that its search finds calls of net deadline setters:
// two in a method, one in a package-level function literal, none in a
// test file (sample_test.go) or in a call of another method.
package deadlines

import (
	"net"
	"time"
)

type conn struct{ nc net.Conn }

func (c *conn) hello() {
	_ = c.nc.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.nc.Write(nil)
	_ = c.nc.SetReadDeadline(time.Time{})
}

var unset = func(nc net.Conn) { _ = nc.SetWriteDeadline(time.Time{}) }

func plain(nc net.Conn) { _ = nc.Close() }

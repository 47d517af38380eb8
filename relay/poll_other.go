//go:build !linux

package relay

import "errors"

// poller is Linux-only (epoll). Elsewhere every connection is read by a goroutine of its own.
type poller struct{}

func newPoller() (*poller, error) {
	return nil, errors.New("readiness-driven reads need Linux")
}

func (p *poller) watch(*conn) bool { return false }
func (p *poller) remove(*conn)     {}
func (p *poller) close()           {}

// readReady is never called: no connection is watched.
func (c *conn) readReady() {}

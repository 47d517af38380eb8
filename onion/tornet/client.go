// This file: the client side of the network, for tests: its control port and dialing through its SOCKS port.

package tornet

import (
	"bufio"
	"context"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// AddClientAuth gives the client tor the x25519 private key (base32, as pasted into Tor Browser) for an onion
// service with restricted discovery, through its control port, as Tor Browser does (ONION_CLIENT_AUTH_ADD).
func (n *Network) AddClientAuth(ctx context.Context, hostname, privateKeyBase32 string) error {
	id := strings.TrimSuffix(hostname, ".onion")
	// Tor Browser shows and takes base32; the control port wants base64.
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(privateKeyBase32))
	if err != nil || len(raw) != 32 {
		return fmt.Errorf("failed to add client auth: bad base32 x25519 key (%v)", err)
	}
	reply, err := n.control(ctx, fmt.Sprintf("ONION_CLIENT_AUTH_ADD %s x25519:%s", id, base64.StdEncoding.EncodeToString(raw)))
	if err != nil {
		return fmt.Errorf("failed to add client auth: %w", err)
	}
	if !strings.HasPrefix(reply, "25") {
		return fmt.Errorf("failed to add client auth: tor replied %q", reply)
	}
	return nil
}

// ForgetOnionServices makes the client tor forget what it knows of onion services (SIGNAL NEWNYM, as Tor
// Browser's "New Tor circuit" does): cached descriptors and, with them, the per-HSDir limit on asking again.
// A client that kept failing against a service whose tor died can otherwise not find the restarted service for
// about 3 minutes (docs/onion.md); a test that is about the service, not that client-side pause, calls this
// once the service has published again.
func (n *Network) ForgetOnionServices(ctx context.Context) error {
	reply, err := n.control(ctx, "SIGNAL NEWNYM")
	if err != nil {
		return fmt.Errorf("failed to reset the client tor: %w", err)
	}
	if !strings.HasPrefix(reply, "250") {
		return fmt.Errorf("failed to reset the client tor: tor replied %q", reply)
	}
	return nil
}

// control sends one command to the client tor's control port and returns the reply's last line.
func (n *Network) control(ctx context.Context, command string) (string, error) {
	cookie, err := os.ReadFile(n.CookieFile)
	if err != nil {
		return "", fmt.Errorf("failed to read control cookie: %w", err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", n.ControlAddr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	r := bufio.NewReader(c)
	roundTrip := func(line string) (string, error) {
		if _, err := io.WriteString(c, line+"\r\n"); err != nil {
			return "", err
		}
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return "", err
			}
			l = strings.TrimRight(l, "\r\n")
			if len(l) >= 4 && l[3] == ' ' { // the last line of a reply: "NNN text"
				return l, nil
			}
		}
	}
	if reply, err := roundTrip(fmt.Sprintf("AUTHENTICATE %x", cookie)); err != nil {
		return "", err
	} else if !strings.HasPrefix(reply, "250") {
		return "", fmt.Errorf("control authentication refused: %q", reply)
	}
	return roundTrip(command)
}

// SOCKSError is a failed SOCKS5 CONNECT through the client tor. With ExtendedErrors, tor's codes for onion
// services are 0xF0 descriptor not found, 0xF1 descriptor invalid, 0xF2 introduction failed, 0xF3 rendezvous
// failed, 0xF4 client authorization missing, 0xF5 client authorization wrong, 0xF6 bad address,
// 0xF7 introduction timed out.
type SOCKSError struct{ Code byte }

func (e *SOCKSError) Error() string {
	return fmt.Sprintf("socks connect failed: reply 0x%02X", e.Code)
}

// Codes of tor's extended SOCKS errors that tests branch on.
const (
	SOCKSDescriptorNotFound  byte = 0xF0
	SOCKSClientAuthMissing   byte = 0xF4
	SOCKSIntroductionTimeout byte = 0xF7
)

// DialContext connects to addr ("host:port", host usually an .onion name) through the client tor's SOCKS5 port.
// It has the signature of net.Dialer.DialContext, so it can back an http.Transport or a WebSocket dialer.
func (n *Network) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialSOCKS5(ctx, n.SocksAddr, addr)
}

// DialSOCKS5 connects to addr through the SOCKS5 proxy at proxyAddr, with no authentication and the host name
// passed to the proxy unresolved (tor resolves .onion names itself). A refused CONNECT is a *SOCKSError.
func DialSOCKS5(ctx context.Context, proxyAddr, addr string) (net.Conn, error) {
	return DialSOCKS5Isolated(ctx, proxyAddr, addr, "")
}

// DialSOCKS5Isolated is DialSOCKS5 with SOCKS username/password authentication: tor puts streams with different
// credentials on different circuits (IsolateSOCKSAuth), so each isolation string gets circuits of its own, as a
// new Tor Browser tab on another site would. An empty isolation is DialSOCKS5.
func DialSOCKS5Isolated(ctx context.Context, proxyAddr, addr, isolation string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("bad address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 || len(host) > 255 || len(isolation) > 255 {
		return nil, fmt.Errorf("bad address %q", addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, fmt.Errorf("failed to reach the SOCKS proxy: %w", err)
	}
	// The handshake obeys ctx; the returned connection has no deadline.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	err = socksHandshake(c, host, port, isolation)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func socksHandshake(c net.Conn, host string, port int, isolation string) error {
	var method byte // no authentication
	if isolation != "" {
		method = 2 // username/password (RFC 1929)
	}
	if _, err := c.Write([]byte{5, 1, method}); err != nil { // version 5, one method
		return fmt.Errorf("failed to write socks greeting: %w", err)
	}
	var buf [262]byte
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return fmt.Errorf("failed to read socks method: %w", err)
	}
	if buf[0] != 5 || buf[1] != method {
		return fmt.Errorf("socks proxy refused method %d (%x)", method, buf[:2])
	}
	if isolation != "" {
		auth := append([]byte{1, byte(len(isolation))}, isolation...)
		auth = append(auth, 1, 'x') // tor takes any password; the pair is what isolates
		if _, err := c.Write(auth); err != nil {
			return fmt.Errorf("failed to write socks credentials: %w", err)
		}
		if _, err := io.ReadFull(c, buf[:2]); err != nil {
			return fmt.Errorf("failed to read socks authentication reply: %w", err)
		}
		if buf[1] != 0 {
			return fmt.Errorf("socks proxy refused the credentials (%x)", buf[:2])
		}
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...) // CONNECT to a domain name
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("failed to write socks request: %w", err)
	}
	if _, err := io.ReadFull(c, buf[:4]); err != nil {
		return fmt.Errorf("failed to read socks reply: %w", err)
	}
	if buf[1] != 0 {
		return &SOCKSError{Code: buf[1]}
	}
	var skip int
	switch buf[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		if _, err := io.ReadFull(c, buf[:1]); err != nil {
			return fmt.Errorf("failed to read socks reply: %w", err)
		}
		skip = int(buf[0])
	default:
		return fmt.Errorf("bad socks reply address type %d", buf[3])
	}
	if _, err := io.ReadFull(c, buf[:skip+2]); err != nil {
		return fmt.Errorf("failed to read socks reply: %w", err)
	}
	return nil
}

// HTTPClient returns an HTTP client whose connections go through the client tor.
func (n *Network) HTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true},
		Timeout:   60 * time.Second,
	}
}

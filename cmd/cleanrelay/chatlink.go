package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/net/proxy"
)

// chatInvite is what a browser's invite link holds: the relay's address, and after '#' the room, its
// capability and the invite secret. The part after '#' never leaves this process: the relay learns the room
// and capability from the join request, and never the secret.
type chatInvite struct {
	base   *url.URL // scheme, host and path, without the fragment
	room   string
	cap    string
	secret []byte
}

var (
	reRoom = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)
	reKey  = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
)

// parseRelayURL checks a relay address (an invite link without its fragment, or the URL given to --create).
func parseRelayURL(s string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not a link: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("the link must start with http:// or https:// (it has %q)", u.Scheme)
	}
	if u.Hostname() == "" {
		return nil, errors.New("the link has no host")
	}
	if u.User != nil {
		return nil, errors.New("the link must not carry a user name or password")
	}
	return u, nil
}

// parseInviteLink reads a browser's invite link "http(s)://HOST/#r=ROOM&c=CAP&k=SECRET" (static/js/proto.mjs
// inviteFragment) and checks each part's shape as the browser does.
func parseInviteLink(link string) (*chatInvite, error) {
	link = strings.TrimSpace(link)
	i := strings.IndexByte(link, '#')
	if i < 0 {
		return nil, errors.New("the invite link has no '#' part (room, capability and secret): was it cut short?")
	}
	u, err := parseRelayURL(link[:i])
	if err != nil {
		return nil, err
	}
	q, err := url.ParseQuery(link[i+1:])
	if err != nil {
		return nil, fmt.Errorf("the invite link's '#' part is malformed: %v", err)
	}
	inv := &chatInvite{base: u, room: q.Get("r"), cap: q.Get("c")}
	k := q.Get("k")
	switch {
	case inv.room == "" || inv.cap == "" || k == "":
		return nil, errors.New("the invite link lacks r=, c= or k= after '#': was it cut short?")
	case !reRoom.MatchString(inv.room):
		return nil, errors.New("the invite link's room id (r=) is not 22 base64url characters: was it cut short?")
	case !reKey.MatchString(inv.cap):
		return nil, errors.New("the invite link's capability (c=) is not 43 base64url characters: was it cut short?")
	case !reKey.MatchString(k):
		return nil, errors.New("the invite link's secret (k=) is not 43 base64url characters: was it cut short?")
	}
	if inv.secret, err = base64.RawURLEncoding.DecodeString(k); err != nil {
		return nil, fmt.Errorf("the invite link's secret (k=) is not base64url: %v", err)
	}
	return inv, nil
}

// inviteLink builds the link a browser makes for a room it created (static/js/app.mjs).
func inviteLink(base *url.URL, room, capability string, secret []byte) string {
	u := *base
	u.Fragment, u.RawFragment, u.RawQuery = "", "", ""
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String() + "#r=" + room + "&c=" + capability + "&k=" + base64.RawURLEncoding.EncodeToString(secret)
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// chatDialer checks the relay address against the transport rules and returns the WebSocket URL and the dialer:
// a .onion needs Tor (--tor-socks), and plain http is only for loopback or an onion service (whose
// address is its key). Through Tor, the host name goes to the proxy unresolved: no local DNS lookup.
func chatDialer(u *url.URL, torSocks string) (string, func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	host := strings.ToLower(u.Hostname())
	onion := strings.HasSuffix(host, ".onion")
	if onion && torSocks == "" {
		return "", nil, fmt.Errorf("%s is an onion service: give Tor's SOCKS port with --tor-socks HOST:PORT (e.g. 127.0.0.1:9050, or 127.0.0.1:9150 for Tor Browser)", host)
	}
	if u.Scheme == "http" && !onion && !isLoopback(host) {
		return "", nil, fmt.Errorf("refusing plain http to %s: only loopback and .onion addresses may be reached without TLS", host)
	}
	ws := "ws"
	if u.Scheme == "https" {
		ws = "wss"
	}
	wsURL := ws + "://" + u.Host + "/ws?anonymous=1"
	if torSocks == "" {
		return wsURL, nil, nil
	}
	if _, _, err := net.SplitHostPort(torSocks); err != nil {
		return "", nil, fmt.Errorf("--tor-socks wants HOST:PORT: %v", err)
	}
	d, err := proxy.SOCKS5("tcp", torSocks, nil, &net.Dialer{})
	if err != nil {
		return "", nil, err
	}
	cd := d.(proxy.ContextDialer) // x/net's SOCKS5 dialer sends the name to the proxy (remote resolution)
	return wsURL, cd.DialContext, nil
}

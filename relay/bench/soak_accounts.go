package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// floodWorkers is how many requests each HTTP flood keeps in flight.
const floodWorkers = 16

// httpBase turns the relay's ws://HOST/ws into http://HOST.
func httpBase(wsURL string) string {
	u, err := url.Parse(wsURL)
	if err != nil {
		return "http://invalid"
	}
	return "http://" + u.Host
}

// randomName is an account name no one has: a letter, then hex.
func randomName(prefix string) string {
	var b [6]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// hammer runs floodWorkers goroutines calling one until ctx ends, counting each call in ops.
func hammer(ctx context.Context, ops *atomic.Int64, one func(context.Context)) {
	var wg sync.WaitGroup
	for range floodWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				one(ctx)
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
}

// request sends one request and reads the answer whole, whatever it is: a flooder does not retry.
func request(ctx context.Context, hc *http.Client, method, target, cookie string, body []byte) {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", "session="+cookie)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// floodLogins tries wrong passwords for made-up names as fast as the relay answers: it tries to starve real
// logins of password-hashing time.
func floodLogins(ctx context.Context, wsURL string, ops *atomic.Int64) {
	hc, base := &http.Client{}, httpBase(wsURL)
	hammer(ctx, ops, func(ctx context.Context) {
		body := fmt.Appendf(nil, `{"username":%q,"password":"Wrong-pass-1"}`, randomName("f"))
		request(ctx, hc, "POST", base+"/api/login", "", body)
	})
}

// floodAccount registers a flooder (an account costs the attacker a registration and a key, nothing more).
func floodAccount(ctx context.Context, wsURL, prefix string) (*client.Account, error) {
	return client.NewAccount(ctx, wsURL, client.Registration{Username: randomName(prefix), FullName: "Flood", Password: benchPassword}, nil)
}

// startTickets registers a flooder whose flood makes WebSocket session proofs as fast as the relay answers: it
// tries to fill the ticket table for everyone.
func startTickets(ctx context.Context, wsURL string) (func(context.Context, *atomic.Int64), error) {
	a, err := floodAccount(ctx, wsURL, "t")
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, ops *atomic.Int64) {
		hammer(ctx, ops, func(ctx context.Context) { a.TicketHeader(ctx) })
	}, nil
}

// startDialogs registers a flooder and a victim who holds a logged-in session; the flood opens a dialog with the
// victim as fast as the relay answers: it tries to have the victim's session closed as slow by notices.
func startDialogs(ctx context.Context, wsURL string) (func(context.Context, *atomic.Int64), error) {
	a, err := floodAccount(ctx, wsURL, "d")
	if err != nil {
		return nil, err
	}
	victim, err := floodAccount(ctx, wsURL, "v")
	if err != nil {
		return nil, err
	}
	h, err := victim.TicketHeader(ctx)
	if err != nil {
		return nil, err
	}
	hc, target := &http.Client{}, httpBase(wsURL)+"/api/dialogs/"+victim.Name
	return func(ctx context.Context, ops *atomic.Int64) {
		c, err := client.Dial(ctx, wsURL, &client.Options{Header: h, Events: 16})
		if err == nil {
			defer c.Close()
			go func() {
				for range c.Events() {
				}
			}()
		}
		hammer(ctx, ops, func(ctx context.Context) { request(ctx, hc, "POST", target, a.Session, nil) })
	}, nil
}

// startKeyLookups registers a flooder whose flood looks up keys of made-up names as fast as the relay answers:
// it tries to enumerate accounts.
func startKeyLookups(ctx context.Context, wsURL string) (func(context.Context, *atomic.Int64), error) {
	a, err := floodAccount(ctx, wsURL, "k")
	if err != nil {
		return nil, err
	}
	hc, base := &http.Client{}, httpBase(wsURL)
	return func(ctx context.Context, ops *atomic.Int64) {
		hammer(ctx, ops, func(ctx context.Context) {
			request(ctx, hc, "GET", base+"/api/users/"+randomName("x")+"/key", a.Session, nil)
		})
	}, nil
}

// slowConns is how many trickling connections floodSlowHTTP keeps open at once.
const slowConns = 256

// floodSlowHTTP keeps slowConns connections that send a login's headers and then its body one byte every two
// seconds, reopening each one the relay closes: it tries to use up the relay's connections and files. It counts
// each connection opened.
func floodSlowHTTP(ctx context.Context, wsURL string, ops *atomic.Int64) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for range slowConns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				trickle(ctx, u.Host, ops)
			}
		}()
	}
	wg.Wait()
}

// trickle is one slow request, counted in ops once connected: it returns when the relay closes the connection
// or ctx ends.
func trickle(ctx context.Context, host string, ops *atomic.Int64) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", host)
	if err != nil {
		select { // a refused dial must not spin
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		return
	}
	defer c.Close()
	ops.Add(1)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	fmt.Fprintf(c, "POST /api/login HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", host)
	for ctx.Err() == nil {
		if _, err := c.Write([]byte{'{'}); err != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// probeAccount is a new user of the accounts side: it registers, logs in and publishes a key, as the browser
// client does (a busy answer is asked again after its Retry-After, as docs/accounts.md tells clients to). It
// says why that did not work within half a minute.
func probeAccount(ctx context.Context, wsURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := client.NewAccount(ctx, wsURL, client.Registration{Username: randomName("p"), FullName: "Probe", Password: benchPassword}, nil)
	return err
}

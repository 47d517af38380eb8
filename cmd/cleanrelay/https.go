package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/cluster"
)

// opsServers are the listeners besides the relay's main one: the loopback admin listener and HTTPS. Both are
// optional. The onion mode calls SetOnionAddress once its service is published.
type opsServers struct {
	// Static after startOps.
	admin, https     *http.Server
	adminLn, httpsLn net.Listener
	httpsNames       []string // the names HTTPS serves, for announce
	log              *slog.Logger
	cluster          *cluster.Node // nil without --cluster

	onion atomic.Pointer[string] // the onion host for Onion-Location; nil until published
}

// startOps binds the listeners that opsFlags ask for and starts serving on them: handler (the relay with its
// accounts, as on the main listener) over HTTPS; srv's metrics, and adminRoutes under /admin/ if not nil, on
// the admin listener. Nothing is bound when it
// returns an error.
func startOps(o *opsFlags, srv *relay.Server, handler, adminRoutes http.Handler, log *slog.Logger) (*opsServers, error) {
	ops := &opsServers{log: log, cluster: o.cluster}
	if o.httpsListen != "" {
		tlsCfg, names, err := httpsConfig(o)
		if err != nil {
			return nil, err
		}
		ln, err := net.Listen("tcp", o.httpsListen)
		if err != nil {
			return nil, fmt.Errorf("failed to listen on --https-listen: %w", err)
		}
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		allowHTTPSNames(srv, names, port)
		ops.httpsLn, ops.httpsNames = tls.NewListener(ln, tlsCfg), names
		ops.https = newHTTPServer(ops.onionLocation(handler), o.http)
		// WebSockets need HTTP/1.1: gorilla cannot upgrade a stream of HTTP/2, so HTTP/2 stays off.
		ops.https.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	if o.adminListen != "" {
		ln, err := net.Listen("tcp", o.adminListen)
		if err != nil {
			if ops.httpsLn != nil {
				ops.httpsLn.Close()
			}
			return nil, fmt.Errorf("failed to listen on --admin-listen: %w", err)
		}
		ops.adminLn = ln
		ops.admin = newHTTPServer(newAdminHandler(srv, ops, ln.Addr().String(), adminRoutes, o.collectors...), o.http)
	}
	for _, p := range []struct {
		hs *http.Server
		ln net.Listener
	}{{ops.https, ops.httpsLn}, {ops.admin, ops.adminLn}} {
		if p.hs != nil {
			go func() {
				if err := p.hs.Serve(p.ln); !errors.Is(err, http.ErrServerClosed) {
					log.Error("operator listener stopped", "err", err)
				}
			}()
		}
	}
	return ops, nil
}

// newHTTPServer has the limits of the relay's main server (each server its own connection bound) and, like
// it, logs nothing: net/http's messages (TLS handshake errors included) name client addresses.
func newHTTPServer(h http.Handler, cfg relay.HTTPConfig) *http.Server {
	return relay.NewHTTPServer(h, cfg, slog.NewLogLogger(discardHandler{}, slog.LevelError))
}

// announce prints where the operator listeners are, on stdout (never in the logs).
func (ops *opsServers) announce(w io.Writer) {
	if ops.httpsLn != nil {
		fmt.Fprintf(w, "cleanrelay: serving HTTPS on %s for %s\n", ops.httpsLn.Addr(), strings.Join(ops.httpsNames, ", "))
	}
	if ops.adminLn != nil {
		fmt.Fprintf(w, "cleanrelay: admin on http://%s/ (metrics at /metrics)\n", ops.adminLn.Addr())
	}
}

// shutdown stops the operator listeners. The relay's own Close has already ended every WebSocket.
func (ops *opsServers) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var errs []error
	for _, hs := range []*http.Server{ops.https, ops.admin} {
		if hs != nil {
			errs = append(errs, hs.Shutdown(ctx))
		}
	}
	return errors.Join(errs...)
}

// SetOnionAddress records the relay's onion host ("xyz….onion") once its service is published: HTTPS responses
// then carry an Onion-Location header pointing at it, and the tor metric reads 1. Empty clears it.
func (ops *opsServers) SetOnionAddress(host string) error {
	if host == "" {
		ops.onion.Store(nil)
		return nil
	}
	host = strings.ToLower(host)
	if !strings.HasSuffix(host, ".onion") || strings.ContainsAny(host, "/: ") {
		return fmt.Errorf("%q is not an onion host name", host)
	}
	ops.onion.Store(&host)
	return nil
}

// onionLocation adds Onion-Location to every response once an onion address is known, so Tor Browser offers
// the onion service to someone who came over HTTPS. Tor Browser only honours it on HTTPS responses, which is
// the only place this handler is used.
func (ops *opsServers) onionLocation(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host := ops.onion.Load(); host != nil {
			w.Header().Set("Onion-Location", "http://"+*host+r.URL.RequestURI())
		}
		next.ServeHTTP(w, r)
	})
}

// httpsConfig returns the TLS configuration for --https-listen and the names it serves: from the given
// certificate's names, or the ACME domains.
func httpsConfig(o *opsFlags) (*tls.Config, []string, error) {
	if o.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(o.tlsCert, o.tlsKey)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to load --tls-cert and --tls-key: %w", err)
		}
		leaf := cert.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
				return nil, nil, fmt.Errorf("failed to parse --tls-cert: %w", err)
			}
		}
		names := append([]string(nil), leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 {
			return nil, nil, errors.New("--tls-cert names no DNS name or IP address (subjectAltName); browsers would refuse it")
		}
		return &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			NextProtos:   []string{"http/1.1"},
		}, names, nil
	}
	hc := http.DefaultClient
	if o.acmeDirectoryCA != "" {
		pem, err := os.ReadFile(o.acmeDirectoryCA)
		if err != nil {
			return nil, nil, fmt.Errorf("failed to read --acme-directory-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--acme-directory-ca %q holds no PEM certificate", o.acmeDirectoryCA)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		hc = &http.Client{Transport: tr, Timeout: time.Minute}
	}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(o.acmeDomains...),
		Email:      o.acmeEmail,
		Client:     &acme.Client{DirectoryURL: o.acmeDirectory, HTTPClient: hc},
	}
	if o.acmeCache != "" {
		m.Cache = autocert.DirCache(o.acmeCache)
	}
	cfg := m.TLSConfig()
	// Keep acme-tls/1 for the tls-alpn-01 challenge, drop h2 (see the TLSNextProto comment in startOps).
	cfg.NextProtos = []string{"http/1.1", acme.ALPNProto}
	cfg.MinVersion = tls.VersionTLS12
	return cfg, append([]string(nil), o.acmeDomains...), nil
}

// allowHTTPSNames puts every HTTPS name on the relay's Host/Origin allowlist, with the listener's port, and
// bare when that port is 443 (what a browser sends for https://name/).
func allowHTTPSNames(srv *relay.Server, names []string, port string) {
	for _, n := range names {
		srv.AllowHost(net.JoinHostPort(n, port))
		if port == "443" {
			srv.AllowHost(n) // the Host header of https://name/ has no port
		}
	}
}

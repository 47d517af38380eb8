package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"

	"github.com/cleanrelay/cleanrelay/relay"
)

// testPKI writes a CA and a leaf certificate for names into dir and returns the CA pool and the PEM paths.
func testPKI(t *testing.T, dir string, names ...string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cleanrelay test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			leaf.IPAddresses = append(leaf.IPAddresses, ip)
		} else {
			leaf.DNSNames = append(leaf.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// httpsClient trusts pool and connects every request to addr, whatever name the URL has.
func httpsClient(pool *x509.CertPool, addr string) *http.Client {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Minute}
}

// checkHTTPS fetches the client page and /healthz over HTTPS at https://name:port/ and opens a WebSocket with
// the browser's Origin: the HTTPS name must be on the Host and Origin allowlists, and the upgrade must work
// (HTTP/1.1).
func checkHTTPS(t *testing.T, pool *x509.CertPool, addr, name string) *http.Response {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	base := "https://" + net.JoinHostPort(name, port)
	hc := httpsClient(pool, addr)
	resp, err := hc.Get(base + "/")
	if err != nil {
		t.Fatalf("GET %s/: %v", base, err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "<title>cleanrelay") {
		t.Fatalf("GET %s/ gave %d %.100q", base, resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "wss://"+net.JoinHostPort(name, port)) {
		t.Fatalf("CSP %q does not allow this host's wss", csp)
	}
	if resp.ProtoMajor != 1 {
		t.Fatalf("HTTPS spoke %s; WebSockets need HTTP/1.1", resp.Proto)
	}
	d := websocket.Dialer{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		NetDialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		Subprotocols:     []string{relay.Subprotocol},
		HandshakeTimeout: 10 * time.Second,
	}
	ws, wsResp, err := d.Dial("wss://"+net.JoinHostPort(name, port)+"/ws", http.Header{"Origin": {base}})
	if err != nil {
		status := 0
		if wsResp != nil {
			status = wsResp.StatusCode
		}
		t.Fatalf("wss handshake with Origin %s: %v (status %d)", base, err, status)
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, hello, err := ws.ReadMessage(); err != nil || !strings.Contains(string(hello), `"hello"`) {
		t.Fatalf("no hello over wss: %q %v", hello, err)
	}
	ws.Close()
	// A foreign Origin is still refused over HTTPS.
	if _, _, err := d.Dial("wss://"+net.JoinHostPort(name, port)+"/ws", http.Header{"Origin": {"https://evil.example"}}); err == nil {
		t.Fatal("wss handshake with a foreign Origin was accepted")
	}
	return resp
}

// TestHTTPSWithCertificate runs the binary with an operator's certificate for a DNS name and an IP address.
func TestHTTPSWithCertificate(t *testing.T) {
	pool, certFile, keyFile := testPKI(t, t.TempDir(), "chat.cleanrelay.test", "127.0.0.1")
	_, lines, _ := startServeLines(t, 2, nil, "--local-only", "--listen", "127.0.0.1:0",
		"--https-listen", "127.0.0.1:0", "--tls-cert", certFile, "--tls-key", keyFile)
	addr := field(t, lines[1], "cleanrelay: serving HTTPS on ")
	if !strings.Contains(lines[1], "chat.cleanrelay.test, 127.0.0.1") {
		t.Fatalf("announce line %q does not list the certificate's names", lines[1])
	}
	for _, name := range []string{"chat.cleanrelay.test", "127.0.0.1"} {
		resp := checkHTTPS(t, pool, addr, name)
		if resp.Header.Get("Onion-Location") != "" {
			t.Fatal("Onion-Location without an onion address")
		}
	}
	// A name the certificate does not cover is refused by the relay's Host allowlist, whatever TLS says.
	hc := httpsClient(pool, addr)
	hc.Transport.(*http.Transport).TLSClientConfig.ServerName = "chat.cleanrelay.test"
	req, _ := http.NewRequest("GET", "https://chat.cleanrelay.test/", nil)
	req.Host = "other.example"
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Fatalf("Host other.example gave %d, want 421", resp.StatusCode)
	}
}

// TestHTTPSBadCertificate: an unreadable or mismatched pair stops start-up with one line.
func TestHTTPSBadCertificate(t *testing.T) {
	dir := t.TempDir()
	_, certFile, _ := testPKI(t, dir, "a.cleanrelay.test")
	other := t.TempDir()
	_, _, otherKey := testPKI(t, other, "b.cleanrelay.test")
	for name, args := range map[string][]string{
		"missing":    {"--tls-cert", filepath.Join(dir, "nope.pem"), "--tls-key", otherKey},
		"mismatched": {"--tls-cert", certFile, "--tls-key", otherKey},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			code := run(append([]string{"serve", "--local-only", "--listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"}, args...), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), "failed to load --tls-cert and --tls-key") || strings.Count(stderr.String(), "\n") != 1 {
				t.Fatalf("exit %d, stderr %q", code, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Fatalf("printed %q before failing", stdout.String())
			}
		})
	}
}

// TestOnionLocation checks the setter the onion mode calls: once an onion address is known, every HTTPS
// response points at it (with the same path), and the relay's own listener never sends the header.
func TestOnionLocation(t *testing.T) {
	pool, certFile, keyFile := testPKI(t, t.TempDir(), "127.0.0.1")
	srv, err := relay.New(relay.Config{}, nil, slog.New(discardHandler{}))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := startOps(&opsFlags{httpsListen: "127.0.0.1:0", tlsCert: certFile, tlsKey: keyFile}, srv, srv.Handler(), nil, slog.New(discardHandler{}))
	if err != nil {
		t.Fatal(err)
	}
	defer ops.shutdown()
	addr := ops.httpsLn.Addr().String()
	hc := httpsClient(pool, addr)
	get := func(path string) *http.Response {
		t.Helper()
		resp, err := hc.Get("https://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if h := get("/").Header.Get("Onion-Location"); h != "" {
		t.Fatalf("Onion-Location %q before the onion service is up", h)
	}
	onion := strings.Repeat("a", 56) + ".onion"
	if err := ops.SetOnionAddress(strings.ToUpper(onion)); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/healthz", "/some/page?x=1"} {
		if h, want := get(path).Header.Get("Onion-Location"), "http://"+onion+path; h != want {
			t.Errorf("GET %s: Onion-Location %q, want %q", path, h, want)
		}
	}
	for _, bad := range []string{"example.com", "http://x.onion", "x.onion/path", "a b.onion"} {
		if err := ops.SetOnionAddress(bad); err == nil {
			t.Errorf("SetOnionAddress(%q) accepted", bad)
		}
	}
	// The plain listener (loopback or the onion service itself) does not point at the onion.
	plain := httptest.NewServer(srv.Handler())
	defer plain.Close()
	srv.AllowHost(plain.Listener.Addr().String())
	resp, err := http.Get(plain.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Onion-Location") != "" {
		t.Fatalf("plain listener: %d, Onion-Location %q", resp.StatusCode, resp.Header.Get("Onion-Location"))
	}
	if err := ops.SetOnionAddress(""); err != nil || get("/").Header.Get("Onion-Location") != "" {
		t.Fatalf("clearing the onion address: %v", err)
	}
}

// startPebble runs Let's Encrypt's pebble ACME test CA in this process on 127.0.0.1, with a DNS server that
// resolves every name to 127.0.0.1 for its validation authority. Challenges are validated for real: the VA
// connects to tlsPort and checks the tls-alpn-01 certificate. It returns the directory URL, a PEM file of the
// directory's HTTPS certificate, and the root that signs issued certificates.
func startPebble(t *testing.T, tlsPort int) (dirURL, dirCAFile string, root *x509.CertPool) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")      // pebble sleeps up to 15 s before each validation by default
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // and rejects 5% of nonces; autocert retries, but slowly

	dnsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dnsSrv := &dns.Server{Listener: dnsLn, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		for _, question := range q.Question {
			if question.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(127, 0, 0, 1),
				})
			}
		}
		w.WriteMsg(m)
	})}
	go dnsSrv.ActivateAndServe()
	t.Cleanup(func() { dnsSrv.Shutdown() })

	logger := log.New(testWriter{t}, "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, 0, tlsPort, false, dnsLn.Addr().String(), store)
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)

	acmeSrv := httptest.NewUnstartedServer(front.Handler())
	acmeSrv.StartTLS()
	t.Cleanup(acmeSrv.Close)
	mgmt := httptest.NewServer(front.ManagementHandler())
	t.Cleanup(mgmt.Close)

	dirCAFile = filepath.Join(t.TempDir(), "acme-directory-ca.pem")
	writePEM(t, dirCAFile, "CERTIFICATE", acmeSrv.Certificate().Raw)
	resp, err := http.Get(mgmt.URL + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	root = x509.NewCertPool()
	if !root.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble root: %q", rootPEM)
	}
	return acmeSrv.URL + wfe.DirectoryPath, dirCAFile, root
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestHTTPSWithACME runs the binary with --acme-domain against pebble: the first TLS handshake for the domain
// makes the relay get a certificate by ACME (account, order, tls-alpn-01 challenge validated by pebble over a
// real connection, finalize), and the test then trusts only pebble's root.
func TestHTTPSWithACME(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_, portStr, _ := net.SplitHostPort(addr)
	ln.Close() // pebble's VA must know the port before the relay binds it
	port, _ := strconv.Atoi(portStr)
	dirURL, dirCA, root := startPebble(t, port)

	const domain = "chat.cleanrelay.test"
	_, lines, stderr := startServeLines(t, 2, []string{"CLEANRELAY_ACME_DOMAIN=" + domain},
		"--local-only", "--listen", "127.0.0.1:0", "--https-listen", addr,
		"--acme-directory", dirURL, "--acme-directory-ca", dirCA)
	if got := field(t, lines[1], "cleanrelay: serving HTTPS on "); got != addr {
		t.Fatalf("HTTPS on %s, want %s", got, addr)
	}
	start := time.Now()
	resp := checkHTTPS(t, root, addr, domain)
	t.Logf("certificate issued and served %v after the first handshake", time.Since(start).Round(time.Millisecond))
	leaf := resp.TLS.PeerCertificates[0]
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain {
		t.Fatalf("certificate for %v, want %s", leaf.DNSNames, domain)
	}
	if !strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("certificate issued by %q, want pebble", leaf.Issuer.CommonName)
	}
	// A name that is not an ACME domain gets no certificate.
	hc := httpsClient(root, addr)
	if _, err := hc.Get("https://other.cleanrelay.test:" + portStr + "/"); err == nil {
		t.Fatal("the relay served TLS for a name it was not configured for")
	}
	if strings.Contains(stderr.String(), "127.0.0.1") {
		t.Errorf("stderr names an address:\n%s", stderr)
	}
}

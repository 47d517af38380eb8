package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/cluster"
)

// newAdminHandler is the loopback-only operator listener: GET /metrics (Prometheus text format),
// GET /healthz, and, when routes is not nil, everything under /admin/ (the key directory's operator interface:
// accounts.Accounts.AdminHandler, revocation and disabling). extra are more collectors for /metrics (the mailbox's).
//
// It answers only requests whose Host is its own address or localhost with its port: a web page open in a
// browser on this machine could otherwise reach it by DNS rebinding.
func newAdminHandler(srv *relay.Server, ops *opsServers, addr string, routes http.Handler, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(extra...)
	reg.MustRegister(
		relay.NewMetrics(srv),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "cleanrelay_onion_published",
			Help: "1 while the onion service is published (tor is up and the service descriptor is known), else 0.",
		}, func() float64 {
			if ops.onion.Load() != nil {
				return 1
			}
			return 0
		}),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	if ops.cluster != nil {
		reg.MustRegister(cluster.NewMetrics(ops.cluster))
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if ops.cluster != nil {
			if err := ops.cluster.Healthy(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: cluster: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	if routes != nil {
		mux.Handle("/admin/", routes)
	}
	_, port, _ := net.SplitHostPort(addr)
	hosts := map[string]bool{addr: true, net.JoinHostPort("localhost", port): true}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !hosts[strings.ToLower(r.Host)] {
			http.Error(w, "the admin listener answers only to its own address", http.StatusMisdirectedRequest)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// healthTimeout bounds "cleanrelay health": a container runtime kills a health check that hangs anyway, but
// then it cannot tell why.
const healthTimeout = 5 * time.Second

// health is "cleanrelay health": GET the admin listener's /healthz and exit 0 if it answers "ok". It is the
// container's HEALTHCHECK, so it needs no curl in the image. The address comes from --admin-listen or its
// environment variable, as for serve.
func health(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cleanrelay health", flag.ContinueOnError)
	addr := fs.String("admin-listen", "127.0.0.1:9090", "the admin `address` of the relay to check")
	fromEnv, err := parseWithEnv(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "Usage: cleanrelay health [--admin-listen 127.0.0.1:9090]   (env "+envName("admin-listen")+")")
		return 0
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err == nil {
		if e := checkLoopback(*addr); e != nil {
			err = fmt.Errorf("--admin-listen %q: %w", *addr, e)
			if fromEnv["admin-listen"] {
				err = fmt.Errorf("%w (from %s)", err, envName("admin-listen"))
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+*addr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: unhealthy: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "ok" {
		fmt.Fprintf(stderr, "cleanrelay: unhealthy: %s\n", resp.Status)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

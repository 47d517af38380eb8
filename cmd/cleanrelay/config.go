package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanrelay/cleanrelay/relay"
	"github.com/cleanrelay/cleanrelay/relay/cluster"
)

// envPrefix starts the environment variable of every flag: --max-frame is CLEANRELAY_MAX_FRAME. Containers and
// systemd units configure the relay this way (12-factor); a flag given on the command line wins.
const envPrefix = "CLEANRELAY_"

// envName is the environment variable that sets the flag called name.
func envName(name string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// opsFlags are the operator flags of "cleanrelay serve": the admin listener and HTTPS.
type opsFlags struct {
	adminListen     string
	httpsListen     string
	tlsCert, tlsKey string
	acmeDomains     stringList
	acmeDirectory   string
	acmeDirectoryCA string
	acmeEmail       string
	acmeCache       string
	http            relay.HTTPConfig // limits of every HTTP server (main, HTTPS, admin)
	cluster         *cluster.Node    // with --cluster: its health and metrics go on the admin listener (not a flag)

	collectors []prometheus.Collector // more metrics for the admin listener, set by newRelay (the mailbox's)
}

func (o *opsFlags) register(fs *flag.FlagSet) {
	d := relay.HTTPConfig{}.WithDefaults()
	fs.IntVar(&o.http.MaxConns, "max-http-conns", d.MaxConns, "plain HTTP connections each listener holds at once (WebSockets count under --max-conns); beyond it the oldest idle or slow one is closed")
	fs.DurationVar(&o.http.HeaderTimeout, "http-header-timeout", d.HeaderTimeout, "cut a request whose headers take longer than this")
	fs.DurationVar(&o.http.BodyTimeout, "http-body-timeout", d.BodyTimeout, "cut a request whose body takes longer than this after its headers")
	fs.DurationVar(&o.http.IdleTimeout, "http-idle-timeout", d.IdleTimeout, "close a kept-alive HTTP connection idle for this long")
	fs.StringVar(&o.adminListen, "admin-listen", "", "serve GET /metrics (Prometheus) and GET /healthz on this loopback `address`, e.g. 127.0.0.1:9090 (empty: off)")
	fs.StringVar(&o.httpsListen, "https-listen", "", "also serve HTTPS on this `address`, e.g. :443 (needs --tls-cert and --tls-key, or --acme-domain)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "PEM certificate chain `file` for --https-listen")
	fs.StringVar(&o.tlsKey, "tls-key", "", "PEM private key `file` for --tls-cert")
	fs.Var(&o.acmeDomains, "acme-domain", "get a certificate for this domain `name` by ACME (tls-alpn-01: --https-listen must be reachable on port 443); may be repeated")
	fs.StringVar(&o.acmeDirectory, "acme-directory", "https://acme-v02.api.letsencrypt.org/directory", "ACME directory `URL` (a test CA's for staging)")
	fs.StringVar(&o.acmeDirectoryCA, "acme-directory-ca", "", "PEM `file` of the CA that signs the ACME directory's own HTTPS certificate, for a private or test ACME server (empty: the system roots)")
	fs.StringVar(&o.acmeEmail, "acme-email", "", "contact e-mail `address` given to the ACME CA (optional)")
	fs.StringVar(&o.acmeCache, "acme-cache", "", "`directory` to keep ACME account key and certificates in across restarts (empty: memory only; a restart gets a new certificate)")
}

// validate reports a contradictory or incomplete combination of operator flags, naming the flags.
func (o *opsFlags) validate() error {
	if o.adminListen != "" {
		if err := checkLoopback(o.adminListen); err != nil {
			return fmt.Errorf("--admin-listen %q: %w (the admin listener carries operator routes and must stay on this machine; hint: 127.0.0.1:9090)", o.adminListen, err)
		}
	}
	switch {
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return errors.New("--tls-cert and --tls-key must be given together")
	case o.tlsCert != "" && len(o.acmeDomains) > 0:
		return errors.New("--tls-cert and --acme-domain exclude each other: give a certificate or get one by ACME")
	case o.httpsListen == "" && (o.tlsCert != "" || len(o.acmeDomains) > 0):
		return errors.New("--tls-cert and --acme-domain need --https-listen (hint: --https-listen :443)")
	case o.httpsListen != "" && o.tlsCert == "" && len(o.acmeDomains) == 0:
		return errors.New("--https-listen needs --tls-cert and --tls-key, or --acme-domain")
	}
	if o.httpsListen != "" {
		if _, _, err := net.SplitHostPort(o.httpsListen); err != nil {
			return fmt.Errorf("--https-listen %q is not host:port: %w", o.httpsListen, err)
		}
	}
	for _, d := range o.acmeDomains {
		if d == "" || strings.ContainsAny(d, ":/ ") || net.ParseIP(d) != nil {
			return fmt.Errorf("--acme-domain %q is not a domain name", d)
		}
	}
	return nil
}

// checkLoopback accepts host:port whose host is a loopback IP or "localhost".
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("not host:port: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return errors.New("not a loopback address")
	}
	return nil
}

// parseWithEnv parses args into fs and then sets every flag that the command line left alone from its
// environment variable. It returns the names of the flags set from the environment. Errors are one line
// naming the flag (and the variable); the flag package's own output is silenced so nothing else is printed.
// A repeatable flag (stringList) takes a comma-separated list from its variable.
func parseWithEnv(fs *flag.FlagSet, args []string) (fromEnv map[string]bool, err error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	onCmdLine := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { onCmdLine[f.Name] = true })
	fromEnv = make(map[string]bool)
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || onCmdLine[f.Name] {
			return
		}
		v, ok := os.LookupEnv(envName(f.Name))
		if !ok {
			return
		}
		values := []string{v}
		if _, multi := f.Value.(*stringList); multi {
			values = strings.Split(v, ",")
		}
		for _, one := range values {
			if e := fs.Set(f.Name, strings.TrimSpace(one)); e != nil {
				err = fmt.Errorf("invalid value %q for flag --%s from %s: %v", v, f.Name, envName(f.Name), e)
				return
			}
		}
		fromEnv[f.Name] = true
	})
	return fromEnv, err
}

// configFlags maps the start of each relay.Config.Validate message to the flags that set it, so that a value
// out of range is reported under the flag the operator typed. Longer prefixes come first.
var configFlags = []struct{ prefix, flags string }{
	{"max frame", "--max-frame"},
	{"room buffer bytes", "--room-buffer-bytes"},
	{"room buffer", "--room-buffer"},
	{"max members", "--max-members"},
	{"default members", "--default-members"},
	{"max rooms per connection", "--max-rooms-per-conn"},
	{"max rooms", "--max-rooms"},
	{"max connections", "--max-conns"},
	{"grace", "--grace"},
	{"orphan grace", "--orphan-grace"},
	{"max memory", "--max-memory"},
	{"message timeout", "--message-timeout"},
	{"ack delay", "--ack-delay"},
	{"max room lifetime", "--room-lifetime"},
	{"ping period", "--pong-wait"},
	{"write timeout", "--write-timeout"},
	{"rate burst", "--rate-burst"},
	{"rate", "--rate"},
	{"ack interval", "--room-buffer"},
}

// numericConfigFlags are the relay limit flags; a negative value is refused for every one of them (zero means
// the default).
var numericConfigFlags = []string{
	"max-frame", "room-buffer", "room-buffer-bytes", "max-members", "default-members", "max-rooms-per-conn",
	"max-rooms", "max-conns", "grace", "room-lifetime", "idle-timeout", "write-timeout", "pong-wait", "rate",
	"rate-burst", "max-http-conns", "http-header-timeout", "http-body-timeout", "http-idle-timeout",
	"max-hash-queue", "max-hash-wait", "max-key-user-ids", "max-tickets-per-user",
	"orphan-grace", "message-timeout", "ack-delay", "max-memory",
	"mailbox-ttl-max", "mailbox-max-per-user", "mailbox-max-bytes-per-user", "mailbox-max-bytes",
	"prekeys-max-per-user", "prekeys-max-held", "prekeys-max-bytes",
}

// validateServeFlags checks the parsed flags and returns the first problem as one line naming its flag.
func validateServeFlags(fs *flag.FlagSet, f *serveFlags, fromEnv map[string]bool) error {
	from := func(name string) string {
		if fromEnv[name] {
			return " (from " + envName(name) + ")"
		}
		return ""
	}
	for _, name := range numericConfigFlags {
		fl := fs.Lookup(name)
		if strings.HasPrefix(fl.Value.String(), "-") {
			return fmt.Errorf("invalid value %q for flag --%s%s: must not be negative", fl.Value, name, from(name))
		}
	}
	// Zero means "the default" in relay.Config, but an operator who types --rate 0 means "no limit", which
	// does not exist: say so rather than run at the default.
	if f.cfg.RateFrames == 0 {
		return fmt.Errorf("invalid value 0 for flag --rate%s: must be positive (there is no unlimited rate; the default is %v)", from("rate"), relay.DefaultConfig().RateFrames)
	}
	// relay.Config.Validate accepts a pong wait so short that the ping period (5/12 of it) rounds to zero,
	// which time.NewTicker refuses with a panic; a keepalive under a second makes no sense over Tor anyway.
	if w := f.cfg.PongWait; w != 0 && w < time.Second {
		return fmt.Errorf("invalid value %q for flag --pong-wait%s: must be at least 1s", w, from("pong-wait"))
	}
	if err := f.cfg.Validate(); err != nil {
		var first error = err
		if joined, ok := err.(interface{ Unwrap() []error }); ok && len(joined.Unwrap()) > 0 {
			first = joined.Unwrap()[0] // one line: the operator fixes one thing at a time
		}
		msg := first.Error()
		for _, m := range configFlags {
			if strings.HasPrefix(msg, m.prefix) {
				name := strings.TrimPrefix(m.flags, "--")
				return fmt.Errorf("invalid value for flag %s%s: %s", m.flags, from(name), msg)
			}
		}
		return fmt.Errorf("invalid relay limits: %s", msg)
	}
	if err := f.accounts.boxLimits.Validate(); f.accounts.mailbox && err != nil {
		return fmt.Errorf("invalid value for a --mailbox-* flag: %w", err)
	}
	if err := f.accounts.keyLimits.Validate(); f.accounts.mailbox && err != nil {
		return fmt.Errorf("invalid value for a --prekeys-* flag: %w", err)
	}
	if n := f.accounts.keyLimits.MaxBundleBytes(); f.accounts.mailbox && int64(n) > f.accounts.apiLimits.WithDefaults().MaxBodyBytes {
		return fmt.Errorf("invalid value for flag --prekeys-max-per-user: a full bundle (%d bytes) would not fit a request body", n)
	}
	if err := f.ops.http.Validate(); err != nil {
		return fmt.Errorf("invalid HTTP limits: %w", err)
	}
	if err := f.ops.validate(); err != nil {
		return err
	}
	return nil
}

// printServeUsage writes every flag of serve with its default and its environment variable.
func printServeUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, `Usage: cleanrelay serve [flags]

Every flag can also be set by an environment variable: %s and the flag's name in upper case with
underscores, e.g. --max-frame is %s. A flag on the command line wins over its variable; a repeatable
flag takes a comma-separated list from its variable.

Flags:
`, envPrefix, envName("max-frame"))
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		arg, usage := flag.UnquoteUsage(f)
		def := f.DefValue
		if def == "" {
			def = "none"
		}
		fmt.Fprintf(w, "  --%s %s\n        %s\n        (default: %s; env %s)\n", f.Name, arg, usage, def, envName(f.Name))
	}
}

// componentFlags maps what a component (the key directory) says about a bad setting to the flag that set it,
// for values that are only checked when the component starts.
var componentFlags = []struct{ contains, flag string }{
	{"token algorithm", "token-alg"},
	{"token lifetime", "token-lifetime"},
	{"MaxHashQueue", "max-hash-queue"},
	{"MaxHashWait", "max-hash-wait"},
	{"MaxKeyUserIDs", "max-key-user-ids"},
}

// flagError names the flag behind a component's configuration error, so that it reads like every other
// invalid value. An error it does not recognise is returned as it is.
func flagError(err error) error {
	if err == nil {
		return nil
	}
	for _, m := range componentFlags {
		if strings.Contains(err.Error(), m.contains) {
			return fmt.Errorf("invalid value for flag --%s (or %s): %w", m.flag, envName(m.flag), err)
		}
	}
	return err
}

// byteSize is a flag of a size in bytes, with an optional binary suffix: 1048576, 512MiB, 2GiB.
type byteSize int64

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return errors.New("not a size in bytes (e.g. 1073741824, 512MiB, 2GiB)")
	}
	*b = byteSize(n * mult)
	return nil
}

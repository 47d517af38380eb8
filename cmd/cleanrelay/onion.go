package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/cleanrelay/cleanrelay/onion"
	"rsc.io/qr"
)

// onionFlags are the flags of "cleanrelay serve" in its default, onion mode.
type onionFlags struct {
	keyFile    string
	clientAuth bool
	torPath    string
	torControl string
	pow        bool
	maxStreams int
	torrcExtra string
}

func addOnionFlags(fs *flag.FlagSet, o *onionFlags) {
	fs.StringVar(&o.keyFile, "onion-key", "", "keep a stable onion address: read the service key from this `file`, or create it (mode 0600) if absent; without it the address is new at every start and the key never touches disk")
	fs.BoolVar(&o.clientAuth, "client-auth", false, "client authorization: only a Tor Browser given the printed key can reach the relay (a new key at every start)")
	fs.StringVar(&o.torPath, "tor-path", "tor", "the tor `binary` to launch (Debian: apt-get install tor)")
	fs.StringVar(&o.torControl, "tor-control", "", "use an already-running tor through its control port (`address` host:port or unix:/path, cookie authentication) instead of launching one")
	fs.BoolVar(&o.pow, "pow", true, "ask tor for its proof-of-work DoS defence (tor 0.4.9.2 or newer; older tor: a warning and none)")
	fs.IntVar(&o.maxStreams, "max-streams", onion.DefaultMaxStreams, "simultaneous streams one Tor circuit may open to the relay (negative: no limit)")
	fs.StringVar(&o.torrcExtra, "tor-torrc-extra", "", "for tests only: an extra torrc `file` for the launched tor, e.g. to join a private test network")
}

// serveOnion publishes the relay as a Tor onion service and serves it until ctx is done.
func serveOnion(ctx context.Context, f *serveFlags, stdout io.Writer, log *slog.Logger) error {
	srv, handler, admin, err := newRelay(f, log)
	if err != nil {
		return err
	}
	o := f.onion
	cfg := onion.Config{
		TorPath:     o.torPath,
		KeyFile:     o.keyFile,
		ClientAuth:  o.clientAuth,
		DisablePoW:  !o.pow,
		MaxStreams:  o.maxStreams,
		ControlAddr: o.torControl,
		TorrcFile:   o.torrcExtra,
	}
	if cfg.MaxStreams == 0 {
		// 0 means "default" to onion.Config; on the command line it would read as "none", so refuse it.
		return fmt.Errorf("--max-streams 0 would refuse every stream; give a positive number, or a negative one for no limit")
	}
	log.Info("starting tor and publishing the onion service; this takes a few seconds to a minute")
	svc, err := onion.Start(ctx, cfg, log)
	if err != nil {
		srv.Close(context.Background())
		return err
	}
	srv.AllowHost(svc.Hostname())
	ops, err := startOps(&f.ops, srv, handler, admin, log)
	if err != nil {
		svc.Close()
		srv.Close(context.Background())
		return err
	}
	ops.SetOnionAddress(svc.Hostname())
	fmt.Fprintf(stdout, "cleanrelay: serving on %s\n", svc.URL())
	if isTerminal(stdout) {
		// A phone with Tor Browser can scan it; in a pipe or a log file it would only be noise.
		if q, err := qrText(svc.URL()); err == nil {
			fmt.Fprint(stdout, q)
		}
	}
	if a := svc.ClientAuth(); a != nil {
		fmt.Fprintf(stdout, "cleanrelay: client authorization key (paste into Tor Browser when it asks for the key): %s\n", a.PrivateKey)
	}
	ops.announce(stdout)
	err = serveOn(ctx, srv, handler, f.ops.http, svc.Listener(), log)
	err = errors.Join(err, ops.shutdown())
	if cerr := svc.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("failed to stop tor cleanly: %w", cerr)
	}
	return err
}

// qrQuiet is the light margin around the code, in modules; scanners need some (the standard asks for 4).
const qrQuiet = 2

// qrText draws text as a QR code with Unicode half blocks, two rows of modules per line of text. Dark modules
// are spaces and light ones blocks, so the code reads right on the usual dark terminal background.
func qrText(text string) (string, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", fmt.Errorf("failed to encode QR code: %w", err)
	}
	n := code.Size + 2*qrQuiet
	light := func(x, y int) bool {
		x, y = x-qrQuiet, y-qrQuiet
		return x < 0 || y < 0 || x >= code.Size || y >= code.Size || !code.Black(x, y)
	}
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		for x := range n {
			top, bottom := light(x, y), y+1 < n && light(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	return b.String(), nil
}

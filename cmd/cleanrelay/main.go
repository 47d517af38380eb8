// Command cleanrelay runs a zero-knowledge ciphertext relay: an onion service that serves a browser chat client
// and forwards end-to-end-encrypted frames between the members of in-memory rooms.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/cleanrelay/cleanrelay/relay/bench"
)

const usage = `cleanrelay is a zero-knowledge ciphertext relay for private, ephemeral chat over Tor.

Usage:
    cleanrelay serve [flags]      run the relay (as a Tor onion service unless --local-only)
    cleanrelay bench [flags] W    measure a relay under load next to a bare forwarder (W: pairs, idle, connect, all)
    cleanrelay version            print the version, the Go version and the browser client's SHA-256
    cleanrelay health             check a running relay's admin listener (exit 0 when healthy)
    cleanrelay chat [flags] LINK  chat in a room from a terminal (or a script): "cleanrelay chat --help"
    cleanrelay cluster hsdir|config [flags]
                                  a cluster node's onion instance service behind Onionbalance, and
                                  onionbalance's config: "cleanrelay cluster help"
    cleanrelay help               print this text

Run "cleanrelay serve --help" for the flags of serve.

Example: run the relay on this machine only, without Tor, and open the printed address in a browser:

    $ cleanrelay serve --local-only --listen 127.0.0.1:8080
    cleanrelay: serving on http://127.0.0.1:8080/
`

// version is set at build time with -ldflags "-X main.version=...".
var version = "devel"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code. Output rules: lines on stderr start with
// "cleanrelay: ", are lower-case and have no trailing period; the one line a user needs goes to stdout.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "bench":
		return benchCmd(args[1:], stdout, stderr)
	case "bench-floor": // hidden: the bare forwarder that bench starts
		return benchFloor(args[1:], stdout, stderr)
	case "bench-flood": // hidden: the soak's floods, in a process of their own at the lowest priority
		return bench.FloodMain(args[1:], os.Stdin, stdout, stderr)
	case "bench-hold": // hidden: one client process of an idle run over several nodes
		return benchHold(args[1:], os.Stdin, stdout, stderr)
	case "version", "--version", "-version":
		return printVersion(stdout)
	case "health":
		return health(args[1:], stdout, stderr)
	case "chat":
		return chatCmd(args[1:], os.Stdin, stdout, stderr)
	case "cluster":
		return clusterCmd(args[1:], stdout, stderr)
	case "help", "--help", "-help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cleanrelay: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}

package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanrelay/cleanrelay/onion/tornet"
)

var browserFlag = flag.Bool("browser", false, "with -tor: also run the headless-browser test through the onion (needs firefox-esr and e2e/node_modules; .ci/test-web.sh passes it)")

// TestBrowserThroughOnion: `cleanrelay serve` in onion mode on the private Tor network; headless Firefox ESR
// with Tor Browser's onion settings and "Safer"-like prefs, whose only way out is the client tor's SOCKS port, opens http://<address>.onion/, creates an anonymous room, a second
// page opens the invite link, and the two chat both ways with end-to-end encryption.
func TestBrowserThroughOnion(t *testing.T) {
	tornet.Require(t)
	if !*browserFlag {
		t.Skip("needs -browser too (firefox-esr and e2e/node_modules; .ci/test-web.sh passes -tor -browser)")
	}
	script, err := filepath.Abs("../../e2e/browser/onion-chat.mjs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "../node_modules/puppeteer-core")); err != nil {
		t.Fatalf("-browser given but e2e/node_modules is missing (run npm ci in e2e): %v", err)
	}
	n := tornet.Start(t)
	sb := startServeTor(t, 2*time.Minute, "--tor-torrc-extra", writeTorrc(t, n))
	// Wait until the service answers through the client tor before the browser tries, so that the browser does
	// not meet a descriptor that is not uploaded yet (tor then backs off for minutes; see docs/onion.md).
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, sb.url, nil)
		resp, err := n.HTTPClient().Do(req)
		if err == nil {
			resp.Body.Close()
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the onion service never answered: %v", err)
		}
		time.Sleep(time.Second)
	}
	cmd := exec.Command("node", script)
	cmd.Dir = filepath.Dir(script)
	cmd.Env = append(os.Environ(), "CR_ONION_URL="+sb.url, "CR_SOCKS="+n.SocksAddr)
	done := make(chan struct{})
	var out []byte
	go func() {
		out, err = cmd.CombinedOutput()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("the browser did not finish within 5 minutes:\n%s", out)
	}
	t.Logf("browser:\n%s", out)
	if err != nil || !strings.Contains(string(out), "onion browser chat ok") {
		t.Fatalf("browser chat through the onion failed: %v\nrelay log:\n%s", err, sb.stderr)
	}
	if strings.Contains(sb.stderr.String(), sb.host) {
		t.Errorf("the relay's log names its onion address")
	}
}

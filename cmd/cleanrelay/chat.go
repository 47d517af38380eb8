package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

const chatUsage = `Usage:
    cleanrelay chat [flags] LINK                 join an anonymous room from a browser's invite link
    cleanrelay chat [flags] --create [--max N] URL   create a room on the relay at URL and print its invite link
    cleanrelay chat [flags] --login NAME [--key FILE.zip] URL @PEER
                                                 a dialog with the registered user PEER, as the account NAME

The terminal client of cleanrelay: it speaks the browser's end-to-end protocol (docs/e2e.md), so a browser and
a terminal chat with each other. The part of the link after '#' (room, capability, invite secret) never
leaves this process. Without --json and with a terminal on stdout it opens a chat screen; otherwise it reads
and writes one JSON object per line.

Flags:
    --tor-socks HOST:PORT  reach the relay through Tor's SOCKS5 port; the .onion name is resolved by Tor,
                           never by local DNS. Required for .onion links; plain http is refused for anything
                           but loopback and .onion addresses
    --json                 scripted mode: commands on stdin, events on stdout, one JSON object per line
    --save DIR             where received files are saved (default: the current directory)
    --create               create a room instead of joining one
    --max N                with --create: how many members the room admits (default 2)

Dialogs (--login; the account must exist: register in the browser):
    --login NAME           log in as NAME; the password comes from $CLEANRELAY_PASSWORD, --password-file, or
                           a prompt on the terminal (never a flag: flags show in ps)
    --key FILE.zip         the key pair the browser exported ("Export key"); its passphrase from
                           $CLEANRELAY_KEY_PASSPHRASE, --passphrase-file or a prompt. Published if the
                           directory holds another key. Without --key, an account with no key gets a new one
                           (made here, published, and offered for export)
    --new-key              make and publish a new key although the account has one (peers see a key change)
    --key-type TYPE        rsa (RSA-4096, the default), curve25519, or v6 (an RFC 9580 v6 key, Ed25519 and
                           X25519: GnuPG 2.2 and 2.4 cannot import it)
    --export FILE.zip      save a key made here as the browser's ZIP (passphrase as for --key); never overwrites
    --pins FILE            keep the peers' pinned fingerprints in this JSON file (default: this run only)
    --prekeys FILE         keep the private halves of this account's one-time prekeys for the mailbox here,
                           encrypted to the account's key (default: beside the --key or --export ZIP, as
                           FILE.zip.prekeys; "-": none). Messages the peer leaves while this terminal is away
                           are read with them at the next login; without the file none are published and such
                           messages wait for the browser
    --password-file FILE   the first line is the account's password
    --passphrase-file FILE the first line is the key passphrase

Commands (--json, stdin):
    {"cmd":"send","text":"hi"}          a message; "ttl":30 removes it from both screens after 30 s
    {"cmd":"file","path":"photo.jpg"}   send a file (at most 8 MiB)
    {"cmd":"trust","member":2}          accept member 2's changed key after comparing the safety code (in a
                                        dialog {"cmd":"trust"}: the peer's new directory key)
    {"cmd":"export","path":"k.zip"}     dialogs: save this account's key as the browser's ZIP
    {"cmd":"burn"}                      end the room for everyone
    {"cmd":"leave"}                     leave the room (as does the end of stdin, once queued sends are out)
Sends wait until the room's keys are agreed; in a dialog, a message to a peer who is not there goes to the
relay's mailbox (a file waits for the peer). Events (stdout) have a "type": invite, key, exported, state,
presence, safety, keychange, message ("mailbox":true for one the peer left while you were away), sent
("mailbox":true when it went there), expired, filestart, file, filesent, problem, error, ended.

Screen keys: Enter sends the line; /file PATH, /timer SECONDS, /trust [N], /export FILE.zip, /burn, /quit; PgUp/PgDn scroll;
Ctrl-C leaves. The status line shows the connection, the members and each member's safety code.

Examples:
    # create a room on a relay on this machine and hand the printed link to a browser
    $ cleanrelay chat --create http://127.0.0.1:8080/

    # join a browser's room through Tor Browser's SOCKS port
    $ cleanrelay chat --tor-socks 127.0.0.1:9150 'http://xxxx.onion/#r=ROOM&c=CAP&k=SECRET'

    # a dialog with bob as alice, with the key pair alice exported from the browser
    $ cleanrelay chat --login alice --key alice-key.zip --pins ~/.cleanrelay-pins.json http://127.0.0.1:8080/ @bob
    password for alice:
    passphrase of alice-key.zip:

    # the same from a script, through Tor, with a key made here and saved for the browser
    $ export CLEANRELAY_PASSWORD=… CLEANRELAY_KEY_PASSPHRASE=…
    $ echo '{"cmd":"send","text":"hi bob"}' | cleanrelay chat --json --tor-socks 127.0.0.1:9050 \
          --login alice --export alice-key.zip http://xxxx.onion/ @bob

    # a script that says hello and leaves
    $ echo '{"cmd":"send","text":"hello"}' | cleanrelay chat --json "$LINK"
    {"type":"state","online":true,"ready":false,"members":[1,2],"me":2}
    {"type":"safety","member":1,"safety":"12345 67890 12345 67890 12345 67890"}
    {"type":"sent","from":2,"id":"…","text":"hello","ts":1767225600000}
    {"type":"ended","reason":"left"}

Exit status: 0 when the room ended or was left, 1 on an error (one line on stderr), 2 for bad usage.
`

// chatCmd runs "cleanrelay chat".
func chatCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	torSocks := fs.String("tor-socks", "", "")
	jsonMode := fs.Bool("json", false, "")
	saveDir := fs.String("save", ".", "")
	create := fs.Bool("create", false, "")
	maxMembers := fs.Int("max", 2, "")
	var df dialogFlags
	fs.StringVar(&df.login, "login", "", "")
	fs.StringVar(&df.keyFile, "key", "", "")
	fs.BoolVar(&df.newKey, "new-key", false, "")
	fs.StringVar(&df.keyType, "key-type", "rsa", "")
	fs.StringVar(&df.exportFile, "export", "", "")
	fs.StringVar(&df.pinsFile, "pins", "", "")
	fs.StringVar(&df.prekeysFile, "prekeys", "", "")
	fs.StringVar(&df.passwordFile, "password-file", "", "")
	fs.StringVar(&df.passphraseFile, "passphrase-file", "", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, chatUsage)
			return 0
		}
		fmt.Fprintf(stderr, "cleanrelay: chat: %v\n\n%s", err, chatUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cleanrelay: chat: %v\n", err)
		return 1
	}
	if df.login != "" {
		return chatDialogCmd(fs.Args(), df, *torSocks, *jsonMode, *saveDir, stdin, stdout, stderr)
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "cleanrelay: chat: give one invite link (or, with --create, the relay's URL)\n\n%s", chatUsage)
		return 2
	}
	cfg := chatConfig{create: *create, max: *maxMembers, saveDir: *saveDir}
	var u *url.URL
	var err error
	if *create {
		if *maxMembers < 2 {
			return fail(errors.New("--max must be at least 2"))
		}
		u, err = parseRelayURL(fs.Arg(0))
		cfg.base = fs.Arg(0)
	} else {
		cfg.invite, err = parseInviteLink(fs.Arg(0))
		if err == nil {
			u = cfg.invite.base
		}
	}
	if err != nil {
		return fail(err)
	}
	if cfg.wsURL, cfg.dial, err = chatDialer(u, *torSocks); err != nil {
		return fail(err)
	}
	if cfg.saveDir, err = checkSaveDir(cfg.saveDir); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !*jsonMode && isTerminal(stdout) {
		return chatScreen(ctx, cfg, stdout, stderr)
	}
	return chatJSON(ctx, cfg, stdin, stdout, stderr, nil)
}

func checkSaveDir(dir string) (string, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return "", fmt.Errorf("--save %s is not a directory", dir)
	}
	return filepath.Abs(dir)
}

// chatDialogCmd runs "cleanrelay chat --login NAME URL @PEER".
func chatDialogCmd(args []string, df dialogFlags, torSocks string, jsonMode bool, saveDir string, stdin io.Reader, stdout, stderr io.Writer) int {
	var rawURL, peer string
	for _, a := range args {
		if strings.HasPrefix(a, "@") {
			peer = a[1:]
		} else {
			rawURL = a
		}
	}
	if len(args) != 2 || peer == "" || rawURL == "" {
		fmt.Fprintf(stderr, "cleanrelay: chat: with --login, give the relay's URL and @PEER\n\n%s", chatUsage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "cleanrelay: chat: %v\n", err)
		return 1
	}
	if df.keyType != "rsa" && df.keyType != "curve25519" && df.keyType != "v6" {
		return fail(fmt.Errorf("--key-type %q: rsa, curve25519 or v6", df.keyType))
	}
	u, err := parseRelayURL(rawURL)
	if err != nil {
		return fail(err)
	}
	cfg := chatConfig{}
	if cfg.saveDir, err = checkSaveDir(saveDir); err != nil {
		return fail(err)
	}
	if cfg.wsURL, cfg.dial, err = chatDialer(u, torSocks); err != nil {
		return fail(err)
	}
	cfg.wsURL = strings.TrimSuffix(cfg.wsURL, "?anonymous=1") // a logged-in session (docs/accounts.md §7)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	screen := !jsonMode && isTerminal(stdout)
	var early []chatEvent
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	cfg.dialog, err = openChatDialog(sctx, &cfg, u, peer, df, screen, func(ev chatEvent) { early = append(early, ev) })
	cancel()
	if err != nil {
		// What was done before the failure (a key made and published) is still told.
		enc := json.NewEncoder(stdout)
		for _, ev := range early {
			if screen {
				fmt.Fprintf(stderr, "cleanrelay: chat: %s %s %s\n", ev.Message, ev.Text, ev.Path)
			} else {
				enc.Encode(ev)
			}
		}
		return fail(err)
	}
	cfg.passphraseFile = df.passphraseFile
	if screen {
		cfg.early = early
		return chatScreen(ctx, cfg, stdout, stderr)
	}
	return chatJSON(ctx, cfg, stdin, stdout, stderr, early)
}

// chatJSON is the scripted mode: commands from stdin, events to stdout, one JSON object per line.
func chatJSON(ctx context.Context, cfg chatConfig, stdin io.Reader, stdout, stderr io.Writer, early []chatEvent) int {
	events := make(chan chatEvent, 64+len(early))
	for _, ev := range early {
		events <- ev
	}
	cmds := make(chan chatCommand, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		enc := json.NewEncoder(stdout)
		enc.SetEscapeHTML(false)
		for ev := range events {
			enc.Encode(ev)
		}
	}()
	s := &chatSession{cfg: cfg, out: events, cmds: cmds}
	err := s.start(ctx)
	if err == nil {
		go func() {
			sc := bufio.NewScanner(stdin)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				if len(sc.Bytes()) == 0 {
					continue
				}
				var c chatCommand
				if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
					events <- chatEvent{Type: "error", Message: "not a JSON command: " + err.Error()}
					continue
				}
				cmds <- c
			}
			close(cmds)
		}()
		err = s.run(ctx)
	}
	close(events)
	<-done
	if err != nil {
		fmt.Fprintf(stderr, "cleanrelay: chat: %v\n", err)
		return 1
	}
	return 0
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

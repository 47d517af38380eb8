package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"golang.org/x/term"

	"github.com/cleanrelay/cleanrelay/relay/client"
	"github.com/cleanrelay/cleanrelay/relay/client/pgp"
)

// Environment variables for the secrets of scripts (never flags: a flag's value shows in ps).
const (
	envPassword   = "CLEANRELAY_PASSWORD"       // the account's password
	envPassphrase = "CLEANRELAY_KEY_PASSPHRASE" // the passphrase of --key FILE.zip, or of an exported key
)

// dialogFlags are the flags of a dialog (--login).
type dialogFlags struct {
	login, keyFile, keyType, exportFile, pinsFile string
	prekeysFile                                   string
	passwordFile, passphraseFile                  string
	newKey                                        bool
}

// secret reads a password: the first line of file if one is named, else the environment variable env (removed
// from this process's environment once read), else a prompt on the terminal without echo.
func secret(file, env, prompt string) ([]byte, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		line, _, _ := strings.Cut(string(b), "\n")
		return []byte(strings.TrimSuffix(line, "\r")), nil
	}
	if v, ok := os.LookupEnv(env); ok {
		os.Unsetenv(env)
		return []byte(v), nil
	}
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("no terminal to ask on: set %s or give a file", env)
	}
	defer tty.Close()
	fmt.Fprint(tty, prompt)
	b, err := term.ReadPassword(int(tty.Fd()))
	fmt.Fprintln(tty)
	return b, err
}

// passphraseProblem checks a key passphrase against the browser's policy (static/js/policy.mjs): 15 or more
// characters of anything, or 8 or more with an upper-case letter, a lower-case letter, a digit and a special
// character. It returns what is missing, or "".
func passphraseProblem(p []byte) string {
	s := string(p)
	if len([]rune(s)) >= 15 {
		return ""
	}
	var up, low, digit, special bool
	for _, r := range s {
		switch {
		case unicode.IsUpper(r):
			up = true
		case unicode.IsLower(r):
			low = true
		case unicode.IsDigit(r):
			digit = true
		default:
			special = true
		}
	}
	if len([]rune(s)) >= 8 && up && low && digit && special {
		return ""
	}
	return "a key passphrase needs 15 or more characters, or 8 or more with an upper-case letter, a lower-case letter, a digit and a special character"
}

// chatHTTP is the HTTP client of the accounts API: through Tor when the WebSocket goes through Tor.
func chatHTTP(cfg chatConfig) *http.Client {
	tr := &http.Transport{Proxy: nil, DialContext: cfg.dial}
	return &http.Client{Transport: tr, Timeout: 90 * time.Second}
}

// openChatDialog logs in, settles the key (imported, made, or already published), opens the dialog with peer
// and looks up the peer's key. Events (the key made, the export offer) go to emit.
func openChatDialog(ctx context.Context, cfg *chatConfig, base *url.URL, peer string, f dialogFlags, interactive bool, emit func(chatEvent)) (*chatDialog, error) {
	pins, err := loadChatPins(f.pinsFile) // a bad pins file stops before anything is published
	if err != nil {
		return nil, err
	}
	password, err := secret(f.passwordFile, envPassword, "password for "+f.login+": ")
	if err != nil {
		return nil, fmt.Errorf("no password: %w", err)
	}
	hc := chatHTTP(*cfg)
	acct, me, err := client.Login(ctx, base.Scheme+"://"+base.Host, f.login, string(password), hc)
	clear(password)
	if err != nil {
		return nil, fmt.Errorf("failed to log in as %s: %w", f.login, err)
	}
	own, err := chatKey(ctx, acct, me, f, interactive, emit)
	if err != nil {
		return nil, err
	}
	acct.Sign = own.SignDetached
	pins.login = acct.Name
	dl, err := acct.OpenDialog(ctx, peer)
	switch {
	case err != nil && strings.Contains(err.Error(), `"no_key"`):
		return nil, fmt.Errorf("%s has not published a key yet: a dialog opens once they have logged in and made or imported one", peer)
	case err != nil && strings.Contains(err.Error(), `"not_found"`):
		return nil, fmt.Errorf("there is no user %s on this relay", peer)
	case err != nil:
		return nil, fmt.Errorf("failed to open the dialog with %s: %w", peer, err)
	}
	if dl.Peer.Username != "" {
		peer = dl.Peer.Username // pins are kept under the relay's normalized name
	}
	d := &chatDialog{acct: acct, room: dl.Room, cap: dl.Cap, peer: peer, own: own, pins: pins, pinnedFP: pins.get(peer)}
	if d.mail, err = newChatMail(acct, own, prekeysFile(f), emit); err != nil {
		return nil, err
	}
	if d.mail.file == "" && f.prekeysFile != "-" {
		// A key made here and not saved: nothing else is saved either.
		emit(chatEvent{Type: "problem", Code: "unsaved", Message: "no one-time prekeys are published without a file to keep them in (--prekeys FILE, or beside --key/--export FILE.zip): messages " + peer + " leaves while you are away wait for your browser"})
	} else if d.mail.file != "" {
		if _, err := d.mail.topUp(ctx); err != nil {
			emit(chatEvent{Type: "problem", Code: "prekeys", Message: "failed to publish prekeys for the mailbox (messages left while away wait for another device): " + err.Error()})
		}
	}
	if d.dirKey, err = d.peerKey(ctx); err != nil {
		return nil, fmt.Errorf("failed to look up %s's key: %w", peer, err)
	}
	var hdr http.Header
	cfg.header = func(ctx context.Context, fresh bool) (http.Header, error) {
		if hdr == nil || fresh {
			h, err := acct.TicketHeader(ctx)
			if err != nil {
				return nil, fmt.Errorf("failed to prove the key for a session ticket: %w", err)
			}
			hdr = h
		}
		return hdr, nil
	}
	return d, nil
}

// prekeysFile is where the private halves of the prekeys are kept: --prekeys, else beside the key's ZIP
// (--key or --export), else nowhere ("-" also: none).
func prekeysFile(f dialogFlags) string {
	switch {
	case f.prekeysFile == "-":
		return ""
	case f.prekeysFile != "":
		return f.prekeysFile
	case f.keyFile != "":
		return f.keyFile + ".prekeys"
	case f.exportFile != "":
		return f.exportFile + ".prekeys"
	}
	return ""
}

// chatKey returns the account's key: imported from --key (published if the directory holds another), or made
// and published when the account has none (or --new-key), then offered for export.
func chatKey(ctx context.Context, acct *client.Account, me *client.Me, f dialogFlags, interactive bool, emit func(chatEvent)) (*pgp.Key, error) {
	var own *pgp.Key
	var exportPass []byte
	switch {
	case f.keyFile != "":
		zip, err := os.ReadFile(f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("failed to read --key: %w", err)
		}
		pass, err := secret(f.passphraseFile, envPassphrase, "passphrase of "+filepath.Base(f.keyFile)+": ")
		if err != nil {
			return nil, fmt.Errorf("no key passphrase: %w", err)
		}
		own, err = pgp.ImportZip(zip, pass)
		clear(pass)
		if err != nil {
			return nil, fmt.Errorf("failed to import %s: %w", f.keyFile, err)
		}
		if me.Key != nil && me.Key.Fingerprint == own.Fingerprint() {
			return own, nil
		}
	case me.Key != nil && !f.newKey:
		return nil, fmt.Errorf("%s already has a published key (%s): give its ZIP with --key FILE.zip (exported from the browser), or --new-key to make and publish a new one (peers will see a key change)", acct.Name, me.Key.Fingerprint)
	default:
		var err error
		// --export is checked before anything is made or published: a key the directory holds and nobody saved
		// would lock the account out of its dialogs until --new-key.
		if f.exportFile != "" {
			if _, err := os.Stat(f.exportFile); err == nil {
				return nil, fmt.Errorf("--export %s exists: it is never overwritten", f.exportFile)
			}
			if exportPass, err = exportPassphrase(f.exportFile, f.passphraseFile); err != nil {
				return nil, err
			}
			defer clear(exportPass)
		}
		if own, err = pgp.Generate(f.keyType, acct.Name, me.User.Email); err != nil {
			return nil, err
		}
	}
	acct.Sign = own.SignDetached
	pub, err := own.ArmoredPublic()
	if err != nil {
		return nil, err
	}
	if err := acct.PublishKey(ctx, pub); err != nil {
		return nil, fmt.Errorf("failed to publish the key: %w", err)
	}
	name := own.Algorithm()
	if own.Version() == 6 {
		name += " (OpenPGP v6)"
	}
	emit(chatEvent{Type: "key", Name: name, Text: own.Fingerprint(), Message: "published this key for " + acct.Name})
	if f.keyFile != "" {
		return own, nil
	}
	path := f.exportFile
	if path == "" && interactive {
		fmt.Fprint(os.Stderr, "This key lives only in this process. Save it as a ZIP the browser imports? File name (Enter: no): ")
		line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		path = strings.TrimSpace(line)
	}
	if path == "" {
		emit(chatEvent{Type: "problem", Code: "unsaved", Message: "the new key lives only in this process: save it with {\"cmd\":\"export\",\"path\":\"FILE.zip\"} (or /export FILE.zip), with its passphrase in " + envPassphrase})
		return own, nil
	}
	if exportPass == nil { // the screen's offer: a failure leaves the key unsaved, not the dialog unopened
		if err := exportKey(own, path, f.passphraseFile); err != nil {
			emit(chatEvent{Type: "problem", Code: "unsaved", Message: "the new key was not saved (" + err.Error() + "): /export FILE.zip saves it"})
			return own, nil
		}
	} else if err := writeKeyZip(own, path, exportPass); err != nil {
		return nil, err
	}
	emit(chatEvent{Type: "exported", Path: path})
	return own, nil
}

// exportKey writes the browser's key-pair ZIP to path (never over an existing file), with the passphrase from
// passphraseFile, the environment or a prompt.
func exportKey(k *pgp.Key, path, passphraseFile string) error {
	pass, err := exportPassphrase(path, passphraseFile)
	if err != nil {
		return err
	}
	defer clear(pass)
	return writeKeyZip(k, path, pass)
}

// exportPassphrase gets the passphrase of an exported key and checks it against the browser's policy.
func exportPassphrase(path, passphraseFile string) ([]byte, error) {
	pass, err := secret(passphraseFile, envPassphrase, "passphrase for "+filepath.Base(path)+": ")
	if err != nil {
		return nil, fmt.Errorf("no passphrase for the exported key: %w", err)
	}
	if why := passphraseProblem(pass); why != "" {
		clear(pass)
		return nil, errors.New(why)
	}
	return pass, nil
}

func writeKeyZip(k *pgp.Key, path string, pass []byte) error {
	zip, err := pgp.ExportZip(k, pass)
	if err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("failed to export the key: %w", err)
	}
	_, err = fh.Write(zip)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// chatPins holds the pinned fingerprints of one login's peers: in memory, and in a JSON file only when the user
// named one (--pins FILE: {"LOGIN":{"PEER":"FINGERPRINT"}}, other logins' pins kept as they are).
type chatPins struct {
	file, login string
	all         map[string]map[string]string
}

func loadChatPins(file string) (*chatPins, error) {
	p := &chatPins{file: file, all: map[string]map[string]string{}}
	if file == "" {
		return p, nil
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err == nil {
		err = json.Unmarshal(b, &p.all)
	}
	if err != nil {
		return nil, fmt.Errorf("failed to read the pins file %s: %w", file, err)
	}
	return p, nil
}

func (p *chatPins) get(peer string) string { return p.all[p.login][peer] }

func (p *chatPins) set(peer, fp string) error {
	if p.all[p.login] == nil {
		p.all[p.login] = map[string]string{}
	}
	p.all[p.login][peer] = fp
	if p.file == "" {
		return nil
	}
	b, _ := json.MarshalIndent(p.all, "", "  ")
	tmp := p.file + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("failed to save the pins: %w", err)
	}
	if err := os.Rename(tmp, p.file); err != nil {
		return fmt.Errorf("failed to save the pins: %w", err)
	}
	return nil
}

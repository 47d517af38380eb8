package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// chatScreen is the interactive screen: the conversation, a status line (connection, members, safety code) and
// an input line; keyboard only. Lines starting with '/' are commands: /file PATH, /timer SECONDS, /trust N, /burn, /quit.
func chatScreen(ctx context.Context, cfg chatConfig, stdout, stderr io.Writer) int {
	events := make(chan chatEvent, 64+len(cfg.early))
	for _, ev := range cfg.early {
		events <- ev
	}
	cmds := make(chan chatCommand, 64)
	s := &chatSession{cfg: cfg, out: events, cmds: cmds}

	app := tview.NewApplication()
	conv := tview.NewTextView().SetDynamicColors(true).SetScrollable(true).SetWordWrap(true)
	conv.SetChangedFunc(func() { app.Draw() })
	status := tview.NewTextView().SetDynamicColors(true)
	status.SetBackgroundColor(tcell.ColorNavy)
	input := tview.NewInputField().SetLabel("> ").SetFieldBackgroundColor(tcell.ColorDefault)
	root := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(conv, 0, 1, false).
		AddItem(status, 1, 0, false).
		AddItem(input, 1, 0, true)

	st := screenState{}
	ttl := 0 // seconds after which sent messages leave both screens (/timer)
	render := func() {
		var b strings.Builder
		for _, l := range st.lines {
			b.WriteString(l.text)
			b.WriteByte('\n')
		}
		conv.SetText(b.String())
		conv.ScrollToEnd()
	}
	st.render = render
	say := func(format string, a ...any) {
		st.lines = append(st.lines, screenLine{id: st.lineID, text: fmt.Sprintf("[gray]%s[-] %s", time.Now().Format("15:04"), fmt.Sprintf(format, a...))})
		st.lineID = ""
		if len(st.lines) > 2000 {
			st.lines = st.lines[len(st.lines)-2000:]
		}
		render()
	}
	input.SetDoneFunc(func(key tcell.Key) {
		if key != tcell.KeyEnter {
			return
		}
		line := strings.TrimSpace(input.GetText())
		input.SetText("")
		if line == "" {
			return
		}
		c, err := parseScreenLine(line)
		if err != nil {
			say("[red]%s[-]", tview.Escape(err.Error()))
			return
		}
		if c.Cmd == "timer" {
			ttl = c.TTL
			say("messages you send now disappear after %d s (0: never)", ttl)
			return
		}
		c.TTL = ttl
		cmds <- c
	})
	input.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		switch ev.Key() {
		case tcell.KeyPgUp, tcell.KeyPgDn, tcell.KeyUp, tcell.KeyDown:
			conv.InputHandler()(ev, nil)
			return nil
		}
		return ev
	})
	app.SetInputCapture(func(ev *tcell.EventKey) *tcell.EventKey {
		if ev.Key() == tcell.KeyCtrlC { // leave the room properly instead of tview's stop
			select {
			case cmds <- chatCommand{Cmd: "leave"}:
			default:
			}
			return nil
		}
		return ev
	})

	var runErr error
	go func() {
		for ev := range events {
			ev := ev
			app.QueueUpdateDraw(func() {
				st.apply(ev, say)
				status.SetText(st.line())
			})
		}
		app.QueueUpdate(app.Stop)
	}()
	say("connecting…")
	go func() {
		err := s.start(ctx)
		if err == nil {
			err = s.run(ctx)
		}
		runErr = err
		close(events)
	}()
	if err := app.SetRoot(root, true).EnableMouse(false).Run(); err != nil {
		fmt.Fprintf(stderr, "cleanrelay: chat: %v\n", err)
		return 1
	}
	if runErr != nil {
		fmt.Fprintf(stderr, "cleanrelay: chat: %v\n", runErr)
		return 1
	}
	if st.ended != "" {
		fmt.Fprintf(stdout, "the room has ended (%s)\n", st.ended)
	}
	return 0
}

// parseScreenLine turns an input line into a command.
func parseScreenLine(line string) (chatCommand, error) {
	if !strings.HasPrefix(line, "/") || strings.HasPrefix(line, "//") {
		return chatCommand{Cmd: "send", Text: strings.TrimPrefix(line, "/")}, nil
	}
	word, arg, _ := strings.Cut(line[1:], " ")
	arg = strings.TrimSpace(arg)
	switch word {
	case "file":
		if arg == "" {
			return chatCommand{}, fmt.Errorf("usage: /file PATH")
		}
		return chatCommand{Cmd: "file", Path: arg}, nil
	case "trust":
		var m uint32
		if _, err := fmt.Sscan(arg, &m); err != nil && arg != "" { // a dialog's one peer needs no number
			return chatCommand{}, fmt.Errorf("usage: /trust MEMBER")
		}
		return chatCommand{Cmd: "trust", Member: m}, nil
	case "burn":
		return chatCommand{Cmd: "burn"}, nil
	case "export":
		if arg == "" {
			return chatCommand{}, fmt.Errorf("usage: /export FILE.zip")
		}
		return chatCommand{Cmd: "export", Path: arg}, nil
	case "timer":
		var n int
		if _, err := fmt.Sscan(arg, &n); err != nil || n < 0 {
			return chatCommand{}, fmt.Errorf("usage: /timer SECONDS (0: off)")
		}
		return chatCommand{Cmd: "timer", TTL: n}, nil
	case "quit", "leave":
		return chatCommand{Cmd: "leave"}, nil
	}
	return chatCommand{}, fmt.Errorf("unknown command /%s (/file PATH, /timer S, /trust N, /burn, /export FILE.zip, /quit; // starts a message with /)", word)
}

// screenState is what the status line shows.
type screenState struct {
	online, ready bool
	me            uint32
	members       []uint32
	safety        map[uint32]string
	link          string
	blocked       bool
	ended         string
	lines         []screenLine
	lineID        string // the message id of the next line, for timed messages
	render        func()
}

type screenLine struct{ id, text string }

func (st *screenState) line() string {
	conn := "[red]offline[-]"
	if st.online {
		conn = "[green]online[-]"
	}
	var members, codes []string
	for _, m := range st.members {
		members = append(members, fmt.Sprint(m))
		if c := st.safety[m]; c != "" && m != st.me {
			codes = append(codes, fmt.Sprintf("%d: %s", m, c))
		}
	}
	keys := "keys: waiting"
	switch {
	case st.blocked:
		keys = "[red]KEY CHANGED: /trust after comparing[-]"
	case st.ready && len(codes) > 0:
		keys = "safety " + strings.Join(codes, ", ")
	case st.ready:
		keys = "e2e ready"
	}
	return fmt.Sprintf(" %s | me %d of %s | %s", conn, st.me, strings.Join(members, ","), keys)
}

func (st *screenState) apply(ev chatEvent, say func(string, ...any)) {
	if st.safety == nil {
		st.safety = map[uint32]string{}
	}
	esc := tview.Escape
	switch ev.Type {
	case "invite":
		st.link = ev.Link
		say("room created; the invite link (give it only to the person you want):\n%s", esc(ev.Link))
	case "state":
		if ev.Online != nil {
			if st.online && !*ev.Online {
				say("[yellow]connection lost: reconnecting…[-]")
			}
			st.online = *ev.Online
		}
		if ev.Ready != nil {
			st.ready = *ev.Ready
		}
		if ev.Me != 0 {
			st.me = ev.Me
		}
		if ev.Members != nil {
			st.members = ev.Members
		}
	case "presence":
		say("[gray]member %d%s: %s[-]", ev.Member, userSuffix(ev.User), ev.Event)
	case "key":
		say("published key %s (%s) for this account", ev.Text, ev.Name)
	case "exported":
		say("saved the key pair to %s (the browser imports it)", esc(ev.Path))
	case "safety":
		st.safety[ev.Member] = ev.Safety
		st.blocked = false
		say("member %d is end-to-end verified; safety code [::b]%s[::-] (compare it with them out of band)", ev.Member, ev.Safety)
	case "keychange":
		st.blocked = true
		if ev.User != "" { // a dialog: the peer's directory key changed
			say("[red]%s's key changed: new safety code %s (was %s). Nothing is sent until you type /trust[-]", esc(ev.User), ev.Offered, ev.Safety)
		} else {
			say("[red]member %d changed key: new safety code %s (was %s). Nothing is sent until you type /trust %d[-]", ev.Member, ev.Offered, ev.Safety, ev.Member)
		}
	case "message":
		st.lineID = ev.ID
		mark := ""
		if ev.Unverified {
			mark = "[red](signature NOT verified)[-] "
		}
		if ev.Mailbox {
			say("[aqua]%s (left while you were away):[-] %s%s", esc(ev.User), mark, esc(ev.Text))
		} else {
			say("[aqua]%d:[-] %s%s", ev.From, mark, esc(ev.Text))
		}
	case "sent":
		st.lineID = ev.ID
		if ev.Mailbox {
			say("[green]me (waits in the relay's mailbox):[-] %s", esc(ev.Text))
		} else {
			say("[green]me:[-] %s", esc(ev.Text))
		}
	case "expired": // a timed message leaves the screen, as in the browser
		kept := st.lines[:0]
		for _, l := range st.lines {
			if l.id != ev.ID {
				kept = append(kept, l)
			}
		}
		st.lines = kept
		st.render()
	case "filestart":
		say("member %d is sending %s (%d bytes)", ev.From, esc(ev.Name), ev.Size)
	case "file":
		say("saved %s from member %d", esc(ev.Path), ev.From)
	case "filesent":
		say("sent %s", esc(ev.Name))
	case "problem", "error":
		say("[red]%s[-]", esc(ev.Message))
	case "ended":
		st.ended = ev.Reason
		say("the room has ended (%s)", ev.Reason)
	}
}

func userSuffix(user string) string {
	if user == "" {
		return ""
	}
	return " (" + tview.Escape(user) + ")"
}

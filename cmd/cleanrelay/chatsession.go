package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/client"
)

// chatConfig is what a session needs to reach a room.
type chatConfig struct {
	wsURL   string
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	invite  *chatInvite // join this room, or
	create  bool        // make one (max members)
	max     int
	base    string // the relay's address, for the invite link of a created room
	saveDir string

	// Dialogs (--login) only.
	dialog         *chatDialog
	header         func(ctx context.Context, fresh bool) (http.Header, error) // the logged-in handshake's cookies
	passphraseFile string                                                     // for the export command
	early          []chatEvent                                                // what the setup told (a key made)
}

// chatSession is one membership of a room, speaking its end-to-end protocol through a chatCrypto (v2, with a
// one-time identity in anonymous rooms and the account keys in dialogs), and resuming after a dropped connection as the browser does
// (docs/protocol.md §4.2). Everything but dialing runs on the goroutine of run.
type chatSession struct {
	cfg    chatConfig
	out    chan<- chatEvent
	cmds   <-chan chatCommand
	conn   *client.Conn
	events <-chan client.Event
	hello  client.Hello

	ch          byte
	room, token string
	member      uint32
	last, acked uint64
	outbox      *client.Outbox
	crypto      chatCrypto
	present     map[uint32]bool
	files       *chatFiles
	queued      []chatCommand // sends waiting for the room's first epoch
	ended       bool
	leaving     bool // stdin closed: leave once everything queued is out
	ackTimer    *time.Timer
	expire      chan string
	reconnected chan reconnectResult
}

type reconnectResult struct {
	conn *client.Conn
	room *client.Room
	err  error
}

// chatError is a failure that ends the session with one line and a non-zero exit.
type chatError struct{ msg string }

func (e *chatError) Error() string { return e.msg }

func dialRelay(ctx context.Context, cfg chatConfig) (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	// One WebSocket frame per relay frame, as a browser sends it.
	opts := &client.Options{NetDialContext: cfg.dial, Events: 4096, WriteBufferSize: frameBuckets[len(frameBuckets)-1] + 1}
	if cfg.header != nil {
		h, err := cfg.header(ctx, false)
		if err != nil {
			return nil, err
		}
		opts.Header = h
	}
	c, err := client.Dial(ctx, cfg.wsURL, opts)
	if err != nil && cfg.header != nil && strings.Contains(err.Error(), "HTTP 401") {
		// The ticket is no longer good (docs/accounts.md §7): prove the key again.
		if opts.Header, err = cfg.header(ctx, true); err != nil {
			return nil, err
		}
		c, err = client.Dial(ctx, cfg.wsURL, opts)
	}
	if err != nil {
		return nil, err
	}
	if v := c.Hello().V; v != 1 {
		c.Close()
		return nil, fmt.Errorf("the relay speaks protocol version %d; this client speaks version 1: update one of them", v)
	}
	return c, nil
}

// start connects and creates or joins the room.
func (s *chatSession) start(ctx context.Context) error {
	c, err := dialRelay(ctx, s.cfg)
	if err != nil {
		return err
	}
	var r *client.Room
	// A join answered busy (a cluster that cannot tell yet) is asked again for a while (docs/protocol.md §4.3).
	until := time.Now().Add(client.JoinBusy)
	switch {
	case s.cfg.dialog != nil:
		r, _, err = c.JoinUntil(ctx, s.cfg.dialog.room, s.cfg.dialog.cap, until)
	case s.cfg.create:
		r, err = c.Create(ctx, s.cfg.max)
	default:
		r, _, err = c.JoinUntil(ctx, s.cfg.invite.room, s.cfg.invite.cap, until)
	}
	if err != nil {
		c.Close()
		var re *client.Error
		if errors.As(err, &re) && re.Code == "denied" {
			return errors.New("the relay refused to join: the room is gone or the link's capability is wrong")
		}
		return fmt.Errorf("failed to enter the room: %w", err)
	}
	s.conn, s.events, s.hello = c, c.Events(), c.Hello()
	s.ch, s.room, s.token, s.member, s.last, s.acked = r.Ch, r.ID, r.Resume, r.Member, r.Seq, r.Seq
	s.outbox = client.NewOutbox(512)
	s.present = map[uint32]bool{}
	s.files = newChatFiles(s.cfg.saveDir)
	s.expire = make(chan string, 16)
	s.reconnected = make(chan reconnectResult, 1)
	switch {
	case s.cfg.dialog != nil:
		s.crypto = newDialogCrypto(s, s.cfg.dialog)
	case s.cfg.create:
		secret := make([]byte, 32)
		rand.Read(secret)
		s.emit(chatEvent{Type: "invite", Link: inviteLink(mustURL(s.cfg.base), r.ID, r.Cap, secret)})
		s.crypto = newAnonCrypto(s, r.ID, r.Member, secret)
	default:
		s.crypto = newAnonCrypto(s, r.ID, r.Member, s.cfg.invite.secret)
	}
	present := s.setPresent(r.Members)
	s.emit(chatEvent{Type: "state", Online: boolp(true), Me: s.member, Members: r.Members, Ready: boolp(false)})
	return s.crypto.enter(present)
}

func (s *chatSession) emit(ev chatEvent) { s.out <- ev }

// run is the session's loop; it returns nil when the room ended or was left, or the error that ended it.
func (s *chatSession) run(ctx context.Context) error {
	s.ackTimer = time.NewTimer(time.Hour)
	defer func() {
		if s.crypto != nil {
			s.crypto.wipe()
		}
		if s.conn != nil {
			s.conn.Close()
		}
	}()
	var lostAt time.Time
	cmds := s.cmds
	for !s.ended {
		select {
		case <-ctx.Done():
			return s.leave(ctx)
		case ev, ok := <-s.events:
			if !ok {
				s.events = nil
				if lostAt.IsZero() {
					lostAt = time.Now()
					s.emit(chatEvent{Type: "state", Online: boolp(false)})
				}
				go s.reconnect(ctx, lostAt, 0)
				continue
			}
			if err := s.onEvent(ev); err != nil {
				return err
			}
		case r := <-s.reconnected:
			if r.err != nil {
				return r.err
			}
			lostAt = time.Time{}
			if err := s.resumed(r.conn, r.room); err != nil {
				return err
			}
		case c, ok := <-cmds:
			if !ok {
				cmds = nil
				s.leaving = true
			} else if err := s.onCommand(ctx, c); err != nil {
				return err
			}
		case id := <-s.expire:
			s.emit(chatEvent{Type: "expired", ID: id})
		case <-s.ackTimer.C:
			s.ack()
		}
		if s.leaving && len(s.queued) == 0 && s.files.idle() && s.events != nil {
			return s.leave(ctx)
		}
	}
	return nil
}

func (s *chatSession) leave(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	s.ended = true
	if s.events != nil {
		s.conn.Leave(ctx, s.ch)
	}
	s.emit(chatEvent{Type: "ended", Reason: "left"})
	return nil
}

func (s *chatSession) onEvent(ev client.Event) error {
	switch ev.Kind {
	case client.KindFrame:
		if ev.Ch != s.ch || ev.Seq <= s.last {
			return nil // replayed after a resume: already processed
		}
		s.seen(ev.Seq)
		return s.onFrame(ev.From, ev.Payload)
	case client.KindPresence:
		if ev.Ch != s.ch || ev.Seq <= s.last {
			return nil
		}
		s.seen(ev.Seq)
		switch ev.Event {
		case "join", "back", "away":
			s.present[ev.Member] = true
		case "leave":
			delete(s.present, ev.Member)
		}
		s.emit(chatEvent{Type: "presence", Member: ev.Member, Event: ev.Event, Reason: ev.Reason, User: ev.User})
		return s.crypto.presence(ev.Event, ev.Member)
	case client.KindLost:
		if ev.Ch == s.ch {
			s.last = max(s.last, ev.LostTo)
			s.emit(chatEvent{Type: "problem", Code: "lost", Message: fmt.Sprintf("the relay dropped entries %d…%d before they reached this client", ev.LostFrom, ev.LostTo)})
		}
	case client.KindClosed:
		if ev.Ch == s.ch {
			s.ended = true
			s.emit(chatEvent{Type: "ended", Reason: ev.Reason})
		}
	case client.KindMail:
		if d, ok := s.crypto.(*dialogCrypto); ok && ev.User == d.d.peer {
			d.readMail()
		}
	case client.KindError:
		s.emit(chatEvent{Type: "problem", Code: ev.Err.Code, Message: ev.Err.Msg})
	}
	return nil
}

func (s *chatSession) onFrame(from uint32, payload []byte) error {
	kind, body, err := unpadFrame(payload)
	if err != nil {
		s.emit(chatEvent{Type: "problem", Member: from, Code: "malformed", Message: err.Error()})
		return nil
	}
	return s.crypto.frame(from, kind, body)
}

// flushQueued sends the commands that waited for the room's keys, once they are agreed.
func (s *chatSession) flushQueued() {
	if !s.crypto.canSend() {
		return
	}
	q := s.queued
	s.queued = nil
	for _, c := range q {
		s.onCommand(context.Background(), c)
	}
}

// onPlain handles an opened envelope; verified is false for a dialog message whose signature is not the pinned
// key's; from is 0 for a dialog's mailbox item. A kind this client does not know (a newer client's) is skipped without a word.
func (s *chatSession) onPlain(from uint32, plain []byte, verified bool) {
	h, body, err := decodeEnvelope(plain)
	if err != nil {
		s.emit(chatEvent{Type: "problem", Member: from, Code: "malformed", Message: err.Error()})
		return
	}
	switch h.K {
	case "msg":
		ev := chatEvent{Type: "message", From: from, ID: h.ID, Text: h.Text, TS: h.TS, TTL: h.TTL, Unverified: !verified}
		if from == 0 && s.cfg.dialog != nil { // an item the dialog's peer left in the mailbox
			ev.Mailbox, ev.User = true, s.cfg.dialog.peer
		}
		s.emit(ev)
		s.expireLater(h.ID, h.TTL)
	case "file":
		if ev, ok := s.files.header(from, h); ok {
			s.emit(ev)
		} else {
			s.emit(chatEvent{Type: "problem", Member: from, Message: "refused a file: over the size cap"})
		}
	case "chunk":
		ack, ev, err := s.files.chunk(from, h, body)
		if ack != nil && from != 0 { // from 0: the mailbox, whose sender is away
			if err := s.sealEnvelope(ack, nil); err != nil {
				s.emit(chatEvent{Type: "problem", Message: err.Error()})
			}
		}
		if err != nil {
			s.emit(chatEvent{Type: "problem", Member: from, Message: err.Error()})
		} else if ev != nil {
			s.emit(*ev)
		}
	case "fack":
		s.pumpFiles(s.files.acked(h.ID, h.N))
	}
}

func (s *chatSession) expireLater(id string, ttl int) {
	if ttl > 0 {
		time.AfterFunc(time.Duration(ttl)*time.Second, func() { s.expire <- id })
	}
}

func (s *chatSession) sealEnvelope(h map[string]any, body []byte) error {
	b, err := encodeEnvelope(h, body)
	if err != nil {
		return err
	}
	return s.crypto.seal(b)
}

func (s *chatSession) onCommand(ctx context.Context, c chatCommand) error {
	switch c.Cmd {
	case "send", "file":
		if d, ok := s.crypto.(*dialogCrypto); ok && c.Cmd == "send" && d.viaMail() {
			return d.sendMail(c)
		}
		if !s.crypto.canSend() {
			if s.crypto.blocked() {
				s.emit(chatEvent{Type: "error", Message: "blocked: a member's key changed; compare the safety code first"})
				return nil
			}
			s.queued = append(s.queued, c) // sent once the room's keys are agreed
			return nil
		}
		if c.Cmd == "send" {
			return s.sendText(c.Text, c.TTL)
		}
		out, err := s.files.open(c.Path)
		if err != nil {
			s.emit(chatEvent{Type: "error", Message: err.Error()})
			return nil
		}
		if err := s.sealEnvelope(out.header, nil); err != nil {
			s.emit(chatEvent{Type: "error", Message: err.Error()})
			return nil
		}
		s.pumpFiles(out)
	case "burn":
		if s.events == nil {
			s.emit(chatEvent{Type: "error", Message: "not connected to the relay: try burning again in a moment"})
			return nil
		}
		s.conn.Burn(s.ch)
	case "leave":
		return s.leave(ctx)
	case "export":
		if s.cfg.dialog == nil {
			s.emit(chatEvent{Type: "error", Message: "export: only a dialog (--login) has a key to export"})
			return nil
		}
		if err := exportKey(s.cfg.dialog.own, c.Path, s.cfg.passphraseFile); err != nil {
			s.emit(chatEvent{Type: "error", Message: err.Error()})
			return nil
		}
		s.emit(chatEvent{Type: "exported", Path: c.Path})
	case "trust":
		return s.crypto.trust(c.Member)
	default:
		s.emit(chatEvent{Type: "error", Message: fmt.Sprintf("unknown command %q (send, file, burn, leave, trust, export)", c.Cmd)})
	}
	return nil
}

// maxText is the most text one message carries (the browser's MAX_TEXT).
const maxText = 40960 - 4 - 1024

func (s *chatSession) sendText(text string, ttl int) error {
	if len(text) > maxText {
		s.emit(chatEvent{Type: "error", Message: fmt.Sprintf("message too long (%d bytes, at most %d)", len(text), maxText)})
		return nil
	}
	id, ts := newID(), time.Now().UnixMilli()
	if err := s.sealEnvelope(map[string]any{"k": "msg", "id": id, "text": text, "ts": ts, "ttl": max(ttl, 0)}, nil); err != nil {
		s.emit(chatEvent{Type: "error", Message: err.Error()})
		return nil
	}
	s.emit(chatEvent{Type: "sent", From: s.member, ID: id, Text: text, TS: ts, TTL: ttl})
	s.expireLater(id, ttl)
	return nil
}

// pumpFiles sends the chunks of an outgoing file that its window allows.
func (s *chatSession) pumpFiles(o *outFile) {
	if o == nil {
		return
	}
	for o.next < o.chunks && o.next-o.acked < chatFileWindow {
		i := o.next
		if err := s.sealEnvelope(map[string]any{"k": "chunk", "id": o.id, "i": i}, o.data[i*chatFileChunk:min((i+1)*chatFileChunk, len(o.data))]); err != nil {
			s.emit(chatEvent{Type: "error", Message: err.Error()})
			s.files.drop(o.id)
			return
		}
		o.next++
	}
	if o.acked >= o.chunks {
		s.files.drop(o.id)
		s.emit(chatEvent{Type: "filesent", ID: o.id, Name: o.name, Size: int64(len(o.data))})
	}
}

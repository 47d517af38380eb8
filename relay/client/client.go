// Package client speaks cleanrelay's wire protocol (docs/protocol.md) and accounts API (docs/accounts.md) for Go
// programs: the tests, the load tool, and anything else that wants to chat through a relay.
package client

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Subprotocol is the WebSocket subprotocol this package speaks.
const Subprotocol = protocol.Subprotocol

// deliverHeaderLen is the relay → client frame header: channel, sequence, sender.
const deliverHeaderLen = protocol.DeliverHeaderLen

// pongWriteWait bounds the write of a pong.
const pongWriteWait = 10 * time.Second

// Options tune Dial. The zero value dials directly with no extra headers.
type Options struct {
	// Header is sent with the handshake, e.g. Origin or Cookie. Optional.
	Header http.Header
	// NetDialContext dials the TCP connection, e.g. through Tor's SOCKS port. Optional; default net.Dialer.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// WriteBufferSize is the WebSocket write buffer: a frame larger than it goes out in fragments. Optional;
	// default 4096 bytes. A client that wants every frame in one WebSocket frame, as browsers send them (the
	// tests' recording proxy sees fragments as frames), sets its largest frame plus the channel byte.
	WriteBufferSize int
	// Events is the capacity of the event channel. A program that stops taking events stops reading the
	// socket once it is full, as a slow client would. Optional; default 1024.
	Events int
}

// Hello is what the relay announces about itself when a connection starts.
type Hello struct {
	V           int     `json:"v"`
	MaxFrame    int     `json:"maxFrame"`
	MaxMembers  int     `json:"maxMembers"`
	MaxRooms    int     `json:"maxRooms"`
	Buffer      int     `json:"buffer"`
	BufferBytes int     `json:"bufferBytes"`
	Grace       int     `json:"grace"`
	AckEvery    int     `json:"ackEvery"`
	AckDelay    int     `json:"ackDelay"` // milliseconds
	Idle        int     `json:"idle"`     // seconds a connection may hold no room
	Rate        float64 `json:"rate"`     // messages per second
	Burst       int     `json:"burst"`
}

// Room is one membership of this connection, as the relay described it in its joined or resumed reply.
type Room struct {
	Ch      byte     `json:"ch"`
	ID      string   `json:"room"`
	Cap     string   `json:"cap"` // only for the creator
	Member  uint32   `json:"member"`
	Resume  string   `json:"resume"` // the resume token; empty in a resumed reply, which keeps it
	Seq     uint64   `json:"seq"`    // the room's last sequence number when the reply was made
	In      uint64   `json:"in"`     // resumed only: frames the relay has accepted from this member
	Max     int      `json:"max"`
	Members []uint32 `json:"members"`
}

// Error is an error reply of the relay (docs/protocol.md §4.3).
type Error struct {
	Code string `json:"code"`
	Msg  string `json:"msg"`
}

func (e *Error) Error() string { return "relay refused: " + e.Code + ": " + e.Msg }

// Kind says what an Event is.
type Kind int

const (
	KindFrame    Kind = iota // a frame from another member: Ch, Seq, From, Payload
	KindPresence             // Ch, Seq, Member, Event (join, away, back, leave), Reason, User
	KindLost                 // Ch, LostFrom..LostTo will never arrive
	KindClosed               // Ch, Reason: the room ended for this connection
	KindError                // Err: an error the relay sent without a request id (e.g. for a frame)
	KindDialog               // User opened a dialog with this session's user: join Room with Cap
	KindMail                 // User left this session's user a message in the mailbox
	KindKey                  // User, with whom this session's user has a dialog, published a new key or lost it
)

// Event is something the relay sent on its own: a frame, a presence change, a gap, a closed room, an error.
type Event struct {
	Kind             Kind
	Ch               byte
	Seq              uint64
	From             uint32
	Payload          []byte
	Member           uint32
	Event            string
	Reason           string
	User             string
	LostFrom, LostTo uint64
	Err              *Error
	Room, Cap        string
}

// Conn is one WebSocket session with a relay. Its methods are safe for concurrent use.
type Conn struct {
	ws     *websocket.Conn
	hello  Hello
	events chan Event
	done   chan struct{} // closed when the reader ends
	quit   chan struct{} // closed by Close: the reader stops even if nobody takes events
	once   sync.Once

	wmu sync.Mutex // serializes writes

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]chan reply
	err     error // why the reader ended
}

type reply struct {
	msg []byte
	err *Error
}

// ErrClosed is returned by a request whose connection ended before the reply came.
var ErrClosed = errors.New("connection closed")

// Dial connects to a relay's WebSocket URL (ws://host/ws) and waits for its hello.
func Dial(ctx context.Context, url string, opts *Options) (*Conn, error) {
	if opts == nil {
		opts = &Options{}
	}
	d := websocket.Dialer{
		Subprotocols:      []string{Subprotocol},
		NetDialContext:    opts.NetDialContext,
		HandshakeTimeout:  30 * time.Second,
		WriteBufferSize:   opts.WriteBufferSize,
		EnableCompression: false,
	}
	ws, resp, err := d.DialContext(ctx, url, opts.Header)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("failed to connect to the relay (HTTP %d): %w", resp.StatusCode, err)
		}
		return nil, fmt.Errorf("failed to connect to the relay: %w", err)
	}
	if ws.Subprotocol() != Subprotocol {
		ws.Close()
		return nil, fmt.Errorf("the relay did not accept subprotocol %s", Subprotocol)
	}
	n := opts.Events
	if n == 0 {
		n = 1024
	}
	c := &Conn{ws: ws, events: make(chan Event, n), done: make(chan struct{}), quit: make(chan struct{}), pending: make(map[uint64]chan reply)}
	ws.SetReadLimit(protocol.MaxFrameLimit + deliverHeaderLen)
	// Pongs get as long as the relay gives its own writes (10 s), not gorilla's default second: on a loaded
	// machine a client descheduled for a second would fail the pong's write and lose its connection.
	ws.SetPingHandler(func(m string) error {
		err := ws.WriteControl(websocket.PongMessage, []byte(m), time.Now().Add(pongWriteWait))
		if errors.Is(err, websocket.ErrCloseSent) {
			return nil
		}
		return err
	})
	if deadline, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(deadline)
	}
	typ, msg, err := ws.ReadMessage()
	ws.SetReadDeadline(time.Time{})
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("failed to read the relay's hello: %w", err)
	}
	var t struct {
		T string `json:"t"`
	}
	if typ != websocket.TextMessage || json.Unmarshal(msg, &t) != nil || t.T != "hello" {
		ws.Close()
		return nil, errors.New("the relay did not say hello")
	}
	json.Unmarshal(msg, &c.hello)
	go c.readLoop()
	return c, nil
}

// Hello returns what the relay announced.
func (c *Conn) Hello() Hello { return c.hello }

// Events returns the channel of unsolicited messages. It is closed when the connection ends.
func (c *Conn) Events() <-chan Event { return c.events }

// Done is closed when the connection has ended; Err then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close closes the connection at once, without the relay's notice: to the relay this looks like a dropped
// connection, and memberships become away (they can be resumed).
func (c *Conn) Close() error {
	c.once.Do(func() { close(c.quit) })
	err := c.ws.Close()
	<-c.done
	return err
}

// emit hands an event to the program; it gives up when Close was called.
func (c *Conn) emit(ev Event) bool {
	select {
	case c.events <- ev:
		return true
	case <-c.quit:
		return false
	}
}

// CloseGracefully sends a normal close frame and waits for the relay to end the connection.
func (c *Conn) CloseGracefully() error {
	c.wmu.Lock()
	err := c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	c.wmu.Unlock()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		c.ws.Close()
		<-c.done
	}
	return err
}

// Send sends one frame into the room on channel ch.
func (c *Conn) Send(ch byte, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w, err := c.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return fmt.Errorf("failed to send a frame: %w", err)
	}
	w.Write([]byte{ch})
	w.Write(payload)
	if err := w.Close(); err != nil {
		return fmt.Errorf("failed to send a frame: %w", err)
	}
	return nil
}

// SendRaw sends one WebSocket message as it is, for tests of what the relay does with malformed input.
func (c *Conn) SendRaw(messageType int, data []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(messageType, data)
}

// Ack tells the relay every entry up to seq of the room on ch has been processed.
func (c *Conn) Ack(ch byte, seq uint64) error {
	return c.sendJSON(map[string]any{"t": "ack", "ch": ch, "seq": seq})
}

// Create makes a room for max members (0: the relay's default) and joins it.
func (c *Conn) Create(ctx context.Context, max int) (*Room, error) {
	req := map[string]any{"t": "create"}
	if max != 0 {
		req["max"] = max
	}
	return c.roomRequest(ctx, req)
}

// Join joins a room with its capability.
func (c *Conn) Join(ctx context.Context, room, capability string) (*Room, error) {
	return c.roomRequest(ctx, map[string]any{"t": "join", "room": room, "cap": capability})
}

// Resume takes back a membership after a dropped connection; last is the seq of the last entry processed.
// The returned Room keeps the token it was given in Resume.
func (c *Conn) Resume(ctx context.Context, token string, last uint64) (*Room, error) {
	r, err := c.roomRequest(ctx, map[string]any{"t": "resume", "resume": token, "last": last})
	if r != nil {
		r.Resume = token
	}
	return r, err
}

// BusyWait is how long a client waits before it asks again after a join or resume answered busy
// (docs/protocol.md §4.3): a random time between half of it and all of it.
const BusyWait = time.Second

// JoinBusy is how long JoinUntil's callers keep asking a join answered busy before they tell the user to try
// again; a cluster settles within seconds of a node's death.
const JoinBusy = 30 * time.Second

// ResumeUntil is Resume, asked again on the same connection while the relay answers busy (a cluster that
// cannot tell yet whether it holds the place: docs/protocol.md §4.3), a BusyWait apart, until until (the end of
// the grace, counted from when the membership was lost). It returns how many busy answers it had. Any other
// error, bad_token included, is returned at once; so is a busy answer at or past until.
func (c *Conn) ResumeUntil(ctx context.Context, token string, last uint64, until time.Time) (*Room, int, error) {
	return c.whileBusy(ctx, until, func() (*Room, error) { return c.Resume(ctx, token, last) })
}

// JoinUntil is Join, asked again the same way as ResumeUntil while the relay answers busy, until until.
func (c *Conn) JoinUntil(ctx context.Context, room, capability string, until time.Time) (*Room, int, error) {
	return c.whileBusy(ctx, until, func() (*Room, error) { return c.Join(ctx, room, capability) })
}

// whileBusy calls ask until it is answered with anything but busy, or until is reached.
func (c *Conn) whileBusy(ctx context.Context, until time.Time, ask func() (*Room, error)) (r *Room, busy int, err error) {
	for {
		r, err = ask()
		var re *Error
		if err == nil || !errors.As(err, &re) || re.Code != protocol.CodeBusy {
			return r, busy, err
		}
		busy++
		if !time.Now().Before(until) {
			return r, busy, err
		}
		wait := min(BusyWait/2+rand.N(BusyWait/2), time.Until(until))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, busy, ctx.Err()
		case <-c.Done():
			return nil, busy, err
		}
	}
}

// Leave leaves the room on ch for good.
func (c *Conn) Leave(ctx context.Context, ch byte) error {
	_, err := c.request(ctx, map[string]any{"t": "leave", "ch": ch})
	return err
}

// Burn ends the room on ch for everyone. The relay answers with a KindClosed event (reason burned).
func (c *Conn) Burn(ch byte) error {
	return c.sendJSON(map[string]any{"t": "burn", "ch": ch})
}

func (c *Conn) roomRequest(ctx context.Context, req map[string]any) (*Room, error) {
	msg, err := c.request(ctx, req)
	if err != nil {
		return nil, err
	}
	var r Room
	if err := json.Unmarshal(msg, &r); err != nil {
		return nil, fmt.Errorf("failed to read the relay's reply: %w", err)
	}
	return &r, nil
}

// request sends req with a fresh id and waits for the reply (or error) with that id.
func (c *Conn) request(ctx context.Context, req map[string]any) ([]byte, error) {
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	req["id"] = id
	if err := c.sendJSON(req); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.msg, nil
	case <-c.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Conn) sendJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("failed to send a request: %w", err)
	}
	return nil
}

func (c *Conn) readLoop() {
	var err error
	defer func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
		close(c.events)
	}()
	for {
		var typ int
		var msg []byte
		typ, msg, err = c.ws.ReadMessage()
		if err != nil {
			return
		}
		if typ == websocket.BinaryMessage {
			if len(msg) < deliverHeaderLen {
				err = errors.New("the relay sent a frame shorter than its header")
				c.ws.Close()
				return
			}
			if !c.emit(Event{
				Kind: KindFrame, Ch: msg[0],
				Seq:     binary.BigEndian.Uint64(msg[1:9]),
				From:    binary.BigEndian.Uint32(msg[9:13]),
				Payload: msg[deliverHeaderLen:],
			}) {
				err = ErrClosed
				return
			}
			continue
		}
		if perr := c.handleText(msg); perr != nil {
			err = perr
			c.ws.Close()
			return
		}
		select {
		case <-c.quit:
			err = ErrClosed
			return
		default:
		}
	}
}

// wireMsg is any relay → client control message.
type wireMsg struct {
	T      string `json:"t"`
	ID     uint64 `json:"id"`
	Ch     byte   `json:"ch"`
	Seq    uint64 `json:"seq"`
	Member uint32 `json:"member"`
	Event  string `json:"event"`
	Reason string `json:"reason"`
	User   string `json:"user"`
	From   any    `json:"from"` // a number in lost, a username in dialog
	To     uint64 `json:"to"`
	Code   string `json:"code"`
	Msg    string `json:"msg"`
	Room   string `json:"room"`
	Cap    string `json:"cap"`
}

func (c *Conn) handleText(msg []byte) error {
	var m wireMsg
	if err := json.Unmarshal(msg, &m); err != nil {
		return fmt.Errorf("the relay sent a malformed control message: %w", err)
	}
	switch m.T {
	case "presence":
		c.emit(Event{Kind: KindPresence, Ch: m.Ch, Seq: m.Seq, Member: m.Member, Event: m.Event, Reason: m.Reason, User: m.User})
	case "lost":
		from, _ := m.From.(float64)
		c.emit(Event{Kind: KindLost, Ch: m.Ch, LostFrom: uint64(from), LostTo: m.To})
	case "dialog":
		from, _ := m.From.(string)
		c.emit(Event{Kind: KindDialog, User: from, Room: m.Room, Cap: m.Cap})
	case "mail":
		from, _ := m.From.(string)
		c.emit(Event{Kind: KindMail, User: from})
	case "key":
		c.emit(Event{Kind: KindKey, User: m.User})
	case "closed":
		c.emit(Event{Kind: KindClosed, Ch: m.Ch, Reason: m.Reason})
	case "error":
		e := &Error{Code: m.Code, Msg: m.Msg}
		if m.ID == 0 || !c.deliver(m.ID, reply{err: e}) {
			c.emit(Event{Kind: KindError, Err: e})
		}
	default: // replies: joined, resumed, left
		c.deliver(m.ID, reply{msg: msg})
	}
	return nil
}

// deliver hands a reply to the request waiting for it; it reports whether one was.
func (c *Conn) deliver(id uint64, r reply) bool {
	c.mu.Lock()
	ch := c.pending[id]
	c.mu.Unlock()
	if ch == nil {
		return false
	}
	ch <- r
	return true
}

package bench

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/cleanrelay/cleanrelay/relay/protocol"
)

// Floor is the bare forwarder the relay is measured against: plain gorilla/websocket, one goroutine per
// connection reading with ReadMessage and writing straight into the peer's socket under the peer's mutex,
// default buffer sizes, rooms of two. It speaks just enough of cleanrelay.v1 (hello; create, join and leave
// with their joined/left replies; binary frames in the relay's send and deliver formats) for the same workload
// code to drive it.
//
// What it omits, on purpose (everything that makes the relay a relay rather than a pipe): presence events,
// acknowledgements (acks are read and ignored), the room log, resume and reconnect grace, lost-frame notices,
// burn, per-member send queues and slow-member handling, rate limits, connection and room limits, ping/pong
// keepalive, Host/Origin checks, accounts, metrics, zeroing of released buffers. It still checks the
// subprotocol, a room's capability and the frame size limit, and sets a write deadline so a stuck peer cannot
// hang it forever.
type Floor struct {
	upgrader websocket.Upgrader

	mu    sync.Mutex
	rooms map[string]*floorRoom // guarded by mu
}

// floorMaxFrame is the largest frame payload, the relay's default.
const floorMaxFrame = 64 << 10

// floorWriteTimeout bounds a write to a peer, as the relay's write deadline does.
const floorWriteTimeout = 10 * time.Second

// floorHello is what the floor announces, in the relay's hello format; the figures are the relay's defaults.
const floorHello = `{"t":"hello","v":1,"maxFrame":65536,"maxMembers":2,"maxRooms":1,"buffer":256,"bufferBytes":1048576,"grace":0,"ackEvery":64}`

type floorRoom struct {
	id      string
	cap     []byte
	seq     uint64        // guarded by Floor.mu
	members [2]*floorConn // guarded by Floor.mu
}

type floorConn struct {
	ws  *websocket.Conn
	wmu sync.Mutex // serializes writes to ws

	// Guarded by Floor.mu.
	room   *floorRoom
	member uint32 // 1 or 2
}

// NewFloor returns a bare forwarder; serve its Handler.
func NewFloor() *Floor {
	return &Floor{
		upgrader: websocket.Upgrader{
			Subprotocols: []string{protocol.Subprotocol},
			CheckOrigin:  func(*http.Request) bool { return true }, // loopback benchmarks only
		},
		rooms: make(map[string]*floorRoom),
	}
}

// Handler serves the WebSocket endpoint at /ws.
func (f *Floor) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", f.serveWS)
	return mux
}

func (f *Floor) serveWS(w http.ResponseWriter, r *http.Request) {
	ok := false
	for _, p := range websocket.Subprotocols(r) {
		ok = ok || p == protocol.Subprotocol
	}
	if !ok {
		http.Error(w, "websocket subprotocol cleanrelay.v1 required", http.StatusBadRequest)
		return
	}
	ws, err := f.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered
	}
	c := &floorConn{ws: ws}
	defer func() {
		f.leave(c)
		ws.Close()
	}()
	ws.SetReadLimit(1 + floorMaxFrame)
	if c.write(websocket.TextMessage, []byte(floorHello)) != nil {
		return
	}
	for {
		typ, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if typ == websocket.BinaryMessage {
			f.forward(c, msg)
			continue
		}
		if f.control(c, msg) != nil {
			return
		}
	}
}

// forward delivers a client's frame (channel, payload) to the peer in the relay's deliver format.
func (f *Floor) forward(c *floorConn, msg []byte) {
	if len(msg) < 2 {
		return
	}
	f.mu.Lock()
	room := c.room
	if room == nil {
		f.mu.Unlock()
		return
	}
	peer := room.members[2-c.member] // the other slot
	room.seq++
	seq := room.seq
	f.mu.Unlock()
	if peer == nil {
		return
	}
	var hdr [protocol.DeliverHeaderLen]byte
	protocol.PutDeliverHeader(hdr[:], 1, seq, c.member)
	peer.wmu.Lock()
	defer peer.wmu.Unlock()
	peer.ws.SetWriteDeadline(time.Now().Add(floorWriteTimeout))
	w, err := peer.ws.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return
	}
	w.Write(hdr[:])
	w.Write(msg[1:])
	if w.Close() != nil {
		peer.ws.Close() // its reader ends and leaves the room
	}
}

// control answers create, join and leave; it ignores ack and answers anything else with unknown_type. It
// returns an error only when the connection is broken.
func (f *Floor) control(c *floorConn, msg []byte) error {
	var req struct {
		T    string `json:"t"`
		ID   uint64 `json:"id"`
		Room string `json:"room"`
		Cap  string `json:"cap"`
	}
	if json.Unmarshal(msg, &req) != nil {
		return c.reply(map[string]any{"t": protocol.TypeError, "code": protocol.CodeBadRequest, "msg": "not a JSON object"})
	}
	switch req.T {
	case protocol.TypeAck:
		return nil
	case protocol.TypeCreate:
		id, capability := randomID(16), randomID(32)
		room := &floorRoom{id: id, cap: []byte(capability), seq: 1}
		f.mu.Lock()
		if c.room != nil {
			f.mu.Unlock()
			return c.reply(map[string]any{"t": protocol.TypeError, "id": req.ID, "code": protocol.CodeTooManyRooms, "msg": "the floor holds one room per connection"})
		}
		room.members[0] = c
		c.room, c.member = room, 1
		f.rooms[id] = room
		f.mu.Unlock()
		return c.reply(map[string]any{"t": protocol.TypeJoined, "id": req.ID, "ch": 1, "room": id, "cap": capability, "member": 1,
			"resume": "", "seq": 1, "max": 2, "members": []uint32{1}})
	case protocol.TypeJoin:
		f.mu.Lock()
		room := f.rooms[req.Room]
		switch {
		case c.room != nil:
			f.mu.Unlock()
			return c.reply(map[string]any{"t": protocol.TypeError, "id": req.ID, "code": protocol.CodeTooManyRooms, "msg": "the floor holds one room per connection"})
		case room == nil || subtle.ConstantTimeCompare(room.cap, []byte(req.Cap)) != 1:
			f.mu.Unlock()
			return c.reply(map[string]any{"t": protocol.TypeError, "id": req.ID, "code": protocol.CodeDenied, "msg": "no such room"})
		case room.members[1] != nil:
			f.mu.Unlock()
			return c.reply(map[string]any{"t": protocol.TypeError, "id": req.ID, "code": protocol.CodeRoomFull, "msg": "room is full"})
		}
		room.members[1] = c
		c.room, c.member = room, 2
		room.seq++
		seq := room.seq
		f.mu.Unlock()
		return c.reply(map[string]any{"t": protocol.TypeJoined, "id": req.ID, "ch": 1, "room": req.Room, "member": 2,
			"resume": "", "seq": seq, "max": 2, "members": []uint32{1, 2}})
	case "leave":
		f.leave(c)
		return c.reply(map[string]any{"t": "left", "id": req.ID, "ch": 1})
	default:
		return c.reply(map[string]any{"t": protocol.TypeError, "id": req.ID, "code": "unknown_type", "msg": "the floor does not do that"})
	}
}

// leave takes c out of its room; the room goes when both members have gone.
func (f *Floor) leave(c *floorConn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	room := c.room
	if room == nil {
		return
	}
	room.members[c.member-1] = nil
	c.room = nil
	if room.members[0] == nil && room.members[1] == nil {
		delete(f.rooms, room.id)
	}
}

func (c *floorConn) reply(v map[string]any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(websocket.TextMessage, b)
}

func (c *floorConn) write(typ int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(floorWriteTimeout))
	return c.ws.WriteMessage(typ, b)
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

package rooms

import "fmt"

// Conn is a connection as the rooms see it: the only way a room reaches the layer above. The rooms call it
// only once they have released their own locks, so it may take its own; it must not block.
type Conn interface {
	// Wake says that a membership attached to the connection may have something to send (Member.Next).
	Wake()
	// Closed says that the room ended the membership m on channel ch for reason (a closed reason of package
	// protocol; empty: nobody needs telling). m has nothing more for that channel.
	Closed(m *Member, ch byte, reason string)
}

// Seat is where a membership being taken (Table.Create, Join, Resume) is attached: a connection and the
// channel it names the room by.
type Seat struct {
	Conn Conn
	Ch   byte
	// User is the connection's logged-in user, "" for an anonymous session.
	User string
	// Full, when not nil, says that the connection has no channel free: the request gets it as its answer
	// at the point where it would take a place, after the checks of the room itself.
	Full *Error
}

// Error is a refusal, with the error code of package protocol and a message for people.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Errorf returns an Error with code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// notes are the calls into connections that a change decided on while it held the rooms' locks, made once
// it has released them (deliver).
type notes struct {
	wake   []Conn
	closed []closedNote
	links  []linkNote
}

// linkNote is a proxied membership handed back to its sequencer (remote.go).
type linkNote struct {
	l   Link
	how LinkEnd
}

type closedNote struct {
	c      Conn
	m      *Member
	ch     byte
	reason string
}

// close records that m, attached to c on ch, is closed for reason.
func (n *notes) close(c Conn, m *Member, ch byte, reason string) {
	n.closed = append(n.closed, closedNote{c, m, ch, reason})
}

// deliver makes the calls. No lock of the rooms may be held.
func (n *notes) deliver() {
	for _, c := range n.wake {
		c.Wake()
	}
	for _, x := range n.closed {
		x.c.Closed(x.m, x.ch, x.reason)
	}
	for _, x := range n.links {
		x.l.End(x.how)
	}
	clear(n.wake)
	n.wake, n.closed, n.links = n.wake[:0], nil, nil
}

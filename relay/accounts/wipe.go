package accounts

import (
	"bufio"
	"net/http"
	"strconv"
	"time"
)

// The mailbox's answers that touch ciphertext (a put reads it, a fetch writes it) take the connection over
// from net/http: net/http keeps a request's first bytes (headers and, often, the start of its body) in a read
// buffer it reuses without overwriting, and copies an answer through a write buffer of its own. Taken over,
// the answer goes to the socket in one write from a buffer the handler overwrites afterwards, net/http's read
// buffer is overwritten with zeros, and the connection is closed. What remains is in the kernel's socket
// buffers, and, behind --https-listen, in crypto/tls's record buffers (docs/threat-model.md, Memory).

// wipeWriteTimeout bounds the write of a taken-over answer.
const wipeWriteTimeout = 10 * time.Second

// zeros reads as an endless run of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// wipeBuffer overwrites every byte of br's buffer, read or not, with zeros.
func wipeBuffer(br *bufio.Reader) {
	br.Reset(zeros{})
	br.Peek(br.Size())
	br.Reset(nil)
}

// finishWiped answers status with the JSON body from the taken-over connection, overwrites body and net/http's
// read buffer, and closes the connection. Where the connection cannot be taken over (HTTP/2, a recorder in a
// test), it answers through w and overwrites body after.
func finishWiped(w http.ResponseWriter, status int, body []byte) {
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
		clear(body)
		return
	}
	defer conn.Close()
	wipeBuffer(rw.Reader)
	out := make([]byte, 0, len(body)+256)
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(status)...)
	out = append(out, "\r\nContent-Type: application/json\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: "...)
	out = strconv.AppendInt(out, int64(len(body)), 10)
	out = append(out, "\r\n\r\n"...)
	out = append(out, body...)
	clear(body)
	conn.SetWriteDeadline(time.Now().Add(wipeWriteTimeout))
	conn.Write(out)
	clear(out)
}

// errorJSON is an error answer's body, as writeError writes it, for finishWiped.
func errorJSON(code, msg string) []byte {
	b := append([]byte(`{"error":`), strconv.Quote(code)...)
	b = append(b, `,"msg":`...)
	b = append(b, strconv.Quote(msg)...)
	return append(b, "}\n"...)
}

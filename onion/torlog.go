package onion

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
)

// torLogWriter turns tor's stdout and stderr into log records, one per line, at the level tor gave the line.
type torLogWriter struct {
	log *slog.Logger

	mu  sync.Mutex
	buf []byte
}

// maxTorLine bounds a partial line kept between writes, so a runaway tor cannot grow our memory.
const maxTorLine = 8 << 10

func newTorLogWriter(log *slog.Logger) *torLogWriter {
	return &torLogWriter{log: log.With("component", "tor")}
}

func (w *torLogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxTorLine {
		w.line(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

// line logs "Nov 23 06:33:30.000 [notice] text" as text at the matching level.
func (w *torLogWriter) line(s string) {
	s = strings.TrimSpace(s)
	if s == "" {
		return
	}
	level := slog.LevelInfo
	if i := strings.Index(s, "["); i >= 0 {
		if j := strings.Index(s[i:], "] "); j > 0 {
			switch s[i+1 : i+j] {
			case "debug", "info":
				level = slog.LevelDebug
			case "notice":
				level = slog.LevelInfo
			case "warn":
				level = slog.LevelWarn
			case "err":
				level = slog.LevelError
			}
			s = s[i+j+2:]
		}
	}
	w.log.Log(context.Background(), level, s)
}

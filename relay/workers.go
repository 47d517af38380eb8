package relay

import (
	"sync"
	"time"

	"github.com/cleanrelay/cleanrelay/relay/internal/ws"
)

// workers runs the short tasks of connections — a burst of reading, a pass of writing — on goroutines that
// wait a little for the next task when they are done. A connection holds no goroutine while idle, so without
// them every burst would start a fresh goroutine and grow its stack again.
type workers struct {
	work chan task     // unbuffered: only a worker already waiting takes a task
	quit chan struct{} // closed by stop
	once sync.Once
}

// task is what a worker does for a connection.
type task struct {
	c     *conn
	write bool // writeLoop; otherwise readReady
}

// workerLinger is how long a worker waits for its next task before it ends, so a quiet relay keeps none.
const workerLinger = time.Second

func newWorkers() *workers {
	return &workers{work: make(chan task), quit: make(chan struct{})}
}

// run runs t on a waiting worker, or on a new one.
func (w *workers) run(t task) {
	select {
	case w.work <- t:
	default:
		go w.loop(t)
	}
}

func (w *workers) loop(t task) {
	timer := time.NewTimer(workerLinger)
	defer timer.Stop()
	for {
		if t.write {
			t.c.writeLoop()
		} else {
			t.c.readReady()
		}
		ws.ScrubRegisters() // before this thread waits, or runs other goroutines
		timer.Reset(workerLinger)
		select {
		case t = <-w.work:
		case <-timer.C:
			return
		case <-w.quit:
			return
		}
	}
}

// stop ends the waiting workers; a task already running finishes. Stopping again does nothing.
func (w *workers) stop() {
	w.once.Do(func() { close(w.quit) })
}

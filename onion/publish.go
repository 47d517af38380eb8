package onion

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cretz/bine/control"
)

// How a Service is published on its tor: ADD_ONION with the service's own key, then the descriptor uploads watched through control events.

// publish adds the onion service to inst's tor, enables the network and waits for the first upload.
func (s *Service) publish(ctx context.Context, inst *instance) error {
	events := make(chan control.Event, 256)
	// bine delivers events synchronously from its reader; this goroutine keeps the channel drained so the
	// reader never blocks while holding the connection's read lock.
	go func() {
		for {
			select {
			case ev := <-events:
				s.handleEvent(inst, ev)
			case <-inst.dead:
				return
			}
		}
	}()
	if err := inst.conn.AddEventListener(events, control.EventCodeStatusClient, control.EventCodeHSDesc); err != nil {
		return fmt.Errorf("failed to subscribe to tor events: %w", err)
	}
	pow := false
	if !s.cfg.DisablePoW {
		version, err := torVersion(inst.conn)
		if err != nil {
			return err
		}
		pow = versionAtLeast(version, [4]int{0, 4, 9, 2})
		if !pow && !s.powWarned.Swap(true) {
			s.log.Warn("onion: this tor is too old for the proof-of-work DoS defence (needs 0.4.9.2 or newer); going on without it", "tor_version", version)
		}
	}
	err := s.addOnion(inst.conn, pow)
	if err != nil && pow {
		// A tor built without the PoW module refuses the option; an onion without PoW beats no onion.
		s.log.Warn("onion: tor refused the proof-of-work DoS defence; going on without it", "err", err)
		err = s.addOnion(inst.conn, false)
	}
	if err != nil {
		return err
	}
	if s.cfg.ControlAddr == "" {
		if err := inst.conn.SetConf(control.KeyVals("DisableNetwork", "0")...); err != nil {
			return fmt.Errorf("failed to enable tor's network: %w", err)
		}
	}
	// From here on only this goroutine reads the connection; it ends when the connection breaks.
	go func() {
		inst.conn.HandleEvents(s.ctx)
		inst.markDead()
	}()
	timer := time.NewTimer(s.cfg.PublishTimeout)
	defer timer.Stop()
	select {
	case <-inst.published:
		return nil
	case <-inst.dead:
		return errors.New("failed to publish the onion service: tor stopped")
	case <-timer.C:
		return fmt.Errorf("failed to publish the onion service: no descriptor upload within %v (bootstrap at %d%%)", s.cfg.PublishTimeout, inst.percent.Load())
	case <-ctx.Done():
		return fmt.Errorf("failed to publish the onion service: %w", ctx.Err())
	}
}

// addOnion sends ADD_ONION with our own key. It is written out rather than taken from bine's Listen because
// Listen has no PoW parameters and would create its own TCP listener.
func (s *Service) addOnion(conn *control.Conn, pow bool) error {
	var b strings.Builder
	b.WriteString("ADD_ONION ED25519-V3:")
	b.WriteString(base64.StdEncoding.EncodeToString(s.key.PrivateKey()))
	b.WriteString(" Flags=DiscardPK")
	if s.auth != nil {
		b.WriteString(",V3Auth")
	}
	if s.cfg.MaxStreams > 0 {
		fmt.Fprintf(&b, " MaxStreams=%d", s.cfg.MaxStreams)
	}
	if pow {
		b.WriteString(" PoWDefensesEnabled=1")
	}
	fmt.Fprintf(&b, " Port=%d,%s", s.cfg.VirtualPort, s.target)
	if s.auth != nil {
		b.WriteString(" ClientAuthV3=" + s.auth.PublicKey)
	}
	resp, err := conn.SendRequest("%s", b.String())
	if err != nil {
		// The command holds the private key: never put it in an error or a log line.
		return fmt.Errorf("failed to add the onion service: tor said %w", err)
	}
	for _, line := range resp.Data {
		if id, ok := strings.CutPrefix(line, "ServiceID="); ok && id != s.id {
			return fmt.Errorf("failed to add the onion service: tor published a different address than our key's")
		}
	}
	return nil
}

func (s *Service) handleEvent(inst *instance, ev control.Event) {
	switch ev := ev.(type) {
	case *control.StatusEvent:
		if ev.Action != "BOOTSTRAP" {
			return
		}
		if ev.Severity == "WARN" || ev.Severity == "ERR" {
			s.log.Warn("onion: tor bootstrap problem", "warning", ev.Arguments["WARNING"], "reason", ev.Arguments["REASON"])
			return
		}
		pct, _ := strconv.Atoi(ev.Arguments["PROGRESS"])
		if int32(pct) == inst.percent.Swap(int32(pct)) {
			return
		}
		s.log.Info("onion: tor bootstrapping", "percent", pct, "step", ev.Arguments["TAG"])
		s.progress(Progress{Stage: StageBootstrap, Percent: pct, Summary: ev.Arguments["SUMMARY"]})
	case *control.HSDescEvent:
		if ev.Address != s.id {
			return
		}
		switch ev.Action {
		case "UPLOAD":
			inst.pendingUploads++
			if !inst.uploading.Swap(true) {
				s.log.Info("onion: uploading the service descriptor")
				s.progress(Progress{Stage: StageUploading})
			}
		case "UPLOADED":
			inst.pendingUploads--
			if !inst.uploadedAny {
				inst.uploadedAny = true
				// Give the other HSDirs' uploads a moment, but do not wait on a slow one for ever.
				time.AfterFunc(uploadSettle, func() { s.markPublished(inst) })
			}
		case "FAILED":
			inst.pendingUploads--
			s.log.Debug("onion: a descriptor upload failed; tor retries", "reason", ev.Reason)
		}
		// Published once every upload started so far has been answered, not at the first: then every HSDir a
		// client may ask has the descriptor when Start returns.
		if inst.uploadedAny && inst.pendingUploads <= 0 {
			s.markPublished(inst)
		}
	}
}

// uploadSettle bounds the wait for the remaining HSDir uploads after the first one succeeded.
const uploadSettle = 5 * time.Second

func (s *Service) markPublished(inst *instance) {
	inst.pubOnce.Do(func() {
		close(inst.published)
		s.log.Info("onion: service descriptor published")
		s.progress(Progress{Stage: StagePublished})
	})
}

func torVersion(conn *control.Conn) (string, error) {
	kvs, err := conn.GetInfo("version")
	if err != nil {
		return "", fmt.Errorf("failed to ask tor its version: %w", err)
	}
	for _, kv := range kvs {
		if kv.Key == "version" {
			return kv.Val, nil
		}
	}
	return "", errors.New("failed to ask tor its version: no answer")
}

// versionAtLeast compares a tor version such as "0.4.9.11" or "0.4.8.10 (git-…)" or "0.4.9.1-alpha" with min.
func versionAtLeast(version string, min [4]int) bool {
	v, _, _ := strings.Cut(version, " ")
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	for i := range 4 {
		n := 0
		if i < len(parts) {
			var err error
			if n, err = strconv.Atoi(parts[i]); err != nil {
				return false
			}
		}
		if n != min[i] {
			return n > min[i]
		}
	}
	return true
}

package accounts_test

import "github.com/cleanrelay/cleanrelay/relay/internal/relaytest"

// The shared helpers of the relay's tests, under the names these tests use.
var (
	ctx10s     = relaytest.Ctx10s
	mustCreate = relaytest.MustCreate
	mustJoin   = relaytest.MustJoin
	nextEvent  = relaytest.NextEvent
	nextFrame  = relaytest.NextFrame
	wantError  = relaytest.WantError
	eventually = relaytest.Eventually
)

package main

// chatEvent is what a chat session tells its screen (or, with --json, its stdout: one object per line).
type chatEvent struct {
	Type       string   `json:"type"` // invite, key, state, presence, safety, keychange, message, sent, expired, filestart, file, filesent, exported, problem, ended, error
	Link       string   `json:"link,omitempty"`
	Online     *bool    `json:"online,omitempty"`
	Ready      *bool    `json:"ready,omitempty"`
	Member     uint32   `json:"member,omitempty"`
	Members    []uint32 `json:"members,omitempty"`
	Me         uint32   `json:"me,omitempty"`
	Event      string   `json:"event,omitempty"`
	User       string   `json:"user,omitempty"`
	Safety     string   `json:"safety,omitempty"`
	Offered    string   `json:"offered,omitempty"`
	From       uint32   `json:"from,omitempty"`
	ID         string   `json:"id,omitempty"`
	Text       string   `json:"text,omitempty"`
	TS         int64    `json:"ts,omitempty"`
	TTL        int      `json:"ttl,omitempty"`
	Name       string   `json:"name,omitempty"`
	Size       int64    `json:"size,omitempty"`
	Path       string   `json:"path,omitempty"`
	Code       string   `json:"code,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Message    string   `json:"message,omitempty"`
	Unverified bool     `json:"unverified,omitempty"` // dialogs: the signature is not the pinned key's
	Mailbox    bool     `json:"mailbox,omitempty"`    // dialogs: the message came from, or went to, the mailbox
}

// chatCommand is what the screen (or stdin with --json) asks of the session.
type chatCommand struct {
	Cmd    string `json:"cmd"` // send, file, burn, leave, trust, export
	Text   string `json:"text,omitempty"`
	TTL    int    `json:"ttl,omitempty"`
	Path   string `json:"path,omitempty"`
	Member uint32 `json:"member,omitempty"`
}

func boolp(b bool) *bool { return &b }

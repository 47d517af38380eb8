package stracejudge

import (
	"regexp"
	"testing"
)

// TestJudgeTrace checks the judge on lines as strace 6 prints them, without running strace: those of the relay
// (and the tor it starts) and those of a NATS server.
func TestJudgeTrace(t *testing.T) {
	std := map[string]bool{"pipe:[100]": true, "pipe:[101]": true, "pipe:[4242]": true}
	private := regexp.MustCompile(`^/tmp/T/cleanrelay-onion-[^/]+(/|$)`)
	tests := map[string]struct {
		line    string
		onion   bool // judge with the private directory allowed
		ok      bool
		counted string // the count an allowed call adds to
	}{
		"socket write":                 {`7 write(9<TCP:[127.0.0.1:44755->127.0.0.1:54460]>, "hello", 5) = 5`, false, true, "socket"},
		"unix socket sendmsg":          {`7 sendmsg(9<UNIX-STREAM:[1584329->1584330]>, {msg_name=NULL, msg_iov=[{iov_base="x", iov_len=1}]}, 0) = 1`, false, true, "socket"},
		"unfinished write":             {`7 write(9<TCPv6:[::1:80->::1:5000]>, "hello", 5 <unfinished ...>`, false, true, "socket"},
		"stdout":                       {`7 write(1<pipe:[100]>, "cleanrelay: serving on h"..., 47) = 47`, false, true, "stdout/stderr"},
		"eventfd":                      {`7 write(5<anon_inode:[eventfd]>, "\1\0\0\0\0\0\0\0", 8) = 8`, false, true, "eventfd"},
		"foreign pipe":                 {`7 write(6<pipe:[999]>, "x", 1) = 1`, false, false, ""},
		"file write":                   {`7 write(11</tmp/x/file>, "hi", 2) = 2`, false, false, ""},
		"dev null write":               {`7 write(1</dev/null<char 1:3>>, "child\n", 6) = 6`, false, false, ""},
		"read-only open":               {`7 openat(AT_FDCWD</w>, "/etc/hosts", O_RDONLY|O_CLOEXEC) = 3</etc/hosts>`, false, true, "read-only open"},
		"open for writing":             {`7 openat(AT_FDCWD</w>, "/tmp/x", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600) = 11</tmp/x>`, false, false, ""},
		"open for writing, unfinished": {`7 openat(AT_FDCWD</w>, "/tmp/x", O_RDWR|O_CREAT, 0600 <unfinished ...>`, false, false, ""},
		"relative unlink":              {`7 unlinkat(11</tmp/stx>, "d", AT_REMOVEDIR) = 0`, false, false, ""},
		"rename":                       {`7 renameat(AT_FDCWD</w>, "/tmp/a", AT_FDCWD</w>, "/tmp/b") = 0`, false, false, ""},
		"unix socket on disk":          {`7 bind(11<UNIX-STREAM:[1]>, {sa_family=AF_UNIX, sun_path="/tmp/stx/sock"}, 16) = 0`, false, false, ""},
		"tcp bind":                     {`7 bind(5<socket:[1]>, {sa_family=AF_INET, sin_port=htons(0), sin_addr=inet_addr("127.0.0.1")}, 16) = 0`, false, true, ""},
		"ftruncate":                    {`7 ftruncate(11</tmp/x>, 0) = 0`, false, false, ""},
		"splice to a file":             {`7 splice(9<TCP:[1->2]>, NULL, 11</tmp/x>, NULL, 4096, 0) = 10`, false, false, ""},
		"io_uring":                     {`7 io_uring_setup(8, {flags=0}) = 3<anon_inode:[io_uring]>`, false, false, ""},
		"private dir open":             {`8 openat(AT_FDCWD</w>, "/tmp/T/cleanrelay-onion-1/tor/state.tmp", O_WRONLY|O_CREAT|O_TRUNC, 0600) = 8</tmp/T/cleanrelay-onion-1/tor/state.tmp>`, true, true, "tor's private directory"},
		"private dir write":            {`8 write(8</tmp/T/cleanrelay-onion-1/tor/state.tmp>, "# Tor state", 11) = 11`, true, true, "tor's private directory"},
		"private dir rename":           {`8 rename("/tmp/T/cleanrelay-onion-1/tor/a.tmp", "/tmp/T/cleanrelay-onion-1/tor/a") = 0`, true, true, "tor's private directory"},
		"out of private dir":           {`8 rename("/tmp/T/cleanrelay-onion-1/tor/a", "/tmp/T/a") = 0`, true, false, ""},
		"private dir, local":           {`8 mkdirat(AT_FDCWD</w>, "/tmp/T/cleanrelay-onion-1", 0700) = 0`, false, false, ""},
		"resumed half":                 {`7 <... write resumed>) = 5`, false, true, ""},
		// A NATS server's.
		"config read":         {`101 openat(AT_FDCWD</>, "/tmp/x/n1.conf", O_RDONLY|O_CLOEXEC) = 7</tmp/x/n1.conf>`, false, true, "read-only open"},
		"nats socket write":   {`101 write(9<TCP:[127.0.0.1:4222->127.0.0.1:5000]>, "MSG cr.x 1 5\r\n", 14) = 14`, false, true, "socket"},
		"log to stderr":       {`101 write(2<pipe:[4242]>, "[INF] Server is ready\n", 22) = 22`, false, true, "stdout/stderr"},
		"runtime wake-up":     {`102 write(5<anon_inode:[eventfd]>, "\1\0\0\0\0\0\0\0", 8) = 8`, false, true, "eventfd"},
		"store open to write": {`101 openat(AT_FDCWD</>, "/tmp/x/store/meta.inf", O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0640) = 8</tmp/x/store/meta.inf>`, false, false, ""},
		"open read-write":     {`101 openat(AT_FDCWD</>, "/tmp/x/pid", O_RDWR|O_CLOEXEC) = 8</tmp/x/pid>`, false, false, ""},
		"log file write":      {`101 write(8</tmp/x/nats.log>, "[INF] …", 7) = 7`, false, false, ""},
		"directory made":      {`101 mkdirat(AT_FDCWD</>, "/tmp/x/jetstream", 0750) = 0`, false, false, ""},
		"file removed":        {`101 unlinkat(AT_FDCWD</>, "/tmp/x/old", 0) = 0`, false, false, ""},
		"exit line":           {`101 +++ exited with 0 +++`, false, true, ""},
		"unknown fd write":    {`101 write(8, "x", 1) = 1`, false, false, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			opt := Options{StdPipes: std}
			if tc.onion {
				opt.Private = private
			}
			v := Judge([]string{tc.line}, opt)
			if ok := len(v.Bad) == 0; ok != tc.ok {
				t.Fatalf("judged ok=%v, want %v", ok, tc.ok)
			}
			if tc.counted != "" && v.Counts[tc.counted] != 1 {
				t.Errorf("counts %v, want one %q", v.Counts, tc.counted)
			}
		})
	}
	// A pipe the traced processes made is theirs to write to.
	v := Judge([]string{`7 pipe2([14<pipe:[55]>, 15<pipe:[55]>], O_CLOEXEC) = 0`, `7 write(15<pipe:[55]>, "x", 1) = 1`}, Options{StdPipes: std})
	if len(v.Bad) != 0 || v.Counts["own pipe"] != 1 {
		t.Errorf("own pipe: bad %q, counts %v", v.Bad, v.Counts)
	}
	// With -f another thread's call can cut the pipe call in two; its descriptors are in the resumed half.
	v = Judge([]string{`7 pipe2( <unfinished ...>`, `8 write(3<socket:[9]>, "x", 1) = 1`,
		`7 <... pipe2 resumed>[5<pipe:[56]>, 6<pipe:[56]>], O_CLOEXEC) = 0`, `7 write(6<pipe:[56]>, "\17", 1) = 1`}, Options{StdPipes: std})
	if len(v.Bad) != 0 || v.Counts["own pipe"] != 1 {
		t.Errorf("own pipe made in two halves: bad %q, counts %v", v.Bad, v.Counts)
	}
	// A stderr pipe the caller did not name is foreign.
	if v := Judge([]string{`101 write(2<pipe:[4242]>, "[INF] Server is ready\n", 22) = 22`}, Options{}); len(v.Bad) != 1 {
		t.Errorf("a write to an unnamed pipe was allowed: counts %v", v.Counts)
	}
}

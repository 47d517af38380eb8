// Package stracejudge judges an "strace -f -yy" trace of a process that must put nothing on disk: it finds every
// call that wrote, created, renamed, removed or changed a file, for the no-disk tests of the relay and of the
// cluster's NATS servers.
package stracejudge

import (
	"path/filepath"
	"regexp"
	"strings"
)

// The system calls a trace records (TracedCalls).
const (
	// pathCalls put something on disk or change it, named by path (an open is judged by its flags).
	pathCalls = "open,openat,openat2,creat,mkdir,mkdirat,mknod,mknodat,rename,renameat,renameat2,unlink,unlinkat," +
		"rmdir,truncate,link,linkat,symlink,symlinkat,chmod,fchmodat,fchmodat2,chown,fchownat,lchown,utime,utimes," +
		"utimensat,futimesat,setxattr,lsetxattr,removexattr,lremovexattr"
	// fdCalls change a file through a descriptor.
	fdCalls = "ftruncate,fallocate,fchmod,fchown,fsetxattr,fremovexattr"
	// writeCalls move bytes out of the process; the descriptor says where to.
	writeCalls = "write,writev,pwrite64,pwritev,pwritev2,sendto,sendmsg,sendmmsg,vmsplice"
	// moveCalls move bytes between two descriptors; both must be harmless.
	moveCalls = "sendfile,copy_file_range,splice,tee"
	// otherCalls: bind can make a Unix socket on disk; io_uring would write where strace cannot see; pipes and
	// execve are recorded to tell the processes' own pipes and tor apart.
	otherCalls = "bind,io_uring_setup,pipe,pipe2,execve"
)

// TracedCalls is strace's -e trace= list for Judge. The "?" prefix lets strace skip a name this architecture
// lacks.
func TracedCalls() string {
	var names []string
	for _, list := range []string{pathCalls, fdCalls, writeCalls, moveCalls, otherCalls} {
		for _, n := range strings.Split(list, ",") {
			names = append(names, "?"+n)
		}
	}
	return strings.Join(names, ",")
}

// Options says what else than sockets, eventfds, read-only opens and the traced processes' own pipes a trace
// may write to.
type Options struct {
	// StdPipes are the traced process's stdout and stderr, as "pipe:[inode]": writes to them count as
	// "stdout/stderr". A write to any other pipe the traced processes did not make themselves is bad.
	StdPipes map[string]bool
	// Private matches the paths inside a directory the traced processes may write in (tor's private
	// directory); nil: none.
	Private *regexp.Regexp
}

// Verdict is what Judge found.
type Verdict struct {
	Bad          []string        // every call that broke the contract
	Counts       map[string]int  // allowed calls by what they went to
	PrivateDirs  map[string]bool // the directories Options.Private matched
	TorExec      bool            // a traced process ran tor
	TorDataFiles int             // write-intent opens inside tor's data directory: proof that strace followed tor
}

// traceLine is one line of "strace -f" output: "PID name(args…" (the result, if any, is in args).
var traceLine = regexp.MustCompile(`^(\d+) +([a-z0-9_]+)\((.*)$`)

// fdAnnotation finds "-yy" descriptor annotations, "3<…>": what follows "<" is read by describeFD.
var fdAnnotation = regexp.MustCompile(`(?:^|[(\[ ,])(?:\d+|AT_FDCWD)<`)

// describeFD reads the annotation at the start of s (after "<"): a socket ("TCP:[a->b]", "UNIX-STREAM:[…]",
// "socket:[…]"), a pipe ("pipe:[inode]"), an anonymous inode ("anon_inode:[eventfd]") or a path (which may be
// followed by a device note, "/dev/null<char 1:3>").
func describeFD(s string) (kind, what string) {
	if i := strings.Index(s, ":["); i > 0 && !strings.ContainsAny(s[:i], "/<> ") {
		end := strings.Index(s, "]>")
		if end < 0 {
			return "unknown", s
		}
		what = s[:end+1]
		switch s[:i] {
		case "pipe":
			return "pipe", what
		case "anon_inode":
			return "anon", what
		default: // socket, TCP, TCPv6, UDP, UNIX, UNIX-STREAM, NETLINK, …
			return "socket", what
		}
	}
	end := strings.IndexAny(s, "<>")
	if end < 0 {
		return "unknown", s
	}
	return "path", s[:end]
}

var (
	// quotedPath finds the quoted path arguments of a call, each with the directory annotation before it, if any.
	quotedPath  = regexp.MustCompile(`(?:(?:\d+|AT_FDCWD)<([^<>]*)>, )?"((?:[^"\\]|\\.)*)"`)
	pipeName    = regexp.MustCompile(`pipe:\[\d+\]`)
	resumedPipe = regexp.MustCompile(`<\.\.\. pipe2? resumed>`)
	sunPath     = regexp.MustCompile(`sun_path="([^"]*)"`)
	writeIntent = regexp.MustCompile(`O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND|O_TMPFILE`)
)

// Judge checks each call of a trace made with "strace -f -yy -e trace=" TracedCalls. Allowed: read-only opens;
// writes to sockets, to the stdout/stderr pipes of opt, to pipes the traced processes made themselves (Go's and
// tor's wake-ups, tor's log pipe to the relay) and to eventfds; binds of sockets that are not on disk; anything
// inside the private directory of opt. Everything else that writes, creates, renames, removes or changes a file
// is bad, and so is a call the judge does not know.
func Judge(lines []string, opt Options) *Verdict {
	v := &Verdict{Counts: map[string]int{}, PrivateDirs: map[string]bool{}}
	ownPipes := map[string]bool{}
	inPrivate := func(path string) bool {
		if opt.Private == nil {
			return false
		}
		m := opt.Private.FindString(path)
		if m == "" {
			return false
		}
		v.PrivateDirs[strings.TrimSuffix(m, "/")] = true
		return true
	}
	// fdOK judges a descriptor that bytes go to, and counts it.
	fdOK := func(annotation string) bool {
		kind, what := describeFD(annotation)
		switch {
		case kind == "socket":
			v.Counts["socket"]++
		case kind == "pipe" && opt.StdPipes[what]:
			v.Counts["stdout/stderr"]++
		case kind == "pipe" && ownPipes[what]:
			v.Counts["own pipe"]++
		case kind == "anon" && what == "anon_inode:[eventfd]":
			v.Counts["eventfd"]++
		case kind == "path" && inPrivate(what):
			v.Counts["tor's private directory"]++
		default:
			return false
		}
		return true
	}
	fds := func(args string) []string {
		var out []string
		for _, loc := range fdAnnotation.FindAllStringIndex(args, -1) {
			out = append(out, args[loc[1]:])
		}
		return out
	}
	is := func(list, name string) bool { return strings.Contains(","+list+",", ","+name+",") }
	for _, line := range lines {
		m := traceLine.FindStringSubmatch(line)
		if m == nil {
			// "+++ exited", and with -f a call's "<... resumed>" half, which carries only its result: the
			// arguments are on its "<unfinished ...>" line, judged below. A pipe's descriptors are its result:
			// a pipe call cut in two by another thread's call names them in its resumed half.
			if resumedPipe.MatchString(line) {
				for _, p := range pipeName.FindAllString(line, -1) {
					ownPipes[p] = true
				}
			}
			continue
		}
		name, args := m[2], m[3]
		// What a call returned is no part of what it was asked to do ("= 3</etc/hosts>" is the opened file).
		if i := strings.LastIndex(args, ") = "); i >= 0 {
			args = args[:i]
		}
		ok := true
		switch {
		case name == "execve":
			if q := strings.SplitN(args, `"`, 3); len(q) == 3 && strings.HasSuffix(q[1], "/tor") {
				v.TorExec = true
			}
		case name == "pipe" || name == "pipe2":
			for _, p := range pipeName.FindAllString(args, -1) {
				ownPipes[p] = true
			}
		case is(writeCalls, name) || is(fdCalls, name):
			f := fds(args)
			ok = len(f) > 0 && fdOK(f[0])
		case is(moveCalls, name):
			f := fds(args)
			ok = len(f) >= 2
			for _, a := range f {
				ok = ok && fdOK(a)
			}
		case name == "bind":
			if sp := sunPath.FindStringSubmatch(args); sp != nil {
				ok = inPrivate(sp[1]) // an abstract socket shows as sun_path=@"…" and makes nothing on disk
			}
		case is(pathCalls, name):
			paths := quotedPath.FindAllStringSubmatch(args, -1)
			inside, torData := len(paths) > 0, false
			for _, p := range paths {
				path := p[2]
				if !filepath.IsAbs(path) {
					path = filepath.Join(p[1], path)
				}
				inside = inside && inPrivate(path)
				torData = torData || strings.Contains(path, "/tor/")
			}
			opens := strings.HasPrefix(name, "open")
			write := !opens || writeIntent.MatchString(args)
			switch {
			case inside:
				v.Counts["tor's private directory"]++
				if opens && write && torData {
					v.TorDataFiles++
				}
			case !write:
				v.Counts["read-only open"]++
			default:
				ok = false
			}
		default: // io_uring_setup, or a call this switch forgot
			ok = false
		}
		if !ok {
			v.Bad = append(v.Bad, line)
		}
	}
	return v
}

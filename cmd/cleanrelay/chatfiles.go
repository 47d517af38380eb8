package main

import (
	"errors"
	"fmt"
	"mime"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// Files travel as the browser sends them (docs/client.md, "Files"): a file header, 32 KiB chunks, and the
// receiver's fack every 2 chunks; the sender keeps at most 5 chunks unacknowledged.
const (
	chatFileCap     = 8 << 20
	chatFileChunk   = 32 << 10
	chatFileWindow  = 5
	chatFileAckEach = 2
)

type inFile struct {
	from  uint32
	name  string
	size  int64
	parts [][]byte
	got   int
}

type outFile struct {
	id, name            string
	data                []byte
	header              map[string]any
	chunks, next, acked int
}

// chatFiles holds the files in transfer and saves the ones that arrive into dir.
type chatFiles struct {
	dir string
	in  map[string]*inFile
	out map[string]*outFile
}

func newChatFiles(dir string) *chatFiles {
	return &chatFiles{dir: dir, in: map[string]*inFile{}, out: map[string]*outFile{}}
}

func (f *chatFiles) idle() bool { return len(f.out) == 0 }

// open reads a file to send and makes its header.
func (f *chatFiles) open(path string) (*outFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the file: %v", err)
	}
	if !st.Mode().IsRegular() || st.Size() > chatFileCap {
		return nil, fmt.Errorf("file too large or not a regular file (%d bytes, at most %d)", st.Size(), chatFileCap)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("failed to read the file: %v", err)
	}
	typ := mime.TypeByExtension(filepath.Ext(path))
	if typ == "" {
		typ = "application/octet-stream"
	}
	name := filepath.Base(path)
	if len(name) > 200 {
		name = name[:200]
	}
	o := &outFile{id: newID(), name: name, data: data, chunks: max(1, (len(data)+chatFileChunk-1)/chatFileChunk)}
	o.header = map[string]any{"k": "file", "id": o.id, "name": name, "type": typ, "size": len(data), "chunks": o.chunks}
	f.out[o.id] = o
	return o, nil
}

func (f *chatFiles) drop(id string) { delete(f.out, id) }

func (f *chatFiles) acked(id string, n int) *outFile {
	o := f.out[id]
	if o != nil {
		o.acked = max(o.acked, n)
	}
	return o
}

// header starts an incoming file; it refuses one over the cap before taking any chunk.
func (f *chatFiles) header(from uint32, h *envelope) (chatEvent, bool) {
	if h.Size < 0 || h.Size > chatFileCap || h.Chunks < 1 || h.Chunks > chatFileCap/chatFileChunk+1 || h.ID == "" {
		return chatEvent{}, false
	}
	f.in[h.ID] = &inFile{from: from, name: h.Name, size: h.Size, parts: make([][]byte, h.Chunks)}
	return chatEvent{Type: "filestart", From: from, ID: h.ID, Name: h.Name, Size: h.Size}, true
}

// chunk takes one chunk; it returns the fack to send (if one is due) and, once complete, the saved file.
func (f *chatFiles) chunk(from uint32, h *envelope, data []byte) (map[string]any, *chatEvent, error) {
	in := f.in[h.ID]
	if in == nil || in.from != from || h.I < 0 || h.I >= len(in.parts) || in.parts[h.I] != nil {
		return nil, nil, nil
	}
	in.parts[h.I] = append([]byte{}, data...)
	in.got++
	var ack map[string]any
	if in.got%chatFileAckEach == 0 || in.got == len(in.parts) {
		ack = map[string]any{"k": "fack", "id": h.ID, "n": in.got}
	}
	if in.got < len(in.parts) {
		return ack, nil, nil
	}
	delete(f.in, h.ID)
	var all []byte
	for _, p := range in.parts {
		all = append(all, p...)
	}
	if int64(len(all)) != in.size {
		return ack, nil, fmt.Errorf("file %s arrived with the wrong size", in.name)
	}
	path, err := f.save(in.name, all)
	if err != nil {
		return ack, nil, err
	}
	return ack, &chatEvent{Type: "file", From: from, ID: h.ID, Name: in.name, Size: in.size, Path: path}, nil
}

var unsafeName = regexp.MustCompile(`[^\p{L}\p{N}._ -]+`)

// save writes data under dir with a cleaned-up form of the sender's name, never over an existing file.
func (f *chatFiles) save(name string, data []byte) (string, error) {
	name = strings.Trim(unsafeName.ReplaceAllString(filepath.Base(name), "_"), ". ")
	if name == "" {
		name = "file"
	}
	ext := filepath.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	for i := 0; i < 1000; i++ {
		p := filepath.Join(f.dir, name)
		if i > 0 {
			p = filepath.Join(f.dir, fmt.Sprintf("%s (%d)%s", stem, i, ext))
		}
		fh, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("failed to save the file: %v", err)
		}
		_, err = fh.Write(data)
		if cerr := fh.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(p)
			return "", fmt.Errorf("failed to save the file: %v", err)
		}
		return p, nil
	}
	return "", errors.New("failed to save the file: too many files of that name")
}

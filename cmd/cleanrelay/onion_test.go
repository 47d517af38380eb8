package main

import (
	"strings"
	"testing"

	"rsc.io/qr"
)

// TestQRText reads the modules back from the drawing and compares them with the code.
func TestQRText(t *testing.T) {
	url := "http://pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion/"
	text, err := qrText(url)
	if err != nil {
		t.Fatal(err)
	}
	code, err := qr.Encode(url, qr.M)
	if err != nil {
		t.Fatal(err)
	}
	n := code.Size + 2*qrQuiet
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines, want %d", len(lines), (n+1)/2)
	}
	for row, line := range lines {
		cells := []rune(line)
		if len(cells) != n {
			t.Fatalf("line %d has %d cells, want %d", row, len(cells), n)
		}
		for x, c := range cells {
			top := strings.ContainsRune("█▀", c)
			bottom := strings.ContainsRune("█▄", c)
			for i, lightDrawn := range []bool{top, bottom} {
				y := 2*row + i
				if y >= n {
					continue
				}
				mx, my := x-qrQuiet, y-qrQuiet
				inCode := mx >= 0 && my >= 0 && mx < code.Size && my < code.Size
				wantLight := !inCode || !code.Black(mx, my)
				if lightDrawn != wantLight {
					t.Fatalf("module (%d,%d): drawn light=%v, want %v", x, y, lightDrawn, wantLight)
				}
			}
		}
	}
}

func TestIsTerminalFalseForPipes(t *testing.T) {
	var b strings.Builder
	if isTerminal(&b) {
		t.Error("a strings.Builder is not a terminal")
	}
}

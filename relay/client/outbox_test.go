package client

import (
	"fmt"
	"testing"
)

func TestOutboxSince(t *testing.T) {
	o := NewOutbox(4)
	for i := range 6 {
		o.Add([]byte{byte(i)})
	}
	tests := []struct {
		in      uint64
		want    string
		wantErr bool
	}{
		{6, "[]", false},
		{5, "[[5]]", false},
		{2, "[[2] [3] [4] [5]]", false},
		{1, "", true}, // frame 1 is no longer remembered
		{7, "", true}, // more accepted than sent
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.in), func(t *testing.T) {
			got, err := o.Since(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if err == nil && fmt.Sprint(got) != tt.want {
				t.Fatalf("got %v, want %s", got, tt.want)
			}
		})
	}
}

package main

import (
	"context"
	"io"
)

// chatScreen is the interactive screen.
func chatScreen(ctx context.Context, cfg chatConfig, stderr io.Writer) int {
	return chatJSON(ctx, cfg, nil, nil, stderr)
}

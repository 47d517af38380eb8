// Package static embeds the browser client that the relay serves.
package static

import "embed"

// Files is the browser client: index.html and the ES modules it loads.
//
//go:embed index.html
var Files embed.FS

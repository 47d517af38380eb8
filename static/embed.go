// Package static embeds the browser client that the relay serves.
package static

import "embed"

// Files is the browser client: index.html, its stylesheet, the ES modules it loads and the
// vendored OpenPGP.js and qrcode-generator builds (each byte-identical to its pinned npm package;
// e2e/unit/vendor.test.mjs checks them).
//
//go:embed index.html style.css js/*.mjs vendor/openpgp.min.mjs vendor/openpgp.LICENSE vendor/qrcode.mjs vendor/qrcode.LICENSE
var Files embed.FS

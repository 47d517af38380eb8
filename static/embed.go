// Package static embeds the browser client that the relay serves.
package static

import "embed"

// Files is the browser client: index.html, its stylesheet, the ES modules it loads, the vendored
// OpenPGP.js and qrcode-generator builds and the vendored pure-JavaScript ML-KEM (@noble); each is
// byte-identical to its pinned npm package, up to relative imports for @noble (e2e/unit/vendor.test.mjs
// checks them).
//
//go:embed index.html style.css js/*.mjs vendor/openpgp.min.mjs vendor/openpgp.LICENSE vendor/qrcode.mjs vendor/qrcode.LICENSE
//go:embed vendor/noble/*/*.js vendor/noble/curves/abstract/*.js vendor/noble/*/LICENSE
var Files embed.FS

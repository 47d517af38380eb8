// Package onion publishes cleanrelay as a Tor v3 onion service; it is the only importer of bine.
package onion

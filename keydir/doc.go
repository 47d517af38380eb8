// Package keydir keeps cleanrelay's accounts and public-key directory in memory.
package keydir

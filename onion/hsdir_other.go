//go:build !linux

package onion

import "errors"

// onRAM: only Linux is known to tell (statfs's magic numbers).
func onRAM(string) (bool, string, error) {
	return false, "", errors.New("telling a RAM file system apart is done on Linux only")
}

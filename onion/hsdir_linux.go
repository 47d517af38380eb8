package onion

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// onRAM tells whether path is on tmpfs or ramfs (statfs's magic numbers), and else names its file system.
func onRAM(path string) (bool, string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, "", err
	}
	switch uint32(st.Type) {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		return true, "", nil
	}
	return false, fmt.Sprintf("a file system of type 0x%x (not tmpfs 0x%x or ramfs 0x%x)", uint32(st.Type), unix.TMPFS_MAGIC, uint32(unix.RAMFS_MAGIC)), nil
}

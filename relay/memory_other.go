//go:build !linux

package relay

// machineMemory returns 0: the default budget is then fixed (Config.MaxMemory).
func machineMemory() int64 { return 0 }

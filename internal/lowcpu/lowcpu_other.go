//go:build !linux

package lowcpu

func lower() {}

func priority() (int, bool) { return 0, false }

func onMainThread() bool { return false }

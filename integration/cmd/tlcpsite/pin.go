package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// cpuMask is a Linux CPU affinity mask (up to 1024 CPUs).
type cpuMask [16]uint64

func (m *cpuMask) set(cpu int)      { m[cpu/64] |= 1 << (cpu % 64) }
func (m *cpuMask) has(cpu int) bool { return m[cpu/64]&(1<<(cpu%64)) != 0 }

// cpus lists the CPUs in m.
func (m *cpuMask) cpus() []int {
	var out []int
	for c := 0; c < len(m)*64; c++ {
		if m.has(c) {
			out = append(out, c)
		}
	}
	return out
}

func getAffinity(tid int) (cpuMask, error) {
	var m cpuMask
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	if e != 0 {
		return m, e
	}
	return m, nil
}

func setAffinity(tid int, m cpuMask) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(m), uintptr(unsafe.Pointer(&m)))
	if e != 0 {
		return e
	}
	return nil
}

// pinProcess sets the affinity of every thread of pid to m; threads created later inherit it from
// their creator. It goes over the threads twice, for one created by a thread not yet pinned.
func pinProcess(pid int, m cpuMask) error {
	for pass := 0; pass < 2; pass++ {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			if err := setAffinity(tid, m); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
			}
		}
	}
	return nil
}

// splitCPUs gives the first of the allowed CPUs to the servers and the rest to the clients; ok is
// false with fewer than two.
func splitCPUs(allowed cpuMask) (servers, clients cpuMask, ok bool) {
	cs := allowed.cpus()
	if len(cs) < 2 {
		return servers, clients, false
	}
	servers.set(cs[0])
	for _, c := range cs[1:] {
		clients.set(c)
	}
	return servers, clients, true
}

func cpuList(m cpuMask) string {
	var s []string
	for _, c := range m.cpus() {
		s = append(s, strconv.Itoa(c))
	}
	return strings.Join(s, ",")
}

// pinAll pins every server process to one CPU and this process (the clients) to the others
// allowed, when at least two are, and says so.
func pinAll(servers ...*server) (string, error) {
	allowed, err := getAffinity(0)
	if err != nil {
		return "", err
	}
	srv, cli, ok := splitCPUs(allowed)
	if !ok {
		return "none (one logical CPU allowed)", nil
	}
	for _, s := range servers {
		if s == nil {
			continue
		}
		if err := pinProcess(s.pid, srv); err != nil {
			return "", err
		}
	}
	if err := pinProcess(os.Getpid(), cli); err != nil {
		return "", err
	}
	return fmt.Sprintf("servers on CPU %s, clients (this process) on CPU %s (sched_setaffinity on every thread)", cpuList(srv), cpuList(cli)), nil
}

// loadAvg is the first three fields of /proc/loadavg ("" when unreadable).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

//go:build bench

/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

// A memory limit for the operator process, as a Pod's
// resources.limits.memory sets one: a memory cgroup of its own (cgroup v1's
// memory controller or cgroup v2) with the limit, and GOMEMLIMIT set to the
// same number, as config/manager/manager.yaml does from the container's
// limit. Under it the kernel reclaims the cgroup's page cache (bbolt's
// memory-mapped file among it) before it OOM-kills, as it would in a Pod; an
// OOM kill ends the benchmark.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type memCgroup struct {
	dir string
	v2  bool
}

// newMemCgroup creates a memory cgroup under the test process's own, with
// the limit set. It fails the benchmark when no writable memory cgroup is
// found (it needs root, or a delegated cgroup).
func newMemCgroup(b *testing.B, limit int64) *memCgroup {
	b.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		b.Fatalf("SMAREGI_SCALE_MEMORY_LIMIT: %v", err)
	}
	name := fmt.Sprintf("smaregi-scale-%d", os.Getpid())
	var tried []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		// "ID:controllers:path"; cgroup v2's line is "0::path".
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 {
			continue
		}
		var cg *memCgroup
		switch {
		case f[1] == "memory" || strings.Contains(","+f[1]+",", ",memory,"):
			cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup/memory", f[2], name)}
		case f[0] == "0" && f[1] == "":
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil {
				continue // the unified hierarchy is not mounted at /sys/fs/cgroup
			}
			cg = &memCgroup{dir: filepath.Join("/sys/fs/cgroup", f[2], name), v2: true}
		default:
			continue
		}
		if err := cg.create(limit); err != nil {
			tried = append(tried, err.Error())
			continue
		}
		b.Cleanup(func() { _ = os.Remove(cg.dir) }) // empty once the operator has exited
		return cg
	}
	b.Fatalf("SMAREGI_SCALE_MEMORY_LIMIT: no writable memory cgroup (%s)", strings.Join(tried, "; "))
	return nil
}

func (c *memCgroup) create(limit int64) error {
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		return err
	}
	file, swapFile := "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"
	if c.v2 {
		file, swapFile = "memory.max", "memory.swap.max"
	}
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(strconv.FormatInt(limit, 10)), 0o644); err != nil {
		_ = os.Remove(c.dir)
		return err
	}
	// No swap, as in a Pod (best effort: the file is absent without swap
	// accounting; cgroup v1 needs memsw >= the limit, which it is).
	_ = os.WriteFile(filepath.Join(c.dir, swapFile), []byte(strconv.FormatInt(limit, 10)), 0o644)
	return nil
}

// procs is the file a process writes its PID to to join the cgroup.
func (c *memCgroup) procs() string {
	return filepath.Join(c.dir, "cgroup.procs")
}

// peakMB is the cgroup's peak charge (anonymous memory and page cache).
func (c *memCgroup) peakMB() float64 {
	file := "memory.max_usage_in_bytes"
	if c.v2 {
		file = "memory.peak"
	}
	v, err := c.read(file)
	if err != nil {
		return -1
	}
	return float64(v) / (1 << 20)
}

// oomKills is how many processes the kernel killed in the cgroup for want
// of memory (-1 when the kernel does not say).
func (c *memCgroup) oomKills() float64 {
	file, key := "memory.oom_control", "oom_kill"
	if c.v2 {
		file, key = "memory.events", "oom_kill"
	}
	data, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			n, _ := strconv.ParseFloat(f[1], 64)
			return n
		}
	}
	return -1
}

func (c *memCgroup) read(file string) (int64, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(data))
	if s == "" {
		return 0, errors.New(file + " is empty")
	}
	return strconv.ParseInt(s, 10, 64)
}

package mirror

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// simProcess is the simulator binary (cmd/smaregi-sim) running as a child
// process on 127.0.0.1, so that a benchmark's Go heap figures are the
// operator's alone: an in-process simulator's rows and the garbage it makes
// serving pages would be counted with them.
type simProcess struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
}

// startSimProcess builds cmd/smaregi-sim and runs it with the harness's
// contract and token and the given flags; it is stopped when the benchmark
// ends.
func startSimProcess(b *testing.B, args ...string) *simProcess {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "smaregi-sim")
	build := exec.Command("go", "build", "-o", bin, "github.com/stocksync/smaregi-operator/cmd/smaregi-sim")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("building the simulator: %v\n%s", err, out)
	}
	// A free port: the simulator does not report the one it bound.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cmd := exec.Command(bin, append([]string{"--listen", addr, "--contract", testContract, "--quiet"}, args...)...)
	cmd.Env = append(os.Environ(), "SMAREGI_SIM_TOKEN="+testToken)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatalf("starting the simulator: %v", err)
	}
	p := &simProcess{cmd: cmd, base: "http://" + addr}
	b.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	// Building a million rows takes the simulator a few seconds.
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := http.Get(p.base + "/_sim/products")
		if err == nil {
			_ = resp.Body.Close()
			return p
		}
		if time.Now().After(deadline) {
			b.Fatalf("the simulator did not answer within 5 minutes: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (p *simProcess) endpoint() string { return p.base + "/access/" }

// peakRSSMB is the child's peak resident set (VmHWM), for the record: it
// is the simulator's memory, not the operator's.
func (p *simProcess) peakRSSMB() float64 {
	return procStatusMB(p.cmd.Process.Pid, "VmHWM:")
}

// procStatusMB reads one kB field of /proc/PID/status, in MB (0 where it
// cannot be read).
func procStatusMB(pid int, field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

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

// Package node installs the Helm chart on a real one-node cluster
// (hack/node.sh: kube-apiserver, etcd, kube-controller-manager,
// kube-scheduler, kubelet, containerd and runc on this machine) and checks
// what a user meets: the operator's image running as a Pod under the chart's
// ServiceAccount, RBAC, probes, securityContext and volumes, its Services,
// upgrades, restarts, leader hand-over on PostgreSQL, and uninstall.
//
// The node is started once for every test of the package (TestMain) and
// always taken down, restoring the host: by TestMain, on SIGINT/SIGTERM, and,
// should the test binary die without running its deferred code (a panic in
// a test, go test's timeout), by a guard process that waits for the test
// binary to exit.
//
// Needs root. SMAREGI_NODE_TEST=0 skips the package; otherwise, as root, it
// runs, and anything missing fails it.
package node

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// skipReason, when set, skips every test of the package (not root, or
// switched off).
var skipReason string

// env is what TestMain prepared for the tests.
var env struct {
	repo       string // repository root
	nodeDir    string // hack/node.sh's state directory
	kubeconfig string
	binDir     string // kubectl and friends
	ctrdSock   string // containerd's socket
	helm       string
	work       string // scratch directory of this run (binaries, logs)
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	switch {
	case os.Getenv("SMAREGI_NODE_TEST") == "0":
		skipReason = "SMAREGI_NODE_TEST=0: the one-node cluster tests are switched off"
		return m.Run()
	case os.Geteuid() != 0:
		skipReason = "not root: a kubelet and a container runtime need root (run as root, or SMAREGI_NODE_TEST=0 to say so)"
		return m.Run()
	}
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "test/node: setup:", err)
		return 1
	}

	down := nodeDown()
	defer down()
	// Ctrl-C or a CI runner's SIGTERM: take the node down, then leave.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "test/node: %v: taking the node down\n", s)
		down()
		os.Exit(1)
	}()

	start := time.Now()
	out, err := runOut(exec.Command(filepath.Join(env.repo, "hack", "node.sh"), "up"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "test/node: hack/node.sh up: %v\n", err)
		return 1
	}
	env.kubeconfig = strings.TrimSpace(out)
	fmt.Fprintf(os.Stderr, "test/node: node up in %s\n", time.Since(start).Round(time.Second))
	if err := loadNodeEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "test/node:", err)
		return 1
	}
	if err := prepareArtefacts(); err != nil {
		fmt.Fprintln(os.Stderr, "test/node:", err)
		return 1
	}
	return m.Run()
}

func setup() error {
	repo, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	env.repo = repo
	env.nodeDir = os.Getenv("SMAREGI_NODE_DIR")
	if env.nodeDir == "" {
		env.nodeDir = "/tmp/smaregi-node"
		if err := os.Setenv("SMAREGI_NODE_DIR", env.nodeDir); err != nil {
			return err
		}
	}
	env.work, err = os.MkdirTemp("", "smaregi-node-test-")
	if err != nil {
		return err
	}
	env.helm = os.Getenv("HELM")
	if env.helm == "" {
		out, err := runOut(exec.Command(filepath.Join(repo, "hack", "build-helm.sh")))
		if err != nil {
			return fmt.Errorf("hack/build-helm.sh: %w", err)
		}
		env.helm = strings.TrimSpace(out)
	}
	return nil
}

// nodeDown returns the teardown, run once whichever way the run ends. A
// guard process (its own session, so Ctrl-C does not reach it) runs
// hack/node.sh down should this process die without it; it is ended by PID
// once the teardown here has run.
func nodeDown() func() {
	script := filepath.Join(env.repo, "hack", "node.sh")
	keep := os.Getenv("SMAREGI_NODE_KEEP")
	guard := exec.Command("/bin/sh", "-c",
		`while kill -0 "$0" 2>/dev/null; do sleep 1; done; "$1" down; [ -n "$3" ] || rm -rf "$2"`,
		strconv.Itoa(os.Getpid()), script, env.work, keep)
	guard.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	guardLog, _ := os.Create(filepath.Join(os.TempDir(), "smaregi-node-guard.log"))
	guard.Stdout, guard.Stderr = guardLog, guardLog
	if err := guard.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "test/node: no guard process (teardown only by this process):", err)
		guard = nil
	}
	var once sync.Once
	return func() { once.Do(func() { teardown(script, guard) }) }
}

func teardown(script string, guard *exec.Cmd) {
	if out, err := runOut(exec.Command(script, "down")); err != nil {
		fmt.Fprintf(os.Stderr, "test/node: hack/node.sh down: %v\n%s", err, out)
		return // the guard tries again once we exit
	}
	if guard != nil {
		_ = guard.Process.Kill()
		_, _ = guard.Process.Wait()
	}
	if env.work != "" && os.Getenv("SMAREGI_NODE_KEEP") == "" {
		_ = os.RemoveAll(env.work)
	}
}

// loadNodeEnv reads `hack/node.sh env`: kubectl's directory and
// containerd's socket.
func loadNodeEnv() error {
	out, err := runOut(exec.Command(filepath.Join(env.repo, "hack", "node.sh"), "env"))
	if err != nil {
		return fmt.Errorf("hack/node.sh env: %w", err)
	}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			continue
		}
		switch k {
		case "CONTAINERD_ADDRESS":
			env.ctrdSock = v
		case "PATH":
			env.binDir, _, _ = strings.Cut(v, ":")
		}
	}
	if env.ctrdSock == "" || env.binDir == "" {
		return fmt.Errorf("hack/node.sh env said neither CONTAINERD_ADDRESS nor PATH: %q", out)
	}
	return nil
}

// dieWithUs makes a child process (simulator, port-forward, helm) get
// SIGKILL when the test binary dies without stopping it (a panic, go
// test's timeout): the guard takes the node down, nothing else is left.
func dieWithUs(cmd *exec.Cmd) *exec.Cmd {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// runOut runs cmd with its stderr passed through (progress) and returns its
// stdout.
func runOut(cmd *exec.Cmd) (string, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	err := cmd.Run()
	return out.String(), err
}

// requireNode skips the test when the package is switched off.
func requireNode(t *testing.T) {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
}

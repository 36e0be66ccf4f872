// vpc-cni: the executable the container runtime calls. A small static program (no runtime to
// start, ~1 ms) that forwards the CNI env and stdin to the already-running vpc-ipamd over its
// Unix socket (POST /v1/cni) and relays the answer: the daemon runs every CNI semantic in
// TypeScript (src/cni/run.ts). When the daemon cannot be reached (socket missing or refused, or a
// daemon without /v1/cni), it runs the Node plugin beside it (vpc-cni-node) with the same env and
// stdin instead, so a DEL still cleans up while the daemon is down (an ADD with nothing on the
// socket gets "try again later" at once: nothing could allocate its IP). It forwards only CNI_*
// variables and holds no credentials.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	defaultSocket  = "/run/vpc-ipam/ipamd.sock"
	defaultTimeout = 30 * time.Second
	// The daemon may wait for the pool to grow and then wire the pod: give it its own
	// per-request timeout plus this margin before giving up.
	margin = 15 * time.Second
	// A GC's config lists every attachment on the node (the daemon's MAX_GC_BODY_BYTES).
	maxStdin    = 8 << 20
	maxResponse = 1 << 20
	fallback    = "vpc-cni-node"
	// CNI "try again later".
	codeTryAgain = 11
)

// The variables the daemon accepts (src/ipam-daemon/cni-host.ts CNI_ENV_KEYS).
var forwarded = []string{"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"}

type netConf struct {
	CniVersion string          `json:"cniVersion"`
	SocketPath string          `json:"socketPath"`
	TimeoutMs  json.RawMessage `json:"timeoutMs"`
}

// The final answer (stdout + exitCode), or a plan to apply and report on (apply + ticket).
type answer struct {
	Stdout   *string         `json:"stdout"`
	ExitCode *int            `json:"exitCode"`
	Apply    json.RawMessage `json:"apply"`
	Ticket   string          `json:"ticket"`
}

// The plan format apply.go executes (src/ipam-daemon/cni-host.ts NET_PLAN_VERSION; 2 adds DEL's
// deletions and the onlyIfRoute precondition).
const planVersion = 2

// A plan, then (after a "File exists" clean-up) at most a few more: never loop forever.
const maxPlans = 4

// errUnreachable: nothing was sent (or the daemon has no /v1/cni): the fallback may run.
// errNoDaemon (one of those): nothing listens on the socket.
var (
	errUnreachable = errors.New("daemon unreachable")
	errNoDaemon    = fmt.Errorf("%w: no daemon on the socket", errUnreachable)
)

func main() {
	stdin, err := io.ReadAll(io.LimitReader(os.Stdin, maxStdin+1))
	if err != nil || len(stdin) > maxStdin {
		fail("", fmt.Sprintf("cannot read the network config from stdin (at most %d bytes)", maxStdin), 7)
	}
	var conf netConf
	badJSON := json.Unmarshal(stdin, &conf) != nil // the daemon's (or fallback's) to report
	socket := defaultSocket
	if strings.HasPrefix(conf.SocketPath, "/") {
		socket = conf.SocketPath
	}
	timeout := defaultTimeout
	if ms, err := strconv.Atoi(string(conf.TimeoutMs)); err == nil && ms > 0 {
		timeout = time.Duration(ms) * time.Millisecond
	}
	env := map[string]string{}
	for _, k := range forwarded {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	body, _ := json.Marshal(map[string]any{"env": env, "stdin": string(stdin), "apply": planVersion})
	deadline := time.Now().Add(timeout + margin)
	out, err := forward(socket, "/v1/cni", body, deadline)
	if errors.Is(err, errNoDaemon) && env["CNI_COMMAND"] == "ADD" && !badJSON {
		// The fallback could only say the same after starting a 126 MB executable (there is no
		// daemon to allocate from), on every retry of the runtime while the daemon restarts.
		fail(conf.CniVersion, fmt.Sprintf("vpc-ipamd is not reachable on %s (%v); try again later", socket, err), codeTryAgain)
	}
	if errors.Is(err, errUnreachable) {
		os.Exit(runFallback(stdin, err))
	}
	for plans := 0; err == nil && out.Apply != nil; plans++ {
		if plans == maxPlans {
			fail(conf.CniVersion, "vpc-ipamd kept sending wiring plans", codeTryAgain)
		}
		var failed any // null: applied
		if applyErr := applyPlan(out.Apply); applyErr != nil {
			failed = applyErr.Error()
		}
		body, _ = json.Marshal(map[string]any{"ticket": out.Ticket, "error": failed})
		out, err = forward(socket, "/v1/cni/applied", body, deadline)
	}
	if err == nil && (out.Stdout == nil || out.ExitCode == nil) {
		err = fmt.Errorf("bad answer from the daemon (no stdout/exitCode)")
	}
	if err != nil {
		fail(conf.CniVersion, fmt.Sprintf("vpc-ipamd on %s did not answer: %v", socket, err), codeTryAgain)
	}
	os.Stdout.WriteString(*out.Stdout)
	os.Exit(*out.ExitCode)
}

// forward sends one HTTP/1.1 request over the socket and reads the whole answer (the daemon
// closes the connection after it: Connection: close).
func forward(socket, path string, body []byte, deadline time.Time) (answer, error) {
	var a answer
	conn, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOENT || errno == syscall.ECONNREFUSED || errno == syscall.EACCES) {
			return a, fmt.Errorf("%w: %v", errNoDaemon, err)
		}
		return a, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: vpc-ipamd\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		return a, err
	}
	raw, err := io.ReadAll(io.LimitReader(conn, maxResponse))
	if err != nil {
		return a, err
	}
	head, payload, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return a, fmt.Errorf("incomplete HTTP answer (%d bytes)", len(raw))
	}
	status := strings.SplitN(string(bytes.SplitN(head, []byte("\r\n"), 2)[0]), " ", 3)
	if len(status) < 2 {
		return a, fmt.Errorf("bad HTTP status line %q", status)
	}
	if status[1] == "404" && path == "/v1/cni" {
		return a, fmt.Errorf("%w: the daemon has no /v1/cni", errUnreachable)
	}
	if status[1] != "200" {
		return a, fmt.Errorf("HTTP %s: %s", status[1], strings.TrimSpace(string(payload)))
	}
	if err := json.Unmarshal(payload, &a); err != nil || (a.Apply == nil && (a.Stdout == nil || a.ExitCode == nil)) {
		return a, fmt.Errorf("bad answer from the daemon: %.200q", payload)
	}
	return a, nil
}

// runFallback runs the Node plugin beside this executable with our env and stdin.
func runFallback(stdin []byte, why error) int {
	self, err := os.Executable()
	if err != nil {
		fail("", fmt.Sprintf("%v; and cannot find the fallback plugin: %v", why, err), codeTryAgain)
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(self), fallback))
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fail("", fmt.Sprintf("%v; and the fallback plugin %s did not run: %v", why, cmd.Path, err), codeTryAgain)
	}
	return 0
}

// fail prints a CNI error result and exits 1.
func fail(version, msg string, code int) {
	if version == "" {
		version = "1.1.0"
	}
	out, _ := json.Marshal(map[string]any{"cniVersion": version, "code": code, "msg": msg})
	os.Stdout.Write(append(out, '\n'))
	os.Exit(1)
}

// vpc-cni: the executable the container runtime calls. A small static program (no runtime to
// start, ~1 ms) that forwards the CNI env and stdin to the already-running vpc-ipamd over its
// Unix socket (POST /v1/cni, in the socket's length-prefixed frames) and relays the answer: the
// daemon runs every CNI semantic in TypeScript (src/cni/run.ts). When the daemon cannot be reached (socket missing or refused, or a
// daemon without /v1/cni), it runs the Node plugin beside it (vpc-cni-node) with the same env and
// stdin instead, so a DEL still cleans up while the daemon is down (an ADD with nothing on the
// socket gets "try again later" at once: nothing could allocate its IP). It forwards only CNI_*
// variables and holds no credentials.
package main

import (
	"bytes"
	"encoding/binary"
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
	// per-request timeout plus this margin before giving up (answerMarginMs in the config).
	defaultMargin = 15 * time.Second
	// How long connecting to the socket may take (connectTimeoutMs in the config).
	defaultConnect = 2 * time.Second
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
	// Validated by the daemon (src/cni/config.ts); here a bad value means the default.
	ConnectTimeoutMs json.RawMessage `json:"connectTimeoutMs"`
	AnswerMarginMs   json.RawMessage `json:"answerMarginMs"`
}

// millis reads a whole number of milliseconds >= min from the config, else def.
func millis(raw json.RawMessage, min int, def time.Duration) time.Duration {
	if ms, err := strconv.Atoi(string(raw)); err == nil && ms >= min {
		return time.Duration(ms) * time.Millisecond
	}
	return def
}

// The final answer (stdout + exitCode), or a plan to apply and report on (apply + ticket).
type answer struct {
	Stdout   *string         `json:"stdout"`
	ExitCode *int            `json:"exitCode"`
	Apply    json.RawMessage `json:"apply"`
	Ticket   string          `json:"ticket"`
}

// The plan format apply.go executes (src/ipam-daemon/cni-host.ts NET_PLAN_VERSION; 2 adds DEL's
// deletions and the onlyIfRoute precondition, 3 routeDel and the links in the report).
const planVersion = 3

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
	timeout := millis(conf.TimeoutMs, 1, defaultTimeout)
	margin := millis(conf.AnswerMarginMs, 0, defaultMargin)
	dial := millis(conf.ConnectTimeoutMs, 1, defaultConnect)
	env := map[string]string{}
	for _, k := range forwarded {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	body, _ := json.Marshal(map[string]any{"env": env, "stdin": string(stdin), "apply": planVersion})
	deadline := time.Now().Add(timeout + margin)
	out, err := forward(socket, dial, "/v1/cni", body, deadline)
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
		links, applyErr := applyPlan(out.Apply)
		if applyErr != nil {
			failed = applyErr.Error()
		}
		body, _ = json.Marshal(map[string]any{"ticket": out.Ticket, "error": failed, "links": links})
		out, err = forward(socket, dial, "/v1/cni/applied", body, deadline)
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

// forward connects within dial and sends one request in the daemon's frames (src/ipam-daemon/frame.ts)
// and reads its answer; a daemon older than frames gets it again as HTTP/1.1.
func forward(socket string, dial time.Duration, path string, body []byte, deadline time.Time) (answer, error) {
	var a answer
	conn, err := net.DialTimeout("unix", socket, dial)
	if err != nil {
		var errno syscall.Errno
		if errors.As(err, &errno) && (errno == syscall.ENOENT || errno == syscall.ECONNREFUSED || errno == syscall.EACCES) {
			return a, fmt.Errorf("%w: %v", errNoDaemon, err)
		}
		return a, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	status, payload, err := framedRoundTrip(conn, path, body)
	if errors.Is(err, errHTTPOnly) {
		// It refused the frame unread (HTTP 400): nothing happened, so sending again is safe.
		conn.Close()
		if conn, err = net.DialTimeout("unix", socket, dial); err != nil {
			return a, err
		}
		defer conn.Close()
		_ = conn.SetDeadline(deadline)
		status, payload, err = httpRoundTrip(conn, path, body)
	}
	if err != nil {
		return a, err
	}
	if status == 404 && path == "/v1/cni" {
		return a, fmt.Errorf("%w: the daemon has no /v1/cni", errUnreachable)
	}
	if status != 200 {
		return a, fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(payload)))
	}
	if err := json.Unmarshal(payload, &a); err != nil || (a.Apply == nil && (a.Stdout == nil || a.ExitCode == nil)) {
		return a, fmt.Errorf("bad answer from the daemon: %.200q", payload)
	}
	return a, nil
}

// The frame header: magic, version, payload length (u32 big-endian).
const (
	frameMagic   = 0xfa
	frameVersion = 1
	frameHeader  = 6
)

var errHTTPOnly = errors.New("the daemon speaks only HTTP/1.1")

// framedRoundTrip sends "POST <path>\n<body>" as one frame and reads the answer frame
// ("<status>\n<JSON>"). The connection stays open; the caller closes it.
func framedRoundTrip(conn net.Conn, path string, body []byte) (int, []byte, error) {
	head := "POST " + path + "\n"
	req := make([]byte, frameHeader, frameHeader+len(head)+len(body))
	req[0], req[1] = frameMagic, frameVersion
	binary.BigEndian.PutUint32(req[2:], uint32(len(head)+len(body)))
	req = append(append(req, head...), body...)
	if _, err := conn.Write(req); err != nil {
		return 0, nil, err
	}
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("no answer frame: %w", err)
	}
	if string(hdr[:5]) == "HTTP/" {
		return 0, nil, errHTTPOnly
	}
	if hdr[0] != frameMagic || hdr[1] != frameVersion {
		return 0, nil, fmt.Errorf("not an answer frame (% x)", hdr)
	}
	n := binary.BigEndian.Uint32(hdr[2:])
	if n > maxResponse {
		return 0, nil, fmt.Errorf("answer frame of %d bytes (at most %d)", n, maxResponse)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(conn, payload); err != nil {
		return 0, nil, fmt.Errorf("truncated answer frame: %w", err)
	}
	line, rest, _ := bytes.Cut(payload, []byte("\n"))
	status, err := strconv.Atoi(string(line))
	if err != nil {
		return 0, nil, fmt.Errorf("bad status in answer frame %.40q", line)
	}
	return status, rest, nil
}

// httpRoundTrip sends one HTTP/1.1 request and reads the whole answer (the daemon closes the
// connection after it: Connection: close).
func httpRoundTrip(conn net.Conn, path string, body []byte) (int, []byte, error) {
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: vpc-ipamd\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, len(body))
	if _, err := conn.Write(append([]byte(req), body...)); err != nil {
		return 0, nil, err
	}
	raw, err := io.ReadAll(io.LimitReader(conn, maxResponse))
	if err != nil {
		return 0, nil, err
	}
	head, payload, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	if !ok {
		return 0, nil, fmt.Errorf("incomplete HTTP answer (%d bytes)", len(raw))
	}
	status := strings.SplitN(string(bytes.SplitN(head, []byte("\r\n"), 2)[0]), " ", 3)
	if len(status) < 2 {
		return 0, nil, fmt.Errorf("bad HTTP status line %q", status)
	}
	code, err := strconv.Atoi(status[1])
	if err != nil {
		return 0, nil, fmt.Errorf("bad HTTP status line %q", status)
	}
	return code, payload, nil
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

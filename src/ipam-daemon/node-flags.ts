// V8 flags the daemon runs with. Why: under a burst of requests V8 grows the young generation to
// 2 x 16 MiB and old space past what is live, and keeps both: RSS climbed 106 -> 176 MiB over 32k
// socket cycles while the live heap stayed ~14 MiB. --optimize-for-size keeps the young generation
// small and shrinks the heap after GC (bench/results/ipamd-socket.md has the curve).
export const DAEMON_NODE_FLAGS: readonly string[] = ['--optimize-for-size'];

// V8 flags the daemon runs with: the chart's command and the image's CMD pass them (test/helm
// checks both against this list), and bench/ipamd-socket.ts runs its daemon with them. Why: under
// a burst of requests V8 grows the young generation to 2 x 16 MiB and old space past what is live,
// and keeps both: RSS climbed 106 -> 176 MiB over 32k socket cycles while the live heap stayed
// ~14 MiB. --optimize-for-size keeps the young generation small and gives memory back after GC
// (bench/results/ipamd-socket.md has the curve). A smaller RSS also makes every fork of an `ip`
// process cheaper: its page tables are copied.
export const DAEMON_NODE_FLAGS: readonly string[] = ['--optimize-for-size'];

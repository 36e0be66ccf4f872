// Shared by the benchmarks: percentiles that say what they are, and verdicts computed from numbers.

/** Nearest-rank percentile of unsorted samples. */
export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
}

export const median = (xs: readonly number[]): number => percentile(xs, 50);

/** Fewer samples than this and a p99 is just the maximum: call it that. */
export const P99_MIN_SAMPLES = 1000;

/** The tail of a sample set: p99 with enough samples, else the max, with its label. */
export function tail(xs: readonly number[]): { label: 'p99' | 'max'; value: number } {
  return xs.length >= P99_MIN_SAMPLES
    ? { label: 'p99', value: percentile(xs, 99) }
    : { label: 'max', value: Math.max(...xs) };
}

/** "**met**" / "**not met**" from a comparison, with the numbers that decided it. */
export function verdict(met: boolean, goal: string, measured: string): string {
  return `- ${goal}: **${met ? 'met' : 'not met'}** (${measured})`;
}

export const fmt = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

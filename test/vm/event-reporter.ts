// A node:test reporter for runs inside the VM: one JSON line per finished test or suite (name,
// nesting, pass/fail/skip/todo, duration, the failure's message and stack) and per diagnostic, so
// the host can replay the run as its own subtests (test/helpers/vm.ts). Used with
// `--test-reporter=./test/vm/event-reporter.ts --test-reporter-destination=<file>`.

export interface VmTestEvent {
  kind: 'pass' | 'fail' | 'diagnostic';
  name: string;
  nesting: number;
  file?: string;
  suite?: boolean;
  skip?: string | boolean;
  todo?: string | boolean;
  durationMs?: number;
  error?: { message: string; stack?: string };
}

interface Details {
  duration_ms?: number;
  type?: string;
  error?: Error & { cause?: unknown };
}

function describeError(err: Details['error']): VmTestEvent['error'] {
  if (!err) return undefined;
  // node wraps the thrown value in ERR_TEST_FAILURE; the cause is what the test threw.
  const inner = err.cause instanceof Error ? err.cause : err;
  return { message: inner.message, ...(inner.stack ? { stack: inner.stack } : {}) };
}

export default async function* eventReporter(
  source: AsyncIterable<{ type: string; data: Record<string, unknown> }>,
): AsyncGenerator<string> {
  for await (const { type, data } of source) {
    const nesting = Number(data.nesting ?? 0);
    const file = typeof data.file === 'string' ? data.file : undefined;
    if (type === 'test:pass' || type === 'test:fail') {
      const details = (data.details ?? {}) as Details;
      const event: VmTestEvent = {
        kind: type === 'test:pass' ? 'pass' : 'fail',
        name: String(data.name),
        nesting,
        ...(file ? { file } : {}),
        ...(details.type === 'suite' ? { suite: true } : {}),
        ...(data.skip !== undefined ? { skip: data.skip as string | boolean } : {}),
        ...(data.todo !== undefined ? { todo: data.todo as string | boolean } : {}),
        ...(details.duration_ms !== undefined ? { durationMs: details.duration_ms } : {}),
      };
      const error = type === 'test:fail' ? describeError(details.error) : undefined;
      if (error) event.error = error;
      yield `${JSON.stringify(event)}\n`;
    } else if (type === 'test:diagnostic' && nesting > 0) {
      // nesting 0 diagnostics are the run's own totals; the host prints its own
      yield `${JSON.stringify({ kind: 'diagnostic', name: String(data.message), nesting })}\n`;
    } else if (type === 'test:stdout' && typeof data.message === 'string') {
      // a suite's own "# ..." lines (measurements it prints) travel as diagnostics
      for (const line of data.message.split('\n')) {
        if (line.startsWith('# '))
          yield `${JSON.stringify({ kind: 'diagnostic', name: line.slice(2), nesting })}\n`;
      }
    }
  }
}

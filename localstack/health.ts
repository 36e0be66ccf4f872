// Is LocalStack's EC2 usable at this endpoint? Shared by the test helper and scripts/status.ts.

export const START_HINT = 'start it with `bash localstack/start.sh` (or set VPC_IPAM_EC2_ENDPOINT)';

/** Resolves when EC2 is available; otherwise rejects with an error naming the reason. */
export async function checkLocalStack(endpoint: string): Promise<void> {
  let body: unknown;
  try {
    const res = await fetch(new URL('/_localstack/health', endpoint), { signal: AbortSignal.timeout(5000) });
    if (!res.ok) throw new Error(`HTTP ${res.status} from /_localstack/health`);
    body = await res.json();
  } catch (err) {
    const reason =
      err instanceof Error ? (err.cause instanceof Error ? err.cause.message : err.message) : String(err);
    throw new Error(`LocalStack is not reachable at ${endpoint} (${reason}): ${START_HINT}`);
  }
  const ec2 = (body as { services?: Record<string, string> }).services?.ec2;
  if (ec2 !== 'available' && ec2 !== 'running') {
    throw new Error(
      `LocalStack at ${endpoint} is up but EC2 is ${ec2 ?? 'not listed'} (needs SERVICES=ec2,sts): ${START_HINT}`,
    );
  }
}

// Pure leader-election decision over a coordination.k8s.io Lease, client-go style: a lease held by
// someone else is judged expired by *our* clock, from the moment we last saw its record change,
// so clock skew between replicas cannot make two of them leaders at once.

export interface LeaseRecord {
  holderIdentity: string | null;
  leaseDurationSeconds: number;
  /** renewTime as written by the holder (opaque to us; only its changes matter). */
  renewTime: string | null;
  leaseTransitions: number;
}

export interface Observation {
  /** The record as last read. */
  record: LeaseRecord;
  /** Our clock when that record was first seen in this exact state. */
  observedAt: number;
}

export type LeaseAction =
  | { kind: 'create' }
  | { kind: 'renew' }
  | { kind: 'takeover'; previousHolder: string | null }
  | { kind: 'wait'; holder: string; expiresInMs: number };

export function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.renewTime === b.renewTime &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.leaseTransitions === b.leaseTransitions
  );
}

/** Keeps the old observation time while the record is unchanged; restarts it on any change. */
export function observe(previous: Observation | null, record: LeaseRecord, now: number): Observation {
  if (previous && sameRecord(previous.record, record)) return previous;
  return { record, observedAt: now };
}

export function decideLease(identity: string, observation: Observation | null, now: number): LeaseAction {
  if (!observation) return { kind: 'create' };
  const { record, observedAt } = observation;
  if (record.holderIdentity === identity) return { kind: 'renew' };
  if (!record.holderIdentity) return { kind: 'takeover', previousHolder: null };
  const expiresAt = observedAt + record.leaseDurationSeconds * 1000;
  if (now >= expiresAt) return { kind: 'takeover', previousHolder: record.holderIdentity };
  return { kind: 'wait', holder: record.holderIdentity, expiresInMs: expiresAt - now };
}

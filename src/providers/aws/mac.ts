// MAC addresses as EC2 reports them, made usable.
//
// Real EC2 returns well-formed MACs. LocalStack 4.8 (moto) formats them wrongly: each random octet
// is printed in decimal followed by a literal "02x" ("02:00:00:24002x:18302x:19302x" means
// 02:00:00:f0:b7:c1), and DescribeInstances shows one constant, multicast MAC for every primary ENI.
// We repair moto's format back to the bytes it meant, so the same ENI always has the same valid
// MAC everywhere (provider, IMDS fake, e2e netns), and fall back to a stable locally administered
// address derived from the ENI id for anything else unparsable.

import { createHash } from 'node:crypto';

const VALID_MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const MOTO_OCTET = /^(\d{1,3})02x$/;

export function isValidMac(mac: string): boolean {
  return VALID_MAC.test(mac);
}

/**
 * The interface's MAC in canonical lower-case form. `interfaceId` seeds the fallback for MACs that
 * cannot be repaired (without it, the raw string does).
 */
export function normalizeMac(raw: string | undefined, interfaceId?: string): string {
  const mac = (raw ?? '').trim().toLowerCase();
  if (isValidMac(mac)) return mac;
  const parts = mac.split(':');
  if (parts.length === 6) {
    const octets = parts.map((p) => {
      if (/^[0-9a-f]{2}$/.test(p)) return p;
      const m = MOTO_OCTET.exec(p);
      const n = m ? Number(m[1]) : Number.NaN;
      return n >= 0 && n <= 255 ? n.toString(16).padStart(2, '0') : undefined;
    });
    if (octets.every((o) => o !== undefined)) return octets.join(':');
  }
  // Locally administered (bit 1), unicast (bit 0 clear), stable per interface id.
  const h = createHash('sha256')
    .update(interfaceId ?? raw ?? '')
    .digest();
  const bytes = [0x02, h[0]!, h[1]!, h[2]!, h[3]!, h[4]!];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

// Reads the Azure Instance Metadata Service (GET /metadata/instance, header Metadata: true) and
// validates the parts we use. IMDS does not know NIC resource ids or VNet prefixes: those come
// from ARM, matched by the VM's resource id and the NICs' MACs.
import { normalizeMac } from './arm-ids.ts';

export const IMDS_API_VERSION = '2021-02-01';
export const DEFAULT_AZURE_IMDS_ENDPOINT = 'http://169.254.169.254';

export interface AzureVmMetadata {
  vmId: string;
  name: string;
  /** ARM id of the VM (…/Microsoft.Compute/virtualMachines/<name>, or a scale-set instance). */
  resourceId: string;
  location: string;
  /** '' when the VM is not zonal. */
  zone: string;
  resourceGroup: string;
  subscriptionId: string;
  vmSize: string;
  vmScaleSetName: string;
  /** In the VM's NIC order: index 0 is the primary NIC. */
  interfaces: { mac: string; ips: string[]; subnetCidr?: string }[];
}

function str(obj: Record<string, unknown>, key: string, where: string, required = true): string {
  const v = obj[key];
  if (typeof v === 'string' && (v !== '' || !required)) return v;
  if (v === undefined && !required) return '';
  throw new Error(`Azure IMDS answer lacks ${where}.${key}`);
}

/** Validate and reduce an IMDS /metadata/instance document. */
export function parseInstanceMetadata(doc: unknown): AzureVmMetadata {
  if (typeof doc !== 'object' || doc === null) throw new Error('Azure IMDS answer is not a JSON object');
  const d = doc as { compute?: Record<string, unknown>; network?: { interface?: unknown } };
  const c = d.compute;
  if (!c || typeof c !== 'object') throw new Error('Azure IMDS answer lacks compute');
  const rawIfs = d.network?.interface;
  if (!Array.isArray(rawIfs) || rawIfs.length === 0)
    throw new Error('Azure IMDS answer lacks network.interface[]');
  const interfaces = rawIfs.map((raw, i) => {
    const r = raw as { macAddress?: unknown; ipv4?: { ipAddress?: unknown; subnet?: unknown } };
    if (typeof r.macAddress !== 'string')
      throw new Error(`Azure IMDS network.interface[${i}] lacks macAddress`);
    const ips = Array.isArray(r.ipv4?.ipAddress)
      ? (r.ipv4.ipAddress as { privateIpAddress?: unknown }[])
          .map((a) => a.privateIpAddress)
          .filter((a): a is string => typeof a === 'string' && a !== '')
      : [];
    const sub = Array.isArray(r.ipv4?.subnet)
      ? (r.ipv4.subnet as { address?: unknown; prefix?: unknown }[])[0]
      : undefined;
    const subnetCidr =
      sub &&
      typeof sub.address === 'string' &&
      (typeof sub.prefix === 'string' || typeof sub.prefix === 'number')
        ? `${sub.address}/${sub.prefix}`
        : undefined;
    return { mac: normalizeMac(r.macAddress), ips, ...(subnetCidr ? { subnetCidr } : {}) };
  });
  return {
    vmId: str(c, 'vmId', 'compute'),
    name: str(c, 'name', 'compute'),
    resourceId: str(c, 'resourceId', 'compute'),
    location: str(c, 'location', 'compute'),
    zone: str(c, 'zone', 'compute', false),
    resourceGroup: str(c, 'resourceGroupName', 'compute'),
    subscriptionId: str(c, 'subscriptionId', 'compute'),
    vmSize: str(c, 'vmSize', 'compute'),
    vmScaleSetName: str(c, 'vmScaleSetName', 'compute', false),
    interfaces,
  };
}

export interface ImdsClientOptions {
  endpoint?: string;
  timeoutMs?: number;
  /** Attempts for 429/5xx/network failures (IMDS throttles at 5 requests/s). */
  attempts?: number;
  sleep?: (ms: number) => Promise<void>;
}

export async function fetchInstanceMetadata(opts: ImdsClientOptions = {}): Promise<AzureVmMetadata> {
  const endpoint = (opts.endpoint ?? DEFAULT_AZURE_IMDS_ENDPOINT).replace(/\/+$/, '');
  const url = `${endpoint}/metadata/instance?api-version=${IMDS_API_VERSION}`;
  const attempts = opts.attempts ?? 3;
  const sleep = opts.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  let last: unknown;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      // redirect: 'error' as IMDS never redirects and a proxy must not be followed.
      const res = await fetch(url, {
        headers: { Metadata: 'true' },
        redirect: 'error',
        signal: AbortSignal.timeout(opts.timeoutMs ?? 2000),
      });
      const text = await res.text();
      if (res.ok) return parseInstanceMetadata(JSON.parse(text));
      last = new Error(`Azure IMDS ${url} answered ${res.status}: ${text.slice(0, 200)}`);
      if (res.status !== 429 && res.status < 500) break;
    } catch (err) {
      last = err instanceof SyntaxError ? new Error(`Azure IMDS ${url} answered invalid JSON`) : err;
      if (err instanceof SyntaxError || (err instanceof Error && err.message.startsWith('Azure IMDS answer')))
        break;
    }
    if (attempt < attempts) await sleep(200 * 2 ** (attempt - 1));
  }
  throw new Error(
    `cannot read Azure instance metadata from ${endpoint}: ${last instanceof Error ? last.message : String(last)}`,
    {
      cause: last,
    },
  );
}

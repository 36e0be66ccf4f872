// Node identity from the EC2 instance metadata service (IMDSv2 token flow, via the AWS SDK's
// MetadataService). The endpoint comes from config so the same code reads real IMDS on EC2 and
// our fake in tests.

import { MetadataService } from '@aws-sdk/ec2-metadata-service';
import { OtherProviderError } from '../errors.ts';

export const DEFAULT_IMDS_ENDPOINT = 'http://169.254.169.254';

export interface ImdsIdentity {
  instanceId: string;
  instanceType: string;
  availabilityZone: string;
  region: string;
  primaryMac: string;
  primaryInterfaceId: string;
  primaryIp: string;
  subnetId: string;
  subnetCidr: string;
  vpcId: string;
  vpcCidrs: string[];
  securityGroupIds: string[];
}

export interface ImdsReaderOptions {
  endpoint?: string;
  /** Per-request timeout (ms); default 2000. */
  timeoutMs?: number;
  /** Retries per request after the first try; default 2. */
  retries?: number;
}

const lines = (s: string) =>
  s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');

/**
 * One IMDSv2 reader (the SDK client + our error wrapping) for the given endpoint. It takes ONE
 * token for all its reads (the SDK would PUT a new one before every GET: twice the requests, which
 * a daemon restart and every drift resync pay), and a new one if IMDS refuses it (401).
 */
function imdsGetter(options: ImdsReaderOptions): (path: string) => Promise<string> {
  const endpoint = options.endpoint ?? DEFAULT_IMDS_ENDPOINT;
  const service = new MetadataService({
    endpoint,
    httpOptions: { timeout: options.timeoutMs ?? 2000 },
    retries: options.retries ?? 2,
    backoff: (n) => 0.1 * 2 ** n,
    // We send the token ourselves (v2 only: a GET never goes without one).
    disableFetchToken: true,
    ec2MetadataV1Disabled: false,
  });
  let token: Promise<string> | null = null;
  const currentToken = () => {
    token ??= service.fetchMetadataToken().catch((err: unknown) => {
      token = null;
      throw err;
    });
    return token;
  };
  const unauthorized = (err: unknown) =>
    (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 401;
  // No leading slash: the SDK prefixes the endpoint's path ("/").
  return async (path: string): Promise<string> => {
    try {
      for (let attempt = 0; ; attempt++) {
        const t = await currentToken();
        try {
          const headers = { 'x-aws-ec2-metadata-token': t };
          return (await service.request(`latest/meta-data/${path}`, { headers })).trim();
        } catch (err) {
          if (attempt > 0 || !unauthorized(err)) throw err;
          if (token) token = null; // expired or refused: one new token, once
        }
      }
    } catch (err) {
      throw new OtherProviderError(
        `IMDS ${endpoint} GET ${path} failed: ${err instanceof Error ? err.message : String(err)}`,
        { cloudCode: 'IMDS', cause: err },
      );
    }
  };
}

export interface ImdsInterface {
  interfaceId: string;
  mac: string;
  deviceIndex: number;
  /** local-ipv4s: the primary first. */
  ips: string[];
}

/**
 * Every interface IMDS lists for the instance (network/interfaces/macs/<mac>/...): free to read,
 * so the daemon's drift resync uses it instead of DescribeNetworkInterfaces. IMDS may lag the
 * EC2 API by a few seconds.
 */
export async function readImdsInterfaces(options: ImdsReaderOptions = {}): Promise<ImdsInterface[]> {
  const get = imdsGetter(options);
  const macs = lines(await get('network/interfaces/macs/')).map((l) => l.replace(/\/$/, ''));
  const out = await Promise.all(
    macs.map(async (mac) => {
      const m = `network/interfaces/macs/${mac}`;
      const [interfaceId, device, ips] = await Promise.all([
        get(`${m}/interface-id`),
        get(`${m}/device-number`),
        get(`${m}/local-ipv4s`),
      ]);
      const deviceIndex = Number(device);
      if (!Number.isInteger(deviceIndex) || deviceIndex < 0) {
        throw new OtherProviderError(`IMDS: device-number of ${mac} is ${JSON.stringify(device)}`, {
          cloudCode: 'IMDS',
        });
      }
      return { interfaceId, mac: mac.toLowerCase(), deviceIndex, ips: lines(ips) };
    }),
  );
  return out.sort((a, b) => a.deviceIndex - b.deviceIndex);
}

export async function readImdsIdentity(options: ImdsReaderOptions = {}): Promise<ImdsIdentity> {
  const endpoint = options.endpoint ?? DEFAULT_IMDS_ENDPOINT;
  const get = imdsGetter(options);
  const [instanceId, instanceType, availabilityZone, region, mac] = await Promise.all([
    get('instance-id'),
    get('instance-type'),
    get('placement/availability-zone'),
    get('placement/region'),
    get('mac'),
  ]);
  const m = `network/interfaces/macs/${mac}`;
  const [primaryInterfaceId, localIps, subnetId, subnetCidr, vpcId, vpcCidrs, sgs] = await Promise.all([
    get(`${m}/interface-id`),
    get(`${m}/local-ipv4s`),
    get(`${m}/subnet-id`),
    get(`${m}/subnet-ipv4-cidr-block`),
    get(`${m}/vpc-id`),
    get(`${m}/vpc-ipv4-cidr-blocks`),
    get(`${m}/security-group-ids`),
  ]);
  const primaryIp = lines(localIps)[0];
  if (!primaryIp) throw new OtherProviderError(`IMDS ${endpoint}: no local-ipv4s for ${mac}`);
  return {
    instanceId,
    instanceType,
    availabilityZone,
    region,
    primaryMac: mac.toLowerCase(),
    primaryInterfaceId,
    primaryIp,
    subnetId,
    subnetCidr,
    vpcId,
    vpcCidrs: lines(vpcCidrs),
    securityGroupIds: lines(sgs),
  };
}

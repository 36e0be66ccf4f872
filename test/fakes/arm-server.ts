// A local fake of the slice of Azure Resource Manager the Azure provider uses, over HTTPS, so the
// real @azure/arm-network client (bearer tokens, LRO poller, paging, RestError) can be driven
// against it. It keeps virtual networks and NICs in memory and behaves like ARM where it matters
// to us:
//   - Microsoft.Network/networkInterfaces: list (paged with nextLink), GET, PUT (createOrUpdate as a
//     long-running operation: 200/201 + Azure-AsyncOperation, the operation answers InProgress
//     `lroPolls` times, then Succeeded), DELETE (202 + Azure-AsyncOperation + Location);
//   - virtualNetworks and virtualNetworks/subnets GET (the subnet lists its ipConfigurations);
//   - etags on NICs, If-Match -> 412 PreconditionFailed when stale;
//   - dynamic private IPs from the subnet (lowest free, Azure's five reserved addresses skipped),
//     static ones validated (in subnet, not reserved, not in use);
//   - at most 256 IP configurations per NIC; SubnetIsFull when the subnet runs out;
//   - bearer token required (401), api-version required (400);
//   - injected faults (429 + Retry-After, 412, 5xx, 403) matched by method and path.
// Error bodies are ARM's {"error":{"code","message"}} with x-ms-request-id headers.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { type Cidr, cidrContains, intToIp, isAzureReserved, parseCidr } from './arm-ipv4.ts';

export const MAX_IP_CONFIGS_PER_NIC = 256;
export const IP_CONFIG_LIMIT_CODE = 'NetworkInterfaceIpConfigurationsCountLimitReached';

export interface FakeArmOptions {
  certPem: string;
  keyPem: string;
  /** Bearer tokens accepted; any non-empty token when omitted. */
  acceptedTokens?: string[];
  /** How many polls of an async operation answer InProgress before Succeeded (default 1). */
  lroPolls?: number;
  /** NICs per page in list answers (default 50). */
  pageSize?: number;
  maxIpConfigsPerNic?: number;
}

export interface Fault {
  method?: string;
  /** Matched against the request path (without query). */
  path?: RegExp;
  status: number;
  code?: string;
  message?: string;
  retryAfterSeconds?: number;
  /** How many matching requests get the fault (default 1). */
  times?: number;
}

export interface RecordedRequest {
  method: string;
  path: string;
  status: number;
  ifMatch?: string;
  body?: unknown;
}

interface IpConfig {
  name: string;
  privateIPAddress: string;
  allocationMethod: 'Dynamic' | 'Static';
  primary: boolean;
  subnetId: string;
}

interface Nic {
  name: string;
  resourceGroup: string;
  location: string;
  etag: string;
  resourceGuid: string;
  tags: Record<string, string>;
  macAddress: string;
  primary: boolean;
  vmResourceId?: string;
  nsgId?: string;
  ipConfigs: IpConfig[];
  provisioningState: 'Succeeded' | 'Updating' | 'Deleting';
}

interface Subnet {
  id: string;
  name: string;
  vnetId: string;
  prefix: string;
  cidr: Cidr;
  nsgId?: string;
}

interface Vnet {
  id: string;
  name: string;
  resourceGroup: string;
  location: string;
  addressPrefixes: string[];
  subnets: Subnet[];
}

interface Vm {
  resourceId: string;
  vmId: string;
  name: string;
  resourceGroup: string;
  location: string;
  zone: string;
  vmSize: string;
  /** NIC names in device order (primary first). */
  nics: string[];
}

interface Operation {
  id: string;
  pollsLeft: number;
  onDone: () => void;
  done: boolean;
}

export interface NicSnapshot {
  id: string;
  name: string;
  etag: string;
  macAddress: string;
  tags: Record<string, string>;
  vmResourceId?: string;
  provisioningState: string;
  ipConfigs: IpConfig[];
}

class ArmError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const lc = (s: string) => s.toLowerCase();
const newEtag = () => `W/"${randomUUID()}"`;

export class FakeArmServer {
  readonly subscriptionId: string;
  readonly requests: RecordedRequest[] = [];
  private readonly server: https.Server;
  private readonly opts: FakeArmOptions;
  private readonly vnets = new Map<string, Vnet>();
  private readonly nics = new Map<string, Nic>();
  private readonly vms = new Map<string, Vm>();
  private readonly operations = new Map<string, Operation>();
  private faults: (Fault & { left: number })[] = [];
  private beforeWriteHooks: ((method: string, path: string) => void)[] = [];
  private macCounter = 0x100;
  private baseUrl = '';

  private constructor(subscriptionId: string, opts: FakeArmOptions) {
    this.subscriptionId = subscriptionId;
    this.opts = opts;
    this.server = https.createServer({ cert: opts.certPem, key: opts.keyPem }, (req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) this.sendError(res, req, new ArmError(500, 'InternalServerError', String(err)));
      });
    });
  }

  static async start(subscriptionId: string, opts: FakeArmOptions): Promise<FakeArmServer> {
    const s = new FakeArmServer(subscriptionId, opts);
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    s.baseUrl = `https://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    return s;
  }

  get url(): string {
    return this.baseUrl;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- seeding and inspection (the test's god view) ----

  addVnet(v: {
    resourceGroup: string;
    name: string;
    location: string;
    addressPrefixes: string[];
    subnets: { name: string; addressPrefix: string; nsgId?: string }[];
  }): { id: string; subnetIds: string[] } {
    const id = `/subscriptions/${this.subscriptionId}/resourceGroups/${v.resourceGroup}/providers/Microsoft.Network/virtualNetworks/${v.name}`;
    const subnets = v.subnets.map((s) => ({
      id: `${id}/subnets/${s.name}`,
      name: s.name,
      vnetId: id,
      prefix: s.addressPrefix,
      cidr: parseCidr(s.addressPrefix),
      nsgId: s.nsgId,
    }));
    this.vnets.set(lc(id), {
      id,
      name: v.name,
      resourceGroup: v.resourceGroup,
      location: v.location,
      addressPrefixes: v.addressPrefixes,
      subnets,
    });
    return { id, subnetIds: subnets.map((s) => s.id) };
  }

  /** A VM with its NICs (first one primary, each with one primary ipConfiguration). */
  addVm(v: {
    resourceGroup: string;
    name: string;
    location: string;
    zone?: string;
    vmSize?: string;
    nics: {
      name: string;
      subnetId: string;
      nsgId?: string;
      privateIp?: string;
      tags?: Record<string, string>;
    }[];
  }): { resourceId: string; vmId: string; nicIds: string[] } {
    const resourceId = `/subscriptions/${this.subscriptionId}/resourceGroups/${v.resourceGroup}/providers/Microsoft.Compute/virtualMachines/${v.name}`;
    const vm: Vm = {
      resourceId,
      vmId: randomUUID(),
      name: v.name,
      resourceGroup: v.resourceGroup,
      location: v.location,
      zone: v.zone ?? '',
      vmSize: v.vmSize ?? 'Standard_D4s_v5',
      nics: [],
    };
    const nicIds = v.nics.map((n, i) => {
      const nic = this.createNic({
        resourceGroup: v.resourceGroup,
        name: n.name,
        location: v.location,
        subnetId: n.subnetId,
        nsgId: n.nsgId,
        privateIp: n.privateIp,
        tags: n.tags,
        primary: i === 0,
        vmResourceId: resourceId,
      });
      vm.nics.push(n.name);
      return nic;
    });
    this.vms.set(lc(resourceId), vm);
    return { resourceId, vmId: vm.vmId, nicIds };
  }

  /** A NIC not attached to anything (e.g. a leaked one). */
  addDetachedNic(n: {
    resourceGroup: string;
    name: string;
    location: string;
    subnetId: string;
    tags?: Record<string, string>;
  }): string {
    return this.createNic({ ...n, primary: false });
  }

  nic(resourceGroup: string, name: string): NicSnapshot | undefined {
    const nic = this.nics.get(this.nicKey(resourceGroup, name));
    if (!nic) return undefined;
    return {
      id: this.nicId(nic),
      name: nic.name,
      etag: nic.etag,
      macAddress: nic.macAddress,
      tags: { ...nic.tags },
      vmResourceId: nic.vmResourceId,
      provisioningState: nic.provisioningState,
      ipConfigs: nic.ipConfigs.map((c) => ({ ...c })),
    };
  }

  /** A VM takes the NIC (as a VM created or reconfigured with it would): new etag. */
  attachNic(resourceGroup: string, name: string, vmResourceId: string): void {
    const nic = this.mustNic(resourceGroup, name);
    nic.vmResourceId = vmResourceId;
    nic.etag = newEtag();
  }

  /** Another writer changes the NIC (as the portal or a second controller would): new etag. */
  mutateNic(resourceGroup: string, name: string, change: (ipConfigs: IpConfig[]) => void): void {
    const nic = this.mustNic(resourceGroup, name);
    change(nic.ipConfigs);
    nic.etag = newEtag();
  }

  /** Addresses of the subnet held by any ipConfiguration. */
  usedAddresses(subnetId: string): string[] {
    const out: string[] = [];
    for (const nic of this.nics.values()) {
      for (const c of nic.ipConfigs) if (lc(c.subnetId) === lc(subnetId)) out.push(c.privateIPAddress);
    }
    return out;
  }

  inject(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.faults = [];
    this.beforeWriteHooks = [];
  }

  /**
   * Run `hook` just before the next PUT/DELETE is processed (after the client read the resource):
   * how a test makes another writer change a NIC between our GET and our PUT.
   */
  onceBeforeWrite(hook: (method: string, path: string) => void): void {
    this.beforeWriteHooks.push(hook);
  }

  /** What Azure IMDS would answer for this VM right now (see test/fakes/imds-azure.ts). */
  instanceMetadata(vmResourceId: string): AzureInstanceMetadata {
    const vm = this.vms.get(lc(vmResourceId));
    if (!vm) throw new Error(`no VM ${vmResourceId}`);
    return {
      compute: {
        azEnvironment: 'AzurePublicCloud',
        location: vm.location,
        name: vm.name,
        osType: 'Linux',
        resourceGroupName: vm.resourceGroup,
        resourceId: vm.resourceId,
        subscriptionId: this.subscriptionId,
        vmId: vm.vmId,
        vmScaleSetName: '',
        vmSize: vm.vmSize,
        zone: vm.zone,
        tags: '',
      },
      network: {
        interface: vm.nics.map((name) => {
          const nic = this.mustNic(vm.resourceGroup, name);
          const ordered = [...nic.ipConfigs].sort((a, b) => Number(b.primary) - Number(a.primary));
          const subnet = this.subnetById(ordered[0]!.subnetId);
          return {
            ipv4: {
              ipAddress: ordered.map((c) => ({ privateIpAddress: c.privateIPAddress, publicIpAddress: '' })),
              subnet: subnet
                ? [{ address: intToIp(subnet.cidr.base), prefix: String(subnet.cidr.prefix) }]
                : [],
            },
            ipv6: { ipAddress: [] },
            macAddress: nic.macAddress.replaceAll('-', ''),
          };
        }),
      },
    };
  }

  // ---- internals ----

  private nicKey(rg: string, name: string): string {
    return lc(`${rg}/${name}`);
  }

  private nicId(nic: Nic): string {
    return `/subscriptions/${this.subscriptionId}/resourceGroups/${nic.resourceGroup}/providers/Microsoft.Network/networkInterfaces/${nic.name}`;
  }

  private mustNic(rg: string, name: string): Nic {
    const nic = this.nics.get(this.nicKey(rg, name));
    if (!nic) throw new Error(`no NIC ${rg}/${name}`);
    return nic;
  }

  private subnetById(id: string): Subnet | undefined {
    const vnetId = id.replace(/\/subnets\/[^/]+$/i, '');
    return this.vnets.get(lc(vnetId))?.subnets.find((s) => lc(s.id) === lc(id));
  }

  private createNic(n: {
    resourceGroup: string;
    name: string;
    location: string;
    subnetId: string;
    nsgId?: string;
    privateIp?: string;
    tags?: Record<string, string>;
    primary: boolean;
    vmResourceId?: string;
  }): string {
    const subnet = this.subnetById(n.subnetId);
    if (!subnet) throw new Error(`no subnet ${n.subnetId}`);
    const ip = n.privateIp ?? this.allocate(subnet, new Set(), 1)[0];
    if (!ip) throw new Error(`subnet ${n.subnetId} is full`);
    const mac = (this.macCounter++).toString(16).padStart(6, '0').toUpperCase();
    const nic: Nic = {
      name: n.name,
      resourceGroup: n.resourceGroup,
      location: n.location,
      etag: newEtag(),
      resourceGuid: randomUUID(),
      tags: { ...n.tags },
      macAddress: `00-0D-3A-${mac.slice(0, 2)}-${mac.slice(2, 4)}-${mac.slice(4, 6)}`,
      primary: n.primary,
      vmResourceId: n.vmResourceId,
      nsgId: n.nsgId,
      ipConfigs: [
        {
          name: 'ipconfig1',
          privateIPAddress: ip,
          allocationMethod: 'Dynamic',
          primary: true,
          subnetId: subnet.id,
        },
      ],
      provisioningState: 'Succeeded',
    };
    this.nics.set(this.nicKey(n.resourceGroup, n.name), nic);
    return this.nicId(nic);
  }

  /** Lowest free addresses of the subnet, skipping Azure's reserved ones and `also` (pending). */
  private allocate(subnet: Subnet, also: Set<string>, count: number): string[] {
    const used = new Set([...this.usedAddresses(subnet.id), ...also]);
    const out: string[] = [];
    for (let n = subnet.cidr.base; n < subnet.cidr.base + subnet.cidr.size && out.length < count; n++) {
      const ip = intToIp(n);
      if (!isAzureReserved(subnet.cidr, ip) && !used.has(ip)) out.push(ip);
    }
    return out;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.baseUrl);
    const method = req.method ?? 'GET';
    const raw = await readBody(req);
    let body: unknown;
    const record: RecordedRequest = { method, path: url.pathname, status: 0 };
    if (typeof req.headers['if-match'] === 'string') record.ifMatch = req.headers['if-match'];
    this.requests.push(record);
    res.on('finish', () => {
      record.status = res.statusCode;
    });
    try {
      const auth = req.headers.authorization;
      if (!auth?.startsWith('Bearer ') || auth.length <= 7) {
        res.setHeader(
          'WWW-Authenticate',
          'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"',
        );
        throw new ArmError(
          401,
          'AuthenticationFailed',
          "Authentication failed. The 'Authorization' header is missing.",
        );
      }
      if (this.opts.acceptedTokens && !this.opts.acceptedTokens.includes(auth.slice(7))) {
        res.setHeader(
          'WWW-Authenticate',
          'Bearer authorization_uri="https://login.microsoftonline.com/common", error="invalid_token"',
        );
        throw new ArmError(401, 'InvalidAuthenticationToken', 'The access token is invalid.');
      }
      if (!url.searchParams.get('api-version')) {
        throw new ArmError(
          400,
          'MissingApiVersionParameter',
          'The api-version query parameter (?api-version=) is required for all requests.',
        );
      }
      const fault = this.faults.find(
        (f) => f.left > 0 && (!f.method || f.method === method) && (!f.path || f.path.test(url.pathname)),
      );
      if (fault) {
        fault.left--;
        if (fault.retryAfterSeconds !== undefined)
          res.setHeader('Retry-After', String(fault.retryAfterSeconds));
        const defaults: Record<number, [string, string]> = {
          429: [
            'SubscriptionRequestsThrottled',
            'Number of write requests for subscription exceeded the limit. Please try again later.',
          ],
          412: ['PreconditionFailed', 'Precondition failed: the resource etag does not match If-Match.'],
          403: [
            'AuthorizationFailed',
            'The client does not have authorization to perform action Microsoft.Network/networkInterfaces/write.',
          ],
        };
        const [code, message] = defaults[fault.status] ?? [
          'InternalServerError',
          'An internal error occurred.',
        ];
        throw new ArmError(fault.status, fault.code ?? code, fault.message ?? message);
      }
      if (raw.length > 0) {
        try {
          body = JSON.parse(raw);
        } catch {
          throw new ArmError(
            400,
            'InvalidRequestContent',
            'The request content was invalid and could not be deserialized.',
          );
        }
        record.body = body;
      }
      if (method === 'PUT' || method === 'DELETE') this.beforeWriteHooks.shift()?.(method, url.pathname);
      await this.route(method, url, body, req, res);
    } catch (err) {
      if (err instanceof ArmError) this.sendError(res, req, err);
      else throw err;
    }
  }

  private async route(
    method: string,
    url: URL,
    body: unknown,
    req: IncomingMessage,
    res: ServerResponse,
  ): Promise<void> {
    const p = url.pathname;
    const sub = '^/subscriptions/([^/]+)';
    let m = new RegExp(
      `${sub}/resourceGroups/([^/]+)/providers/Microsoft\\.Network/networkInterfaces(?:/([^/]+))?$`,
      'i',
    ).exec(p);
    if (m) {
      this.checkSubscription(m[1]!);
      const rg = decodeURIComponent(m[2]!);
      if (!m[3]) {
        if (method !== 'GET') throw new ArmError(405, 'MethodNotAllowed', `${method} not allowed`);
        return this.listNics(rg, url, res);
      }
      const name = decodeURIComponent(m[3]);
      if (method === 'GET') return this.send(res, 200, this.nicJson(this.getNic(rg, name)));
      if (method === 'PUT') return this.putNic(rg, name, body, req, res);
      if (method === 'DELETE') return this.deleteNic(rg, name, res);
      throw new ArmError(405, 'MethodNotAllowed', `${method} not allowed`);
    }
    m = new RegExp(
      `${sub}/resourceGroups/([^/]+)/providers/Microsoft\\.Network/virtualNetworks/([^/]+)(?:/subnets/([^/]+))?$`,
      'i',
    ).exec(p);
    if (m && method === 'GET') {
      this.checkSubscription(m[1]!);
      const vnet = this.vnets.get(
        lc(
          `/subscriptions/${this.subscriptionId}/resourceGroups/${decodeURIComponent(m[2]!)}/providers/Microsoft.Network/virtualNetworks/${decodeURIComponent(m[3]!)}`,
        ),
      );
      if (!vnet)
        throw new ArmError(
          404,
          'ResourceNotFound',
          `The Resource 'Microsoft.Network/virtualNetworks/${m[3]}' under resource group '${m[2]}' was not found.`,
        );
      if (!m[4]) return this.send(res, 200, this.vnetJson(vnet));
      const subnet = vnet.subnets.find((s) => lc(s.name) === lc(decodeURIComponent(m![4]!)));
      if (!subnet) throw new ArmError(404, 'NotFound', `Resource ${vnet.id}/subnets/${m[4]} not found.`);
      return this.send(res, 200, this.subnetJson(subnet));
    }
    m = new RegExp(
      `${sub}/providers/Microsoft\\.Network/locations/([^/]+)/(operations|operationResults)/([^/]+)$`,
      'i',
    ).exec(p);
    if (m && method === 'GET') {
      const op = this.operations.get(m[4]!);
      if (!op) throw new ArmError(404, 'NotFound', `Operation ${m[4]} not found.`);
      if (!op.done && op.pollsLeft > 0) {
        op.pollsLeft--;
        if (m[3] === 'operationResults') return this.send(res, 202, undefined);
        return this.send(res, 200, {
          name: op.id,
          status: 'InProgress',
          startTime: new Date().toISOString(),
        });
      }
      if (!op.done) {
        op.done = true;
        op.onDone();
      }
      if (m[3] === 'operationResults') return this.send(res, 204, undefined);
      return this.send(res, 200, {
        name: op.id,
        status: 'Succeeded',
        startTime: new Date().toISOString(),
        endTime: new Date().toISOString(),
      });
    }
    throw new ArmError(404, 'InvalidResourceType', `No route for ${method} ${p} in the ARM fake.`);
  }

  private checkSubscription(sub: string): void {
    if (lc(sub) !== lc(this.subscriptionId)) {
      throw new ArmError(404, 'SubscriptionNotFound', `The subscription '${sub}' could not be found.`);
    }
  }

  private getNic(rg: string, name: string): Nic {
    const nic = this.nics.get(this.nicKey(rg, name));
    if (!nic) {
      throw new ArmError(
        404,
        'ResourceNotFound',
        `The Resource 'Microsoft.Network/networkInterfaces/${name}' under resource group '${rg}' was not found.`,
      );
    }
    return nic;
  }

  private listNics(rg: string, url: URL, res: ServerResponse): void {
    const all = [...this.nics.values()]
      .filter((n) => lc(n.resourceGroup) === lc(rg))
      .sort((a, b) => a.name.localeCompare(b.name));
    const pageSize = this.opts.pageSize ?? 50;
    const skip = Number(url.searchParams.get('$skiptoken') ?? '0');
    const page = all.slice(skip, skip + pageSize);
    const out: { value: unknown[]; nextLink?: string } = { value: page.map((n) => this.nicJson(n)) };
    if (skip + pageSize < all.length) {
      const next = new URL(url.pathname, this.baseUrl);
      next.searchParams.set('api-version', url.searchParams.get('api-version')!);
      next.searchParams.set('$skiptoken', String(skip + pageSize));
      out.nextLink = next.toString();
    }
    this.send(res, 200, out);
  }

  private putNic(rg: string, name: string, body: unknown, req: IncomingMessage, res: ServerResponse): void {
    const existing = this.nics.get(this.nicKey(rg, name));
    const ifMatch = req.headers['if-match'];
    if (typeof ifMatch === 'string' && ifMatch !== '*' && ifMatch !== existing?.etag) {
      throw new ArmError(
        412,
        'PreconditionFailed',
        `Precondition failed for networkInterfaces/${name}: etag ${ifMatch} is not current.`,
      );
    }
    const b = (body ?? {}) as {
      location?: string;
      tags?: Record<string, string>;
      properties?: { ipConfigurations?: unknown[] };
    };
    const location = b.location ?? existing?.location;
    if (!location)
      throw new ArmError(400, 'LocationRequired', 'The location property is required for this definition.');
    const rawConfigs = b.properties?.ipConfigurations;
    if (!Array.isArray(rawConfigs) || rawConfigs.length === 0) {
      throw new ArmError(
        400,
        'NetworkInterfaceMustHaveAtLeastOneIpConfiguration',
        `Network interface ${name} must have one or more IP configurations.`,
      );
    }
    const max = this.opts.maxIpConfigsPerNic ?? MAX_IP_CONFIGS_PER_NIC;
    if (rawConfigs.length > max) {
      throw new ArmError(
        400,
        IP_CONFIG_LIMIT_CODE,
        `Network interface ${name} has ${rawConfigs.length} IP configurations; the maximum is ${max}.`,
      );
    }
    type RawConfig = {
      name?: string;
      properties?: {
        privateIPAddress?: string;
        privateIPAllocationMethod?: string;
        primary?: boolean;
        subnet?: { id?: string };
      };
    };
    const names = new Set<string>();
    const parsed = (rawConfigs as RawConfig[]).map((c) => {
      if (!c.name) throw new ArmError(400, 'InvalidRequestFormat', 'Every IP configuration needs a name.');
      if (names.has(lc(c.name)))
        throw new ArmError(400, 'DuplicateResourceName', `IP configuration name ${c.name} is used twice.`);
      names.add(lc(c.name));
      const subnetId = c.properties?.subnet?.id;
      const subnet = subnetId ? this.subnetById(subnetId) : undefined;
      if (!subnet)
        throw new ArmError(
          400,
          'InvalidResourceReference',
          `Resource ${subnetId} referenced by ${name}/ipConfigurations/${c.name} was not found.`,
        );
      const method = c.properties?.privateIPAllocationMethod ?? 'Dynamic';
      if (method !== 'Dynamic' && method !== 'Static')
        throw new ArmError(400, 'InvalidRequestFormat', `Bad privateIPAllocationMethod ${method}.`);
      return {
        name: c.name,
        subnet,
        address: c.properties?.privateIPAddress,
        method: method as 'Dynamic' | 'Static',
        primary: c.properties?.primary === true,
      };
    });
    if (parsed.length === 1) parsed[0]!.primary = true;
    if (parsed.filter((c) => c.primary).length !== 1) {
      throw new ArmError(
        400,
        'NetworkInterfaceMustHaveOnePrimaryIpConfiguration',
        `Network interface ${name} must have exactly one primary IP configuration.`,
      );
    }
    const vnets = new Set(parsed.map((c) => lc(c.subnet.vnetId)));
    if (vnets.size > 1)
      throw new ArmError(
        400,
        'IpConfigurationsOfNicMustBeInSameVnet',
        `IP configurations of ${name} reference more than one virtual network.`,
      );

    // Addresses this NIC already holds may be kept; everyone else's are taken.
    const own = new Map((existing?.ipConfigs ?? []).map((c) => [lc(c.name), c]));
    const ownAddresses = new Set((existing?.ipConfigs ?? []).map((c) => c.privateIPAddress));
    const claimed = new Set<string>();
    const result: IpConfig[] = [];
    const needDynamic: { index: number; subnet: Subnet }[] = [];
    for (const c of parsed) {
      const prev = own.get(lc(c.name));
      let address = c.address;
      if (!address && prev && lc(prev.subnetId) === lc(c.subnet.id)) address = prev.privateIPAddress;
      if (address) {
        if (!cidrContains(c.subnet.cidr, address)) {
          throw new ArmError(
            400,
            'PrivateIPAddressNotInSubnet',
            `IP address ${address} does not belong to subnet ${c.subnet.id}.`,
          );
        }
        if (isAzureReserved(c.subnet.cidr, address)) {
          throw new ArmError(
            400,
            'PrivateIPAddressIsReserved',
            `IP address ${address} is reserved in subnet ${c.subnet.id}.`,
          );
        }
        const usedElsewhere = !ownAddresses.has(address) && this.usedAddresses(c.subnet.id).includes(address);
        if (usedElsewhere || claimed.has(address)) {
          throw new ArmError(
            400,
            'PrivateIPAddressInUse',
            `IP address ${address} is already in use by another IP configuration.`,
          );
        }
        claimed.add(address);
      } else {
        needDynamic.push({ index: result.length, subnet: c.subnet });
      }
      result.push({
        name: c.name,
        privateIPAddress: address ?? '',
        allocationMethod: c.method,
        primary: c.primary,
        subnetId: c.subnet.id,
      });
    }
    for (const subnet of new Set(needDynamic.map((d) => d.subnet))) {
      const wanted = needDynamic.filter((d) => d.subnet === subnet);
      // Addresses this PUT drops are not reused by the same PUT (ARM frees them when it completes).
      const got = this.allocate(subnet, claimed, wanted.length);
      if (got.length < wanted.length) {
        throw new ArmError(
          400,
          'SubnetIsFull',
          `Subnet ${subnet.name} with address prefix ${subnet.prefix} does not have enough capacity for ${wanted.length} IP addresses.`,
        );
      }
      wanted.forEach((d, i) => {
        result[d.index]!.privateIPAddress = got[i]!;
        claimed.add(got[i]!);
      });
    }

    const lroPolls = this.opts.lroPolls ?? 1;
    const nic: Nic = existing ?? {
      name,
      resourceGroup: rg,
      location,
      etag: '',
      resourceGuid: randomUUID(),
      tags: {},
      macAddress: '',
      primary: false,
      ipConfigs: [],
      provisioningState: 'Succeeded',
    };
    nic.ipConfigs = result;
    nic.tags = { ...(b.tags ?? {}) };
    nic.etag = newEtag();
    nic.provisioningState = lroPolls > 0 ? 'Updating' : 'Succeeded';
    if (!existing) this.nics.set(this.nicKey(rg, name), nic);
    const op = this.startOperation(location, () => {
      nic.provisioningState = 'Succeeded';
    });
    res.setHeader('Azure-AsyncOperation', op.asyncUrl);
    this.send(res, existing ? 200 : 201, this.nicJson(nic));
  }

  private deleteNic(rg: string, name: string, res: ServerResponse): void {
    const nic = this.nics.get(this.nicKey(rg, name));
    if (!nic) {
      this.send(res, 204, undefined);
      return;
    }
    if (nic.vmResourceId) {
      throw new ArmError(
        400,
        'NicInUse',
        `Network Interface ${this.nicId(nic)} is used by existing resource ${nic.vmResourceId}. In order to delete the network interface, it must be dissociated from the resource.`,
      );
    }
    nic.provisioningState = 'Deleting';
    const op = this.startOperation(nic.location, () => {
      this.nics.delete(this.nicKey(rg, name));
    });
    res.setHeader('Azure-AsyncOperation', op.asyncUrl);
    res.setHeader('Location', op.locationUrl);
    this.send(res, 202, undefined);
  }

  private startOperation(location: string, onDone: () => void): { asyncUrl: string; locationUrl: string } {
    const id = randomUUID();
    const op: Operation = { id, pollsLeft: this.opts.lroPolls ?? 1, onDone, done: false };
    this.operations.set(id, op);
    if (op.pollsLeft === 0) {
      op.done = true;
      onDone();
    }
    const base = `${this.baseUrl}/subscriptions/${this.subscriptionId}/providers/Microsoft.Network/locations/${location}`;
    return {
      asyncUrl: `${base}/operations/${id}?api-version=2026-01-01`,
      locationUrl: `${base}/operationResults/${id}?api-version=2026-01-01`,
    };
  }

  private nicJson(nic: Nic): unknown {
    const id = this.nicId(nic);
    return {
      name: nic.name,
      id,
      etag: nic.etag,
      type: 'Microsoft.Network/networkInterfaces',
      location: nic.location,
      tags: nic.tags,
      properties: {
        provisioningState: nic.provisioningState,
        resourceGuid: nic.resourceGuid,
        ipConfigurations: nic.ipConfigs.map((c) => ({
          name: c.name,
          id: `${id}/ipConfigurations/${c.name}`,
          etag: nic.etag,
          type: 'Microsoft.Network/networkInterfaces/ipConfigurations',
          properties: {
            provisioningState: nic.provisioningState,
            privateIPAddress: c.privateIPAddress,
            privateIPAllocationMethod: c.allocationMethod,
            subnet: { id: c.subnetId },
            primary: c.primary,
            privateIPAddressVersion: 'IPv4',
          },
        })),
        dnsSettings: { dnsServers: [], appliedDnsServers: [] },
        ...(nic.macAddress ? { macAddress: nic.macAddress } : {}),
        enableAcceleratedNetworking: false,
        enableIPForwarding: false,
        ...(nic.nsgId ? { networkSecurityGroup: { id: nic.nsgId } } : {}),
        primary: nic.primary,
        ...(nic.vmResourceId ? { virtualMachine: { id: nic.vmResourceId } } : {}),
        nicType: 'Standard',
      },
    };
  }

  private subnetJson(s: Subnet): unknown {
    const refs: { id: string }[] = [];
    for (const nic of this.nics.values()) {
      for (const c of nic.ipConfigs) {
        if (lc(c.subnetId) === lc(s.id)) refs.push({ id: `${this.nicId(nic)}/ipConfigurations/${c.name}` });
      }
    }
    return {
      name: s.name,
      id: s.id,
      etag: 'W/"subnet"',
      type: 'Microsoft.Network/virtualNetworks/subnets',
      properties: {
        provisioningState: 'Succeeded',
        addressPrefix: s.prefix,
        ...(s.nsgId ? { networkSecurityGroup: { id: s.nsgId } } : {}),
        ipConfigurations: refs,
        privateEndpointNetworkPolicies: 'Disabled',
        privateLinkServiceNetworkPolicies: 'Enabled',
      },
    };
  }

  private vnetJson(v: Vnet): unknown {
    return {
      name: v.name,
      id: v.id,
      etag: 'W/"vnet"',
      type: 'Microsoft.Network/virtualNetworks',
      location: v.location,
      properties: {
        provisioningState: 'Succeeded',
        addressSpace: { addressPrefixes: v.addressPrefixes },
        subnets: v.subnets.map((s) => this.subnetJson(s)),
      },
    };
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    res.setHeader('x-ms-request-id', randomUUID());
    if (body === undefined) {
      res.writeHead(status).end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': 'application/json; charset=utf-8',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  private sendError(res: ServerResponse, req: IncomingMessage, err: ArmError): void {
    void req;
    res.setHeader('x-ms-failure-cause', err.status === 429 ? 'gateway' : 'service');
    this.send(res, err.status, { error: { code: err.code, message: err.message, details: [] } });
  }
}

export interface AzureInstanceMetadata {
  compute: {
    azEnvironment: string;
    location: string;
    name: string;
    osType: string;
    resourceGroupName: string;
    resourceId: string;
    subscriptionId: string;
    vmId: string;
    vmScaleSetName: string;
    vmSize: string;
    zone: string;
    tags: string;
  };
  network: {
    interface: {
      ipv4: {
        ipAddress: { privateIpAddress: string; publicIpAddress: string }[];
        subnet: { address: string; prefix: string }[];
      };
      ipv6: { ipAddress: { privateIpAddress: string }[] };
      macAddress: string;
    }[];
  };
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 4 * 1024 * 1024) throw new ArmError(413, 'RequestEntityTooLarge', 'Request body too large.');
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

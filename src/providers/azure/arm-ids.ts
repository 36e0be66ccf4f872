// ARM resource ids, e.g.
//   /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/networkInterfaces/<nic>
//   /subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Network/virtualNetworks/<vnet>/subnets/<s>
// ARM treats them case-insensitively; we keep the original spelling and compare lower-cased.

export interface NicRef {
  subscriptionId: string;
  resourceGroup: string;
  name: string;
}

export interface SubnetRef {
  subscriptionId: string;
  resourceGroup: string;
  virtualNetwork: string;
  subnet: string;
}

const NIC_RE =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Network\/networkInterfaces\/([^/]+)$/i;
const SUBNET_RE =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.Network\/virtualNetworks\/([^/]+)\/subnets\/([^/]+)$/i;

export function parseNicId(id: string): NicRef {
  const m = NIC_RE.exec(id);
  if (!m) throw new TypeError(`not an Azure network interface resource id: ${JSON.stringify(id)}`);
  return { subscriptionId: m[1]!, resourceGroup: m[2]!, name: m[3]! };
}

export function parseSubnetId(id: string): SubnetRef {
  const m = SUBNET_RE.exec(id);
  if (!m) throw new TypeError(`not an Azure subnet resource id: ${JSON.stringify(id)}`);
  return { subscriptionId: m[1]!, resourceGroup: m[2]!, virtualNetwork: m[3]!, subnet: m[4]! };
}

/** The virtual network id a subnet id belongs to. */
export function vnetIdOfSubnet(subnetId: string): string {
  parseSubnetId(subnetId);
  return subnetId.replace(/\/subnets\/[^/]+$/i, '');
}

export function sameId(a: string | undefined, b: string | undefined): boolean {
  return a !== undefined && b !== undefined && a.toLowerCase() === b.toLowerCase();
}

/** Azure writes MACs as 00-0D-3A-1B-2C-3D (ARM) or 000D3A1B2C3D (IMDS); the kernel as 00:0d:3a:1b:2c:3d. */
export function normalizeMac(mac: string): string {
  const hex = mac.replace(/[-:]/g, '').toLowerCase();
  if (!/^[0-9a-f]{12}$/.test(hex)) throw new TypeError(`not a MAC address: ${JSON.stringify(mac)}`);
  return hex.match(/../g)!.join(':');
}

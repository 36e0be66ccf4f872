import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  normalizeMac,
  parseNicId,
  parseSubnetId,
  sameId,
  vnetIdOfSubnet,
} from '../../../../src/providers/azure/arm-ids.ts';
import { parseInstanceMetadata } from '../../../../src/providers/azure/imds.ts';

const nicId = '/subscriptions/s1/resourceGroups/MC_rg/providers/Microsoft.Network/networkInterfaces/nic-0';
const subnetId =
  '/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/nodes';

describe('ARM ids', () => {
  test('parse NIC and subnet ids, case-insensitively on the fixed parts', () => {
    assert.deepEqual(parseNicId(nicId), { subscriptionId: 's1', resourceGroup: 'MC_rg', name: 'nic-0' });
    assert.deepEqual(
      parseNicId(nicId.replace('providers/Microsoft.Network', 'PROVIDERS/microsoft.network')).name,
      'nic-0',
    );
    assert.deepEqual(parseSubnetId(subnetId), {
      subscriptionId: 's1',
      resourceGroup: 'rg',
      virtualNetwork: 'vnet',
      subnet: 'nodes',
    });
    assert.equal(
      vnetIdOfSubnet(subnetId),
      '/subscriptions/s1/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/vnet',
    );
    assert.ok(sameId(nicId, nicId.toUpperCase()));
    assert.ok(!sameId(nicId, undefined));
  });
  test('reject what is not an id', () => {
    for (const bad of ['', 'nic-0', `${nicId}/ipConfigurations/x`, subnetId, '../etc/passwd']) {
      assert.throws(() => parseNicId(bad), /not an Azure network interface resource id/);
    }
    assert.throws(() => parseSubnetId(nicId), /not an Azure subnet resource id/);
  });
  test('MACs in ARM and IMDS spellings become the kernel spelling', () => {
    assert.equal(normalizeMac('00-0D-3A-1B-2C-3D'), '00:0d:3a:1b:2c:3d');
    assert.equal(normalizeMac('000D3A1B2C3D'), '00:0d:3a:1b:2c:3d');
    assert.throws(() => normalizeMac('00-0D-3A'), /not a MAC/);
  });
});

describe('parseInstanceMetadata', () => {
  // Shaped as Azure IMDS documents /metadata/instance (api-version 2021-02-01).
  const doc = {
    compute: {
      location: 'westeurope',
      name: 'vm0',
      resourceGroupName: 'MC_rg',
      resourceId: '/subscriptions/s1/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachines/vm0',
      subscriptionId: 's1',
      vmId: '02aab8a4-74ef-476e-8182-f6d2ba4166a6',
      vmScaleSetName: '',
      vmSize: 'Standard_D4s_v5',
      zone: '',
    },
    network: {
      interface: [
        {
          ipv4: {
            ipAddress: [
              { privateIpAddress: '10.240.0.4', publicIpAddress: '' },
              { privateIpAddress: '10.240.0.9', publicIpAddress: '' },
            ],
            subnet: [{ address: '10.240.0.0', prefix: '24' }],
          },
          ipv6: { ipAddress: [] },
          macAddress: '000D3AF806EC',
        },
      ],
    },
  };
  test('reduces the document', () => {
    const m = parseInstanceMetadata(doc);
    assert.equal(m.vmId, doc.compute.vmId);
    assert.equal(m.zone, '');
    assert.deepEqual(m.interfaces, [
      { mac: '00:0d:3a:f8:06:ec', ips: ['10.240.0.4', '10.240.0.9'], subnetCidr: '10.240.0.0/24' },
    ]);
  });
  test('names what is missing', () => {
    assert.throws(
      () => parseInstanceMetadata({ ...doc, compute: { ...doc.compute, vmId: undefined } }),
      /compute\.vmId/,
    );
    assert.throws(
      () => parseInstanceMetadata({ compute: doc.compute, network: { interface: [] } }),
      /network\.interface/,
    );
    assert.throws(() => parseInstanceMetadata('x'), /not a JSON object/);
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { judgeSubnet, rankPodSubnets } from '../../../../src/providers/aws/subnet-discovery.ts';
import type { SubnetInfo } from '../../../../src/providers/types.ts';

const subnet = (id: string, availableIps: number, tags: Record<string, string> = {}): SubnetInfo => ({
  id,
  cidr: '10.0.0.0/24',
  availabilityZone: 'us-east-1a',
  availableIps,
  tags,
});
const ROLE = 'kubernetes.io/role/cni';

describe('subnet discovery (ENABLE_SUBNET_DISCOVERY)', () => {
  test("the node's subnet counts unless tagged 0; others only when tagged", () => {
    assert.equal(judgeSubnet(subnet('node', 10), 'node', 'c').usable, true);
    assert.equal(judgeSubnet(subnet('node', 10, { [ROLE]: '0' }), 'node', 'c').usable, false);
    assert.equal(judgeSubnet(subnet('other', 10), 'node', 'c').usable, false);
    assert.equal(judgeSubnet(subnet('other', 10, { [ROLE]: '1' }), 'node', 'c').usable, true);
    assert.equal(judgeSubnet(subnet('other', 10, { [ROLE]: 'shared' }), 'node', 'c').usable, true);
    assert.equal(judgeSubnet(subnet('other', 10, { [ROLE]: '0' }), 'node', 'c').usable, false);
  });

  test('kubernetes.io/cluster/* tags restrict a tagged subnet to those clusters', () => {
    const mine = subnet('s', 10, { [ROLE]: '1', 'kubernetes.io/cluster/prod': 'shared' });
    const theirs = subnet('t', 10, { [ROLE]: '1', 'kubernetes.io/cluster/dev': 'owned' });
    assert.equal(judgeSubnet(mine, 'node', 'prod').usable, true);
    const j = judgeSubnet(theirs, 'node', 'prod');
    assert.equal(j.usable, false);
    assert.match(j.reason, /other clusters \(kubernetes.io\/cluster\/dev\)/);
  });

  test('most free addresses first; unusable ones last; ties keep the node subnet first', () => {
    const ranked = rankPodSubnets(
      [
        subnet('small', 20, { [ROLE]: '1' }),
        subnet('node', 100),
        subnet('huge-untagged', 9000),
        subnet('big', 500, { [ROLE]: '1' }),
        subnet('tie', 100, { [ROLE]: '1' }),
      ],
      'node',
      'prod',
    );
    assert.deepEqual(
      ranked.map((d) => [d.subnet.id, d.usable]),
      [
        ['big', true],
        ['node', true],
        ['tie', true],
        ['small', true],
        ['huge-untagged', false],
      ],
    );
  });
});

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  checkInterfaceLimit,
  checkIpLimit,
  chooseDeviceIndex,
  limitsFromNetworkInfo,
  maxPods,
} from '../../../../src/providers/aws/limits.ts';
import { LimitExceededError } from '../../../../src/providers/errors.ts';

describe('maxPods', () => {
  test('matches the published values for m5.large and m5.4xlarge', () => {
    assert.equal(maxPods({ maxInterfaces: 3, ipsPerInterface: 10 }), 29);
    assert.equal(maxPods({ maxInterfaces: 8, ipsPerInterface: 30 }), 234);
  });
});

describe('chooseDeviceIndex', () => {
  test('lowest free index above the primary', () => {
    assert.equal(chooseDeviceIndex([0], 3), 1);
    assert.equal(chooseDeviceIndex([0, 1], 3), 2);
    assert.equal(chooseDeviceIndex([0, 2], 3), 1);
    assert.equal(chooseDeviceIndex([2, 0, 5, 1], 8), 3);
  });
  test('never 0, even when the primary is missing from the list', () => {
    assert.equal(chooseDeviceIndex([], 3), 1);
  });
  test('exhaustive: the choice is free, in range, and minimal', () => {
    const max = 6;
    for (let mask = 0; mask < 1 << max; mask++) {
      const used = [...Array(max).keys()].filter((i) => mask & (1 << i));
      const free = [...Array(max).keys()].filter((i) => i > 0 && !used.includes(i));
      if (free.length === 0) {
        assert.throws(() => chooseDeviceIndex(used, max), LimitExceededError);
      } else {
        assert.equal(chooseDeviceIndex(used, max), free[0]);
      }
    }
  });
  test('full: LimitExceeded naming the attached indexes', () => {
    assert.throws(() => chooseDeviceIndex([0, 1, 2], 3), /no free device index.*0,1,2/);
  });
});

describe('checkInterfaceLimit / checkIpLimit', () => {
  const limits = { maxInterfaces: 3, ipsPerInterface: 10 };
  test('interfaces', () => {
    checkInterfaceLimit(2, limits, 'm5.large');
    assert.throws(
      () => checkInterfaceLimit(3, limits, 'm5.large'),
      (e) => {
        assert.ok(e instanceof LimitExceededError);
        assert.equal(e.cloudCode, 'AttachmentLimitExceeded');
        assert.match(e.message, /m5.large holds at most 3/);
        return true;
      },
    );
  });
  test('IPs per interface, boundary included', () => {
    checkIpLimit(6, 4, limits, 'eni-1', 'm5.large');
    assert.throws(
      () => checkIpLimit(6, 5, limits, 'eni-1', 'm5.large'),
      (e) => {
        assert.ok(e instanceof LimitExceededError);
        assert.equal(e.cloudCode, 'PrivateIpAddressLimitExceeded');
        assert.match(e.message, /eni-1 has 6 private IPs; adding 5 exceeds the m5.large limit of 10/);
        return true;
      },
    );
  });
});

describe('limitsFromNetworkInfo', () => {
  test('single-card types: MaximumNetworkInterfaces as is (with or without a card list)', () => {
    assert.deepEqual(limitsFromNetworkInfo({ MaximumNetworkInterfaces: 3, Ipv4AddressesPerInterface: 10 }), {
      maxInterfaces: 3,
      ipsPerInterface: 10,
    });
    assert.deepEqual(
      limitsFromNetworkInfo({
        MaximumNetworkInterfaces: 8,
        Ipv4AddressesPerInterface: 30,
        NetworkCards: [{ NetworkCardIndex: 0, MaximumNetworkInterfaces: 8 }],
      }),
      { maxInterfaces: 8, ipsPerInterface: 30 },
    );
  });

  test('multi-card types: network card 0 only (p4d.24xlarge: 4 cards x 15, max pods 737 as AWS publishes)', () => {
    const p4d = limitsFromNetworkInfo({
      MaximumNetworkInterfaces: 60,
      Ipv4AddressesPerInterface: 50,
      NetworkCards: [3, 2, 1, 0].map((i) => ({ NetworkCardIndex: i, MaximumNetworkInterfaces: 15 })),
    })!;
    assert.deepEqual(p4d, { maxInterfaces: 15, ipsPerInterface: 50 });
    assert.equal(maxPods(p4d), 737);
    const c6in = limitsFromNetworkInfo({
      MaximumNetworkInterfaces: 16,
      Ipv4AddressesPerInterface: 50,
      NetworkCards: [
        { NetworkCardIndex: 0, MaximumNetworkInterfaces: 8 },
        { NetworkCardIndex: 1, MaximumNetworkInterfaces: 8 },
      ],
    })!;
    assert.equal(c6in.maxInterfaces, 8);
    assert.equal(maxPods(c6in), 394);
  });

  test('no limits in the answer: undefined', () => {
    assert.equal(limitsFromNetworkInfo(undefined), undefined);
    assert.equal(limitsFromNetworkInfo({ MaximumNetworkInterfaces: 4 }), undefined);
  });
});

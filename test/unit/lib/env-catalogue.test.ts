import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  absPath,
  bool,
  ConfigError,
  cidrList,
  int,
  LOG_LEVELS,
  list,
  oneOf,
  parseIpv4Cidr,
  seconds,
  text,
  url,
} from '../../../src/lib/env-catalogue.ts';

/** The reason a parser gives for refusing `raw` (fails the test when it accepts it). */
function reason(parse: (raw: string) => unknown, raw: string): string {
  try {
    parse(raw);
  } catch (err) {
    assert.ok(err instanceof Error);
    return err.message;
  }
  assert.fail(`accepted ${JSON.stringify(raw)}`);
}

describe('int', () => {
  const p = int(1, 64);
  test('whole numbers in range, surrounding blanks ignored', () => {
    assert.equal(p('1'), 1);
    assert.equal(p(' 64 '), 64);
    assert.equal(p('007'), 7);
  });
  test('bounds are inclusive and named in the reason', () => {
    assert.equal(reason(p, '0'), 'out of range 1..64');
    assert.equal(reason(p, '65'), 'out of range 1..64');
  });
  for (const raw of ['', '-1', '1.5', '1e3', '0x10', 'ten', '1 2']) {
    test(`${JSON.stringify(raw)} is not a whole number`, () =>
      assert.equal(reason(p, raw), 'not a whole number'));
  }
  test('without a max only the safe-integer range caps it', () => {
    assert.equal(int(0)('9007199254740991'), Number.MAX_SAFE_INTEGER);
    assert.match(reason(int(0), '9007199254740992'), /^out of range 0\.\./);
  });
});

describe('seconds', () => {
  const p = seconds(0.01, 3600);
  test('decimals allowed', () => {
    assert.equal(p('0.5'), 0.5);
    assert.equal(p(' 3600 '), 3600);
    assert.equal(p('0.01'), 0.01);
  });
  test('bounds', () => {
    assert.equal(reason(p, '0'), 'out of range 0.01..3600');
    assert.equal(reason(p, '3600.5'), 'out of range 0.01..3600');
  });
  for (const raw of ['', '-1', '1.', '.5', '30s', '1e2']) {
    test(`${JSON.stringify(raw)} is refused`, () =>
      assert.equal(reason(p, raw), 'not a non-negative number of seconds'));
  }
});

describe('bool', () => {
  for (const raw of ['true', 'TRUE', ' yes ', '1'])
    test(`${raw} is true`, () => assert.equal(bool(raw), true));
  for (const raw of ['false', 'No', '0', '', '  ']) {
    test(`${JSON.stringify(raw)} is false`, () => assert.equal(bool(raw), false));
  }
  for (const raw of ['maybe', 'on', '2', 'truee']) {
    test(`${raw} is refused`, () => assert.equal(reason(bool, raw), 'not a boolean'));
  }
});

describe('oneOf', () => {
  const p = oneOf(['none', 'hashrandom', 'prng'] as const);
  test("case-insensitive, returns the catalogue's spelling", () => {
    assert.equal(p(' PRNG '), 'prng');
    assert.equal(p('none'), 'none');
  });
  test('anything else is an unknown value', () => {
    assert.equal(reason(p, 'random'), 'unknown value');
    assert.equal(reason(p, ''), 'unknown value');
  });
  test('log levels are pino levels', () => {
    assert.deepEqual([...LOG_LEVELS], ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);
    assert.equal(oneOf(LOG_LEVELS)('Warn'), 'warn');
  });
});

describe('text', () => {
  const p = text(/^[a-z]+$/, 'a lower-case word');
  test('trims and checks the pattern', () => {
    assert.equal(p('  abc '), 'abc');
    assert.equal(reason(p, 'ab c'), 'not a lower-case word');
  });
});

describe('list', () => {
  const p = list(/^subnet-[a-z0-9]+$/, 'a subnet id');
  test('blanks dropped, duplicates removed, order kept', () => {
    assert.deepEqual(p('subnet-b, subnet-a,,subnet-b , '), ['subnet-b', 'subnet-a']);
    assert.deepEqual(p(''), []);
  });
  test('the first bad item is quoted', () => {
    assert.equal(reason(p, 'subnet-a,sg-1,x'), '"sg-1" is not a subnet id');
  });
});

describe('url', () => {
  test('http(s) only, trailing slashes dropped', () => {
    assert.equal(url('http://127.0.0.1:4566/'), 'http://127.0.0.1:4566');
    assert.equal(url(' https://x.example/api// '), 'https://x.example/api');
    assert.equal(reason(url, 'ftp://x'), 'scheme must be http or https');
    assert.equal(reason(url, 'not a url'), 'not a URL');
  });
});

describe('absPath', () => {
  test('absolute, no "..", no trailing slash, no NUL', () => {
    assert.equal(absPath(' /run/vpc-ipam/ipamd.sock '), '/run/vpc-ipam/ipamd.sock');
    for (const raw of ['relative/x', '/a/../b', '/a/', '/a\0b', '']) {
      assert.equal(reason(absPath, raw), 'not an absolute file path without ".."', JSON.stringify(raw));
    }
    assert.equal(absPath('/a/..b'), '/a/..b', 'only a whole ".." segment is refused');
  });
});

describe('IPv4 CIDRs', () => {
  test('normalised, host bits must be zero', () => {
    assert.equal(parseIpv4Cidr(' 10.0.0.0/8 '), '10.0.0.0/8');
    assert.equal(parseIpv4Cidr('010.001.0.0/16'), '10.1.0.0/16');
    assert.equal(parseIpv4Cidr('0.0.0.0/0'), '0.0.0.0/0');
    assert.equal(parseIpv4Cidr('192.168.1.7/32'), '192.168.1.7/32');
    assert.equal(reason(parseIpv4Cidr, '10.0.0.1/8'), '"10.0.0.1/8" has host bits set');
    for (const raw of ['10.0.0.0', '256.0.0.0/8', '10.0.0.0/33', '10.0.0/8', 'a.b.c.d/8']) {
      assert.equal(reason(parseIpv4Cidr, raw), `${JSON.stringify(raw)} is not an IPv4 CIDR`);
    }
  });
  test('cidrList: blanks dropped, duplicates (after normalising) removed, order kept', () => {
    assert.deepEqual(cidrList('192.168.0.0/16, 10.0.0.0/8,,010.0.0.0/8'), ['192.168.0.0/16', '10.0.0.0/8']);
    assert.deepEqual(cidrList(''), []);
    assert.equal(reason(cidrList, '10.0.0.0/8,1.2.3.4/8'), '"1.2.3.4/8" has host bits set');
  });
});

describe('ConfigError', () => {
  const issue = {
    variable: 'MAX_ENI',
    value: '0',
    accepted: 'a whole number >= 1',
    reason: 'out of range 1..1024',
  };
  test('one issue: one line naming the variable, the value and what it accepts', () => {
    const err = new ConfigError([issue]);
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'ConfigError');
    assert.equal(err.message, 'MAX_ENI="0" is invalid (out of range 1..1024); accepted: a whole number >= 1');
    assert.equal(err.variable, 'MAX_ENI');
    assert.equal(err.accepted, 'a whole number >= 1');
    assert.deepEqual(err.issues, [issue]);
  });
  test('several issues: one line each, the first is the convenience variable', () => {
    const second = {
      variable: 'LOG_LEVEL',
      value: 'loud',
      accepted: 'trace | debug',
      reason: 'unknown value',
    };
    const err = new ConfigError([issue, second]);
    assert.equal(
      err.message,
      'invalid configuration:\n  MAX_ENI="0" is invalid (out of range 1..1024); accepted: a whole number >= 1\n  LOG_LEVEL="loud" is invalid (unknown value); accepted: trace | debug',
    );
    assert.equal(err.variable, 'MAX_ENI');
    assert.equal(err.issues.length, 2);
  });
  test('values are quoted, so blanks and control characters are visible', () => {
    const err = new ConfigError([{ ...issue, value: ' 1\n' }]);
    assert.match(err.message, /^MAX_ENI=" 1\\n" is invalid/);
  });
});

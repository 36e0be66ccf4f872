// docs/iam-policy.json (the daemon) and docs/iam-policy-janitor.json are least privilege: every EC2
// call the provider makes is allowed, and no mutation is allowed on an ENI that does not carry this
// cluster's tag (create: only with the tag in the request), so a node cannot detach or delete
// another cluster's (or anyone's) interfaces. The janitor gets only what it calls.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { OWNER_TAGS } from '../../../../src/providers/types.ts';

interface Statement {
  Sid: string;
  Effect: string;
  Action: string | string[];
  Resource: string | string[];
  Condition?: Record<string, Record<string, string>>;
}
const repo = join(import.meta.dirname, '../../../..');
const load = (f: string) => JSON.parse(readFileSync(join(repo, 'docs', f), 'utf8')).Statement as Statement[];
const list = (v: string | string[]) => [v].flat();
const daemon = load('iam-policy.json');
const janitor = load('iam-policy-janitor.json');
const CLUSTER_TAG = `ec2:ResourceTag/${OWNER_TAGS.clusterName}`;

/** EC2 APIs a source file sends (`new XCommand(`). */
function apisOf(file: string): string[] {
  const src = readFileSync(join(repo, file), 'utf8');
  return [...new Set([...src.matchAll(/new (\w+)Command\(/g)].map((m) => `ec2:${m[1]}`))].sort();
}

const allowed = (policy: Statement[]) => new Set(policy.flatMap((s) => list(s.Action)));
const conditionKeys = (s: Statement) => Object.values(s.Condition ?? {}).flatMap((c) => Object.keys(c));

describe('daemon IAM policy', () => {
  test('allows every EC2 call the AWS provider makes', () => {
    const have = allowed(daemon);
    for (const api of apisOf('src/providers/aws/provider.ts')) assert.ok(have.has(api), `${api} missing`);
  });

  test('no mutation on "*" or without a condition; detach/delete/modify only on this cluster\'s ENIs', () => {
    for (const s of daemon) {
      const actions = list(s.Action);
      if (actions.every((a) => a.startsWith('ec2:Describe'))) continue;
      assert.ok(!list(s.Resource).includes('*'), `${s.Sid}: mutation on every resource`);
      assert.ok(s.Condition, `${s.Sid}: mutation without a condition`);
      for (const risky of [
        'ec2:DeleteNetworkInterface',
        'ec2:DetachNetworkInterface',
        'ec2:ModifyNetworkInterfaceAttribute',
      ]) {
        if (actions.includes(risky) && list(s.Resource).some((r) => r.includes(':network-interface/'))) {
          assert.ok(conditionKeys(s).includes(CLUSTER_TAG), `${s.Sid}: ${risky} not tied to the cluster tag`);
        }
      }
    }
  });

  test('an ENI is created only carrying the cluster tag (aws:RequestTag), tags only at creation', () => {
    const create = daemon.filter(
      (s) =>
        list(s.Action).includes('ec2:CreateNetworkInterface') &&
        list(s.Resource).some((r) => r.includes(':network-interface/')),
    );
    assert.ok(create.length > 0);
    for (const s of create)
      assert.ok(conditionKeys(s).includes(`aws:RequestTag/${OWNER_TAGS.clusterName}`), s.Sid);
    const tagging = daemon.filter((s) => list(s.Action).includes('ec2:CreateTags'));
    for (const s of tagging)
      assert.equal(s.Condition?.StringEquals?.['ec2:CreateAction'], 'CreateNetworkInterface');
  });
});

describe('janitor IAM policy', () => {
  test("only the describes it needs and DeleteNetworkInterface on this cluster's ENIs", () => {
    assert.deepEqual([...allowed(janitor)].sort(), [
      'ec2:DeleteNetworkInterface',
      'ec2:DescribeInstances',
      'ec2:DescribeNetworkInterfaces',
    ]);
    const del = janitor.find((s) => list(s.Action).includes('ec2:DeleteNetworkInterface'))!;
    assert.ok(conditionKeys(del).includes(CLUSTER_TAG));
    assert.ok(!list(del.Resource).includes('*'));
  });
});

#!/usr/bin/env node
// The chaos soak (test/soak/chaos.ts) as a command: runs it, prints the counts, writes them to
// docs/reliability.md (section "soak"), exits 1 on any violation. Needs root and LocalStack
// (scripts/prepare.sh starts it: `bash scripts/soak.sh` does both).
//
//   node scripts/chaos-soak.ts [--cycles 2000] [--kills 110] [--minutes 25] [--fault-share 0.2]
//                              [--workers 4] [--no-write]
import { parseArgs } from 'node:util';
import { runSoak, type SoakReport } from '../test/soak/chaos.ts';
import { writeSection } from '../test/soak/results-file.ts';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '2000' },
    kills: { type: 'string', default: '110' },
    minutes: { type: 'string', default: '25' },
    'fault-share': { type: 'string', default: '0.2' },
    workers: { type: 'string', default: '3' },
    'no-write': { type: 'boolean', default: false },
  },
});
const num = (name: string, v: string | undefined) => {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number >= 0, got ${v}`);
  return n;
};
const cmd = process.argv.slice(2).join(' ');

export function soakMarkdown(r: SoakReport, command: string): string {
  const byKind = new Map<string, number>();
  for (const v of r.violations) byKind.set(v.kind, (byKind.get(v.kind) ?? 0) + 1);
  const rows = [
    ['ADD/DEL cycles (through dist/vpc-cni, 2 nodes)', r.cycles],
    ['ADDs that got an address / that failed (and were DELeted)', `${r.addsOk} / ${r.addsFailed}`],
    ['plugin calls for ADD (kubelet-style retries of code 11 included)', r.addAttempts],
    ['DELs that succeeded', r.dels],
    ['vpc-ipamd kill -9', r.daemonKills],
    ['... of which with an ADD in flight on that node', r.daemonKillsDuringAdd],
    ['... of which before the restarted daemon was ready again', r.daemonKillsWhileStarting],
    [
      'kill -9 to ready again (median / max)',
      `${(r.restartMs.median / 1000).toFixed(1)} s / ${(r.restartMs.max / 1000).toFixed(1)} s`,
    ],
    ['vpc-ipamd exits on its own (restarted after 1 s, as the kubelet would)', r.daemonSelfExits],
    ['plugin processes kill -9ed mid-ADD', r.pluginKills],
    ['detached ENIs deleted by the janitor sweep at the end (daemon killed mid-delete)', r.janitorDeleted],
    ['EC2 calls by the daemons (through the fault proxy)', r.ec2Calls],
    [
      'EC2 faults injected',
      `${r.faultsInjected} (${((100 * r.faultsInjected) / Math.max(1, r.ec2Calls)).toFixed(1)} %)`,
    ],
    ...Object.entries(r.faultsByMode).map(([m, n]) => [`... ${m}`, n]),
    ['continuous invariant checks (live pods checked)', `${r.continuousChecks} (${r.podsChecked})`],
    ['**violations**', `**${r.violations.length}**`],
    ...[...byKind].map(([k, n]) => [`... ${k}`, n]),
  ];
  const faultCalls = Object.entries(r.faultsByCall)
    .sort((a, b) => b[1] - a[1])
    .map(([c, n]) => `${c} ${n}`)
    .join(', ');
  return [
    `Run ${r.startedAt}, ${r.seconds} s, ended by ${r.endedBy === 'targets' ? 'reaching its targets' : 'its time bound'}.`,
    `Options: ${JSON.stringify(r.options)}. Command: \`${command}\`.`,
    '',
    '| what | count |',
    '|---|---|',
    ...rows.map(([k, v]) => `| ${k} | ${v} |`),
    '',
    `Faults per EC2 call: ${faultCalls || 'none'}.`,
    '',
    'After settling (faults off, every pod deleted, CNI GC):',
    '',
    '| node | free IPs (warm target ' + r.options.warmIpTarget + ') | IPs held | interfaces | settled in |',
    '|---|---|---|---|---|',
    ...r.settle.map((s) => `| ${s.node} | ${s.free} | ${s.total} | ${s.interfaces} | ${s.settleSeconds} s |`),
    ...(r.selfExitReasons.length > 0
      ? [
          '',
          'Daemon exits on their own (first 10, last log lines):',
          '',
          ...r.selfExitReasons.map((x) => `- ${x.replaceAll('|', '\\|')}`),
        ]
      : []),
    ...(r.violations.length > 0
      ? [
          '',
          'Violations (first 20):',
          '',
          ...r.violations.slice(0, 20).map((v) => `- ${v.kind}: ${v.detail}`),
        ]
      : []),
  ].join('\n');
}

if (import.meta.main) {
  const report = await runSoak({
    cycles: num('cycles', values.cycles),
    kills: num('kills', values.kills),
    maxMinutes: num('minutes', values.minutes),
    faultShare: num('fault-share', values['fault-share']),
    workersPerNode: num('workers', values.workers),
    log: (l) => process.stderr.write(`${l}\n`),
  });
  const md = soakMarkdown(report, `bash scripts/soak.sh${cmd ? ` ${cmd}` : ''}`);
  process.stdout.write(`${md}\n`);
  if (!values['no-write']) writeSection('soak', md);
  process.exit(report.violations.length === 0 ? 0 : 1);
}

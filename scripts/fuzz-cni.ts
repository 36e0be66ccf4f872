#!/usr/bin/env node
// CNI input fuzzing (test/soak/fuzz-cni.ts) as a command: malformed stdin/env to the plugin (most
// in-process through its entry function, a sample through the real dist/vpc-cni) and malformed
// requests to the daemon's socket; prints the counts, writes them to docs/reliability.md (section
// "fuzz"), exits 1 on any crash or non-spec answer. Re-executes itself in a private network
// namespace (`unshare --net`), so an input that happens to be a valid ADD touches nothing real.
//
//   node scripts/fuzz-cni.ts [--inputs 100000] [--exec 2000] [--socket 100000] [--seed N] [--no-write]
import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { ensurePluginBuilt } from '../test/helpers/plugin-binary.ts';
import { type FuzzReport, runFuzz } from '../test/soak/fuzz-cni.ts';
import { writeSection } from '../test/soak/results-file.ts';

const { values } = parseArgs({
  options: {
    inputs: { type: 'string', default: '100000' },
    exec: { type: 'string', default: '2000' },
    socket: { type: 'string', default: '100000' },
    seed: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});

export function fuzzMarkdown(r: FuzzReport, command: string): string {
  const codes = (c: Record<string, number>) =>
    Object.entries(c)
      .sort((a, b) => Number(a[0]) - Number(b[0]))
      .map(([k, n]) => `${k}: ${n}`)
      .join(', ');
  const statuses = Object.entries(r.socket.statuses)
    .map(([k, n]) => `${k}: ${n}`)
    .join(', ');
  return [
    `Run of ${r.seconds} s, seed ${r.seed}. Command: \`${command}\`.`,
    '',
    '| target | inputs | spec errors | valid by chance (exit 0) | crashes / non-spec answers |',
    '|---|---|---|---|---|',
    `| plugin entry function \`runCni\`, in-process | ${r.inProcess.inputs} | ${r.inProcess.specErrors} | ${r.inProcess.successes} | **${r.inProcess.crashes}** |`,
    `| the real \`dist/vpc-cni\` (shim, then daemon or Node fallback), a sample of the same inputs | ${r.exec.inputs} | ${r.exec.specErrors} | ${r.exec.successes} | **${r.exec.crashes}** |`,
    `| daemon socket (HTTP requests + ${r.socket.rawConnections} raw byte streams, a fifth of them after a frame header) | ${r.socket.requests + r.socket.rawConnections} | ${r.socket.apiErrors} API errors + ${r.socket.httpRefusals} HTTP-layer refusals (400/408/431, no body) | ${r.socket.successes} | **${r.socket.crashes}** |`,
    '',
    `CNI error codes (in-process): ${codes(r.inProcess.codes)}. Through the executable: ${codes(r.exec.codes)}.`,
    `HTTP statuses from the socket: ${statuses}.`,
    `After the run the daemon answered /healthz: ${r.daemonAlive ? 'yes' : '**no**'}; addresses held twice: **${r.duplicateIps}**.`,
    ...(r.problems.length > 0
      ? ['', 'Problems (first 50):', '', ...r.problems.map((p) => `- ${p.replaceAll('|', '\\|')}`)]
      : []),
  ].join('\n');
}

if (import.meta.main) {
  if (process.env.VPC_IPAM_FUZZ_NETNS !== '1') {
    // Into a private network namespace first; the child does the work.
    const r = spawnSync(
      'unshare',
      ['--net', process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)],
      {
        stdio: 'inherit',
        env: { ...process.env, VPC_IPAM_FUZZ_NETNS: '1' },
      },
    );
    process.exit(r.status ?? 1);
  }
  const plugin = await ensurePluginBuilt();
  const report = await runFuzz({
    inProcess: Number(values.inputs),
    exec: Number(values.exec),
    socket: Number(values.socket),
    ...(values.seed ? { seed: Number(values.seed) } : {}),
    plugin,
    log: (l) => process.stderr.write(`${l}\n`),
  });
  const cmd = `node scripts/fuzz-cni.ts ${process.argv.slice(2).join(' ')}`.trim();
  const md = fuzzMarkdown(report, cmd);
  process.stdout.write(`${md}\n`);
  if (!values['no-write']) writeSection('fuzz', md);
  const bad = report.inProcess.crashes + report.exec.crashes + report.socket.crashes + report.duplicateIps;
  process.exit(bad === 0 && report.daemonAlive ? 0 : 1);
}

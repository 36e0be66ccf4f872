// The plugin's host log cannot be turned into a way to write host files (it runs as host root and
// logs text that comes from the daemon): planted symlinks, FIFOs, hard links, foreign-owned files
// and directories are refused (logging turns off, the command goes on), control characters are
// stripped, the file is capped and rotated, and the path is validated. Real files in a temp dir.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { parseConfig } from '../../../src/cni/config.ts';
import { cleanText, createFileLog, logFileProblem } from '../../../src/cni/file-log.ts';
import { CniError } from '../../../src/cni/spec.ts';

const root = mkdtempSync(join(tmpdir(), 'vpc-cni-log-'));
chmodSync(root, 0o700);
let n = 0;
/** A fresh directory of ours for one case. */
const freshDir = () => {
  const d = join(root, `d${n++}`);
  mkdirSync(d, { mode: 0o700 });
  return d;
};
const uid = process.geteuid?.() ?? 0;

describe('plugin file log: refuses what is not its own regular file', () => {
  after(() => rmSync(root, { recursive: true, force: true }));

  test('a normal log: created 0600, lines are JSON', () => {
    const path = join(freshDir(), 'cni.log');
    const log = createFileLog(path, 'info');
    log.info('hello', { a: 1 });
    const st = statSync(path);
    assert.equal(st.mode & 0o777, 0o600);
    const line = JSON.parse(readFileSync(path, 'utf8').trim());
    assert.equal(line.msg, 'hello');
    assert.equal(line.a, 1);
  });

  test('a symlink at the log path is not followed: its target is untouched', () => {
    const dir = freshDir();
    const target = join(root, `victim-${n}`);
    writeFileSync(target, 'precious\n', { mode: 0o600 });
    symlinkSync(target, join(dir, 'cni.log'));
    createFileLog(join(dir, 'cni.log'), 'info').error('pwned');
    assert.equal(readFileSync(target, 'utf8'), 'precious\n');
  });

  test('a symlinked directory is refused', () => {
    const real = freshDir();
    const dir = join(root, `link${n++}`);
    symlinkSync(real, dir);
    createFileLog(join(dir, 'cni.log'), 'info').error('x');
    assert.equal(existsSync(join(real, 'cni.log')), false);
  });

  test('a FIFO at the log path does not hang the plugin and gets nothing', () => {
    const path = join(freshDir(), 'cni.log');
    execFileSync('mkfifo', [path]);
    const started = Date.now();
    createFileLog(path, 'info').error('x');
    assert.ok(Date.now() - started < 2000);
  });

  test('a hard link to another file is refused', () => {
    const dir = freshDir();
    const other = join(dir, 'other.txt');
    writeFileSync(other, 'keep\n', { mode: 0o600 });
    linkSync(other, join(dir, 'cni.log'));
    createFileLog(join(dir, 'cni.log'), 'info').error('x');
    assert.equal(readFileSync(other, 'utf8'), 'keep\n');
  });

  test('a file or directory owned by someone else, or a group/world-writable directory, is refused', () => {
    const dir = freshDir();
    const path = join(dir, 'cni.log');
    writeFileSync(path, '', { mode: 0o600 });
    chownSync(path, uid + 1000, 0);
    createFileLog(path, 'info').error('x');
    assert.equal(readFileSync(path, 'utf8'), '');
    const foreign = freshDir();
    chownSync(foreign, uid + 1000, 0);
    createFileLog(join(foreign, 'cni.log'), 'info').error('x');
    assert.equal(existsSync(join(foreign, 'cni.log')), false);
    const open = freshDir();
    chmodSync(open, 0o777);
    createFileLog(join(open, 'cni.log'), 'info').error('x');
    assert.equal(existsSync(join(open, 'cni.log')), false);
  });

  test('only the last directory level is created', () => {
    const deep = join(freshDir(), 'a', 'b');
    createFileLog(join(deep, 'cni.log'), 'info').error('x');
    assert.equal(existsSync(deep), false);
  });

  test('control characters from daemon text are stripped; long values capped', () => {
    const path = join(freshDir(), 'cni.log');
    createFileLog(path, 'info').error('bad\nline\u001b[31m', {
      reason: 'x\u2028y\u0085z',
      long: 'a'.repeat(5000),
    });
    const raw = readFileSync(path, 'utf8');
    assert.equal(raw.trim().split('\n').length, 1);
    const line = JSON.parse(raw);
    for (const v of [line.msg, line.reason]) {
      // biome-ignore lint/suspicious/noControlCharactersInRegex: checking for control characters
      assert.doesNotMatch(v, /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/);
    }
    assert.ok(line.long.length <= 2049);
    assert.equal(cleanText('ok text'), 'ok text');
  });

  test('capped and rotated: past maxBytes the file moves to .1 and a new one starts', () => {
    const path = join(freshDir(), 'cni.log');
    for (let i = 0; i < 30; i++)
      createFileLog(path, 'info', { maxBytes: 1000 }).info(`line ${i}`, { pad: 'x'.repeat(100) });
    assert.ok(existsSync(`${path}.1`));
    assert.ok(statSync(path).size < 1000 + 300, `log is ${statSync(path).size} bytes`);
    assert.ok(statSync(`${path}.1`).size < 1000 + 300);
  });
});

describe('plugin file log: no descriptor kept open', () => {
  test('a thousand loggers (the daemon runs one per CNI command) leave no descriptor open', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'vpc-cni-fd-')), 'cni.log');
    const open = () => readdirSync('/proc/self/fd').length;
    const before = open();
    for (let i = 0; i < 1000; i++) createFileLog(path, 'info').info('x');
    assert.ok(open() - before < 5, `${open() - before} descriptors leaked`);
    rmSync(join(path, '..'), { recursive: true, force: true });
  });
});

describe('logFile validation', () => {
  test('accepts an absolute *.log path; refuses relative, dot segments, other names, control characters', () => {
    assert.equal(logFileProblem('/var/log/vpc-ipam/cni.log'), undefined);
    for (const bad of [
      'cni.log',
      '/var/log/../etc/x.log',
      '/etc/passwd',
      '/var/log/vpc-ipam/',
      '/tmp/a\nb.log',
      42,
    ]) {
      assert.notEqual(logFileProblem(bad), undefined, String(bad));
    }
  });

  test('the network config refuses a bad logFile with code 7', () => {
    assert.throws(
      () => parseConfig({ cniVersion: '1.0.0', name: 'x', logFile: '/etc/shadow' }),
      (e) => e instanceof CniError && e.code === 7 && /logFile/.test(e.message),
    );
  });
});
